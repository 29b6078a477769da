//! Webhooks: every event POSTed to a receiver, signed, in the order it was recorded,
//! retried with backoff until the receiver takes it, and kept in the store's outbox until
//! then, so that neither a receiver that is down nor a restart of this process loses one.
//!
//! A receiver sees each event at least once: after a crash between its reply and the
//! outbox delete, or when two orchestrators finish the same order, an event comes again
//! with the same `Idempotency-Key` (the event's `id`).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use oa_contract::events::{
    EVENT_TYPE_HEADER, Event, IDEMPOTENCY_HEADER, SIGNATURE_HEADER, SIGNATURE_SCHEME,
};
use sha2::Sha256;
use tokio::sync::Notify;

use crate::logging::Throttle;
use crate::shutdown::Stopping;
use crate::store::{Store, StoreError};

/// The signature header's value for `body`: `sha256=` and the hex HMAC-SHA256.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(SIGNATURE_SCHEME.len() + 64);
    out.push_str(SIGNATURE_SCHEME);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The wait before try `attempt + 1` (1 s, 2 s, 4 s... up to `max`).
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(16)).min(max)
}

/// What a receiver's answer means for the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// The receiver can never take this body (400, 410, 413, 422): dropped, logged.
    Refused,
    /// Tried again later: 5xx, 408, 429, and 401/403/404 too, which a fixed receiver or
    /// secret turns into a success.
    Retry,
}

pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Accepted,
        400 | 410 | 413 | 422 => Verdict::Refused,
        _ => Verdict::Retry,
    }
}

/// More bodies than this waiting are left in the store and read back when their turn
/// comes, so a receiver down for days costs no memory.
const BODIES_IN_MEMORY: usize = 256;

/// One event to deliver: its outbox key (`None` when the store was down as it was
/// recorded) and, when kept in memory, its body.
#[derive(Debug, Clone)]
struct Pending {
    key: Option<String>,
    body: Option<Bytes>,
}

pub struct WebhookSettings {
    pub name: String,
    pub url: String,
    pub secret: Vec<u8>,
    /// Empty: every type.
    pub types: Vec<String>,
    pub timeout: Duration,
    pub max_backoff: Duration,
}

/// Counters shown in `/metrics`.
#[derive(Debug, Default)]
pub struct WebhookCounts {
    pub delivered: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub refused: AtomicU64,
}

pub struct Webhook {
    settings: WebhookSettings,
    client: reqwest::Client,
    queue: Mutex<VecDeque<Pending>>,
    wake: Notify,
    pub counts: WebhookCounts,
}

impl Webhook {
    pub fn new(settings: WebhookSettings) -> Result<Webhook, String> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()
            .map_err(|e| format!("webhook {}: {e}", settings.name))?;
        Ok(Webhook {
            settings,
            client,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            counts: WebhookCounts::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    pub fn wants(&self, kind: &str) -> bool {
        self.settings.types.is_empty() || self.settings.types.iter().any(|t| t == kind)
    }

    /// Events waiting for the receiver.
    pub fn pending(&self) -> usize {
        self.queue.lock().unwrap().len()
    }

    /// Queues an event recorded now (its outbox object already written, when `key`).
    pub fn enqueue(&self, key: Option<String>, body: Bytes) {
        let mut q = self.queue.lock().unwrap();
        let body = (q.len() < BODIES_IN_MEMORY || key.is_none()).then_some(body);
        q.push_back(Pending { key, body });
        drop(q);
        self.wake.notify_one();
    }

    /// Puts the events an earlier run left in the outbox before those recorded since,
    /// in key (recording) order.
    fn adopt(&self, keys: Vec<String>) {
        let mut q = self.queue.lock().unwrap();
        let known: std::collections::HashSet<String> =
            q.iter().filter_map(|p| p.key.clone()).collect();
        let mut keys: Vec<String> = keys.into_iter().filter(|k| !known.contains(k)).collect();
        keys.sort();
        // What is queued was recorded by this run, after everything an earlier run left.
        let mut merged: Vec<Pending> = keys
            .into_iter()
            .map(|k| Pending {
                key: Some(k),
                body: None,
            })
            .collect();
        merged.extend(q.drain(..));
        q.extend(merged);
        drop(q);
        self.wake.notify_one();
    }

    /// Delivers until `stopping`: first what the outbox holds, then every event queued.
    pub async fn run(
        self: std::sync::Arc<Self>,
        store: Store,
        bucket: String,
        prefix: String,
        mut stopping: Stopping,
    ) {
        let name = self.settings.name.clone();
        let mut attempt = 0u32;
        // While the receiver (or the store) stays down, one warning a minute.
        let mut failing = Throttle::default();
        loop {
            match list_outbox(&store, &bucket, &prefix, &name).await {
                Ok(keys) => {
                    if let Some(c) = failing.clear(Instant::now()) {
                        tracing::info!(webhook = %name, "outbox listed{c}");
                    }
                    if !keys.is_empty() {
                        tracing::info!(
                            webhook = %name,
                            events = keys.len(),
                            "delivering the events left in the outbox"
                        );
                    }
                    self.adopt(keys);
                    break;
                }
                Err(e) => {
                    attempt += 1;
                    match failing.hit(Instant::now()) {
                        Some(r) => {
                            tracing::warn!(webhook = %name, "cannot list the outbox yet: {e}{r}")
                        }
                        None => tracing::debug!(webhook = %name, "cannot list the outbox yet: {e}"),
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff(attempt, self.settings.max_backoff)) => {}
                        _ = stopping.wait() => return,
                    }
                }
            }
        }
        attempt = 0;
        loop {
            let head = self.queue.lock().unwrap().front().cloned();
            let Some(p) = head else {
                tokio::select! {
                    _ = self.wake.notified() => continue,
                    _ = stopping.wait() => return,
                }
            };
            let outcome = tokio::select! {
                o = self.deliver(&store, &bucket, &p) => o,
                _ = stopping.wait() => return,
            };
            match outcome {
                Ok(v) => {
                    if v == Verdict::Accepted {
                        self.counts.delivered.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.counts.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(key) = &p.key
                        && let Err(e) = store.delete(&bucket, key).await
                    {
                        // It is delivered again after a restart: same Idempotency-Key.
                        tracing::warn!(webhook = %name, "cannot delete {key} from the outbox: {e}");
                    }
                    self.queue.lock().unwrap().pop_front();
                    if let Some(c) = failing.clear(Instant::now()) {
                        tracing::info!(webhook = %name, "receiver reachable again{c}");
                    }
                    attempt = 0;
                }
                Err(why) => {
                    attempt += 1;
                    self.counts.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    let wait = backoff(attempt, self.settings.max_backoff);
                    let pending = self.pending();
                    if let Some(r) = failing.hit(Instant::now()) {
                        tracing::warn!(
                            webhook = %name,
                            pending,
                            "delivery failed ({why}); trying again in {}s{r}",
                            wait.as_secs()
                        );
                    } else {
                        tracing::debug!(webhook = %name, pending, "delivery failed ({why})");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stopping.wait() => return,
                    }
                }
            }
        }
    }

    /// One try; `Err` says why it is to be tried again.
    async fn deliver(&self, store: &Store, bucket: &str, p: &Pending) -> Result<Verdict, String> {
        let body = match (&p.body, &p.key) {
            (Some(b), _) => b.clone(),
            (None, Some(key)) => match store.get(bucket, key).await {
                Ok(Some(o)) => Bytes::from(o.body),
                // Deleted by another orchestrator that delivered it.
                Ok(None) => return Ok(Verdict::Accepted),
                Err(e) => return Err(format!("reading {key}: {e}")),
            },
            (None, None) => return Ok(Verdict::Refused),
        };
        let event: Event = match serde_json::from_slice(&body) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(
                    webhook = %self.settings.name,
                    key = p.key.as_deref(),
                    "an outbox object is not an event ({e}); dropped"
                );
                return Ok(Verdict::Refused);
            }
        };
        let res = self
            .client
            .post(&self.settings.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_HEADER, &event.id)
            .header(EVENT_TYPE_HEADER, &event.kind)
            .header(SIGNATURE_HEADER, sign(&self.settings.secret, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = res.status().as_u16();
        match verdict(status) {
            Verdict::Retry => Err(format!("HTTP {status}")),
            Verdict::Refused => {
                tracing::error!(
                    webhook = %self.settings.name,
                    id = %event.id,
                    "the receiver refused the event for good (HTTP {status}); dropped: \
                     check what it expects"
                );
                Ok(Verdict::Refused)
            }
            Verdict::Accepted => Ok(Verdict::Accepted),
        }
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(inner) = src {
            s = format!("{s}: {inner}");
            src = inner.source();
        }
        s
    }
}

/// Every outbox key of one webhook, oldest first.
async fn list_outbox(
    store: &Store,
    bucket: &str,
    prefix: &str,
    sink: &str,
) -> Result<Vec<String>, StoreError> {
    let folder = oa_contract::outbox_prefix(prefix, sink).map_err(|e| StoreError(e.to_string()))?;
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, more) = store
            .list_page(bucket, &folder, after.as_deref(), 1000)
            .await?;
        after = page.last().map(|l| l.key.clone());
        keys.extend(page.into_iter().map(|l| l.key));
        if !more || after.is_none() {
            break;
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_rfc_4231() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let max = Duration::from_secs(60);
        let waits: Vec<u64> = (1..=8).map(|a| backoff(a, max).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn only_bodies_that_can_never_pass_are_dropped() {
        assert_eq!(verdict(204), Verdict::Accepted);
        assert_eq!(verdict(422), Verdict::Refused);
        for s in [401, 403, 404, 408, 429, 500, 503] {
            assert_eq!(verdict(s), Verdict::Retry, "{s}");
        }
    }

    #[test]
    fn the_outbox_goes_before_what_came_since() {
        let w = Webhook::new(WebhookSettings {
            name: "w".into(),
            url: "http://127.0.0.1:9/".into(),
            secret: b"s".to_vec(),
            types: vec![],
            timeout: Duration::from_secs(1),
            max_backoff: Duration::from_secs(1),
        })
        .unwrap();
        w.enqueue(
            Some("o/w/0000000000003_0_000001.json".into()),
            Bytes::from("c"),
        );
        w.adopt(vec![
            "o/w/0000000000001_0_000001.json".into(),
            "o/w/0000000000003_0_000001.json".into(),
            "o/w/0000000000002_0_000001.json".into(),
        ]);
        let keys: Vec<String> = w
            .queue
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.key.clone().unwrap())
            .collect();
        assert_eq!(keys.len(), 3, "no duplicate of the queued one: {keys:?}");
        assert!(keys.windows(2).all(|k| k[0] < k[1]), "{keys:?}");
        assert!(w.wants("anything"));
    }
}
