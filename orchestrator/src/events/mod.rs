//! Events out: every final order result and every change of a station's state, as one
//! JSON schema ([`oa_contract::events::Event`]), to three kinds of subscribers:
//! * `GET /api/events` (Server-Sent Events) from an in-memory history that clients resume
//!   with `Last-Event-ID` ([`history`]);
//! * webhooks, durable through an outbox in the store ([`webhook`]);
//! * an MQTT broker ([`mqtt`]).
//!
//! An order event is recorded in two steps around the result's write: [`Events::stage`]
//! writes the outbox objects before the result is stored (so a crash in between leaves
//! the event to be delivered, with the ID its retry will have too), and [`Events::publish`]
//! hands it to the subscribers once the result is stored. Neither waits on a subscriber.

pub mod history;
pub mod mqtt;
pub mod setup;
pub mod station;
pub mod webhook;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use oa_contract::events::{
    Event, ORDER_COMPLETED, ORDER_MISMATCH, STATION_STATE, order_event_id, station_event_id,
};
use tokio::sync::watch;

use crate::logging::Throttle;
use crate::result::{OrderResult, OrderStatus};
use crate::shutdown::Stopping;
use crate::store::{Store, StoreError};
use history::{Entry, History};
use mqtt::Mqtt;
use webhook::Webhook;

/// Where the outboxes live: beside the results.
pub struct OutboxPlace {
    pub store: Store,
    pub bucket: String,
    pub prefix: String,
}

pub struct EventsDeps {
    pub outbox: OutboxPlace,
    pub webhooks: Vec<Arc<Webhook>>,
    pub mqtt: Option<Mqtt>,
    /// Events kept for resuming SSE clients.
    pub history: usize,
    /// Ends the SSE streams (so that a graceful shutdown is not held up by them).
    pub stopping: Stopping,
}

/// An event whose outbox objects are written, not yet handed to the subscribers.
pub struct Staged {
    event: Event,
    json: Arc<str>,
    outbox: Vec<Option<String>>,
}

pub struct Events {
    outbox: OutboxPlace,
    webhooks: Vec<Arc<Webhook>>,
    mqtt: Option<Mqtt>,
    history: Mutex<History>,
    latest: watch::Sender<u64>,
    stopping: Stopping,
    writer: u32,
    seq: AtomicU64,
    published: AtomicU64,
    /// [`Events::emit`] cannot write the outbox: one warning a minute while it lasts.
    outbox_failing: Mutex<Throttle>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Random enough to keep two processes' outbox keys apart: no two share a PID and a start
/// nanosecond.
fn writer_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(16))
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(8)
}

/// The event announcing a final result.
pub fn order_event(result: &OrderResult) -> Event {
    let kind = if result.validation.status == OrderStatus::Mismatch {
        ORDER_MISMATCH
    } else {
        ORDER_COMPLETED
    };
    Event {
        id: order_event_id(&result.station_id, &result.order_id, result.revision),
        kind: kind.into(),
        time_unix_ms: now_ms(),
        station_id: result.station_id.clone(),
        order_id: Some(result.order_id.clone()),
        data: serde_json::to_value(result).unwrap_or_default(),
    }
}

/// What selects the events an SSE client gets.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Empty: all.
    pub types: Vec<String>,
    pub station: Option<String>,
}

impl Filter {
    fn keeps(&self, e: &Event) -> bool {
        (self.types.is_empty() || self.types.contains(&e.kind))
            && self.station.as_ref().is_none_or(|s| *s == e.station_id)
    }
}

/// One SSE client's place in the history.
pub struct Cursor {
    events: Arc<Events>,
    after: u64,
    filter: Filter,
    latest: watch::Receiver<u64>,
    stopping: Stopping,
}

impl Cursor {
    /// The next event for this client; `None` once the orchestrator stops.
    pub async fn next(&mut self) -> Option<Entry> {
        loop {
            if self.stopping.is_stopping() {
                return None;
            }
            self.latest.borrow_and_update();
            let found = self
                .events
                .history
                .lock()
                .unwrap()
                .next_after(self.after, |e| self.filter.keeps(e));
            match found {
                Ok(e) => {
                    self.after = e.seq;
                    return Some(e);
                }
                Err(seen) => self.after = seen,
            }
            tokio::select! {
                r = self.latest.changed() => if r.is_err() { return None },
                _ = self.stopping.wait() => return None,
            }
        }
    }
}

impl Events {
    pub fn new(deps: EventsDeps) -> Arc<Events> {
        Arc::new(Events {
            outbox: deps.outbox,
            webhooks: deps.webhooks,
            mqtt: deps.mqtt,
            history: Mutex::new(History::new(deps.history)),
            latest: watch::channel(0).0,
            stopping: deps.stopping,
            writer: writer_id(),
            seq: AtomicU64::new(0),
            published: AtomicU64::new(0),
            outbox_failing: Mutex::default(),
        })
    }

    /// Starts every webhook's delivery task.
    pub fn start_delivery(&self, stopping: &Stopping) {
        for w in &self.webhooks {
            tokio::spawn(w.clone().run(
                self.outbox.store.clone(),
                self.outbox.bucket.clone(),
                self.outbox.prefix.clone(),
                stopping.clone(),
            ));
        }
    }

    pub fn webhooks(&self) -> &[Arc<Webhook>] {
        &self.webhooks
    }

    pub fn mqtt(&self) -> Option<&Mqtt> {
        self.mqtt.as_ref()
    }

    /// Events published since start.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// The sinks' counters, for `/metrics`.
    pub fn counts(&self) -> crate::metrics::SinkCounts {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        crate::metrics::SinkCounts {
            published: self.published(),
            webhooks: self
                .webhooks
                .iter()
                .map(|w| crate::metrics::WebhookCounts {
                    name: w.name().to_owned(),
                    pending: w.pending() as u64,
                    delivered: load(&w.counts.delivered),
                    failed_attempts: load(&w.counts.failed_attempts),
                    refused: load(&w.counts.refused),
                })
                .collect(),
            mqtt: self.mqtt.as_ref().map(|m| crate::metrics::MqttCounts {
                queued: load(&m.counts.queued),
                dropped: load(&m.counts.dropped),
                acknowledged: load(&m.counts.acknowledged),
                connection_failures: load(&m.counts.connection_failures),
            }),
        }
    }

    /// Writes the event's outbox object for every webhook that wants it.
    pub async fn stage(&self, event: Event) -> Result<Staged, StoreError> {
        let json: Arc<str> = serde_json::to_string(&event)
            .expect("events serialise")
            .into();
        let mut outbox = Vec::with_capacity(self.webhooks.len());
        for w in &self.webhooks {
            if !w.wants(&event.kind) {
                outbox.push(None);
                continue;
            }
            let seq = self.seq.fetch_add(1, Ordering::Relaxed);
            let key =
                oa_contract::outbox_key(&self.outbox.prefix, w.name(), now_ms(), self.writer, seq)
                    .map_err(|e| StoreError(e.to_string()))?;
            self.outbox
                .store
                .put(
                    &self.outbox.bucket,
                    &key,
                    json.as_bytes().to_vec(),
                    "application/json",
                )
                .await?;
            outbox.push(Some(key));
        }
        Ok(Staged {
            event,
            json,
            outbox,
        })
    }

    /// Hands a staged event to every subscriber; never waits on one.
    pub fn publish(&self, staged: Staged) {
        let Staged {
            event,
            json,
            outbox,
        } = staged;
        for (w, key) in self.webhooks.iter().zip(outbox) {
            if w.wants(&event.kind) {
                w.enqueue(key, Bytes::copy_from_slice(json.as_bytes()));
            }
        }
        if let Some(m) = &self.mqtt {
            m.publish(&event, &json);
        }
        let seq = self
            .history
            .lock()
            .unwrap()
            .push(Arc::new(event), json.clone());
        self.latest.send_replace(seq);
        self.published.fetch_add(1, Ordering::Relaxed);
    }

    /// Stages and publishes; when the outbox cannot be written (the store is down), the
    /// event still goes out, kept in memory only.
    pub async fn emit(&self, event: Event) {
        let now = std::time::Instant::now();
        match self.stage(event.clone()).await {
            Ok(s) => {
                if let Some(c) = self.outbox_failing.lock().unwrap().clear(now) {
                    tracing::info!("events are written to the outbox again{c}");
                }
                self.publish(s)
            }
            Err(e) => {
                match self.outbox_failing.lock().unwrap().hit(now) {
                    Some(r) => tracing::warn!(
                        id = %event.id,
                        "cannot write the event to the outbox ({e}); sending it from memory{r}"
                    ),
                    None => tracing::debug!(
                        id = %event.id,
                        "cannot write the event to the outbox ({e}); sending it from memory"
                    ),
                }
                let json: Arc<str> = serde_json::to_string(&event)
                    .expect("events serialise")
                    .into();
                let outbox = vec![None; self.webhooks.len()];
                self.publish(Staged {
                    event,
                    json,
                    outbox,
                });
            }
        }
    }

    /// A station event; `seq` keeps IDs apart within a millisecond.
    pub fn station_event(&self, station: &str, data: serde_json::Value) -> Event {
        let now = now_ms();
        Event {
            id: station_event_id(station, now, self.seq.fetch_add(1, Ordering::Relaxed)),
            kind: STATION_STATE.into(),
            time_unix_ms: now,
            station_id: station.to_owned(),
            order_id: None,
            data,
        }
    }

    /// A cursor after the event `last_id` (everything retained when it is not, e.g. after
    /// a restart), or after the newest event when `None`.
    pub fn subscribe(self: &Arc<Self>, last_id: Option<&str>, filter: Filter) -> Cursor {
        let h = self.history.lock().unwrap();
        let after = match last_id {
            Some(id) => h.seq_of(id).unwrap_or(0),
            None => h.last_seq(),
        };
        drop(h);
        Cursor {
            events: self.clone(),
            after,
            filter,
            latest: self.latest.subscribe(),
            stopping: self.stopping.clone(),
        }
    }
}
