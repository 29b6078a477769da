//! MQTT: every event published to `{topic}/{station_id}/{type}` on one broker.
//!
//! Publishing never waits: events go to a bounded queue that the client's event loop
//! drains while connected. While the broker is unreachable the loop reconnects with
//! backoff and the queue fills; beyond it the newest events are dropped and counted, so a
//! dead broker never holds up order processing. (Webhooks are the durable channel.)

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oa_contract::events::Event;
use rumqttc::{AsyncClient, MqttOptions, QoS};

use crate::config::MqttConfig;
use crate::logging::Throttle;
use crate::shutdown::Stopping;

#[derive(Debug, Default)]
pub struct MqttCounts {
    pub queued: AtomicU64,
    pub dropped: AtomicU64,
    pub acknowledged: AtomicU64,
    /// Connection attempts that failed or connections that broke.
    pub connection_failures: AtomicU64,
}

pub struct Mqtt {
    client: AsyncClient,
    topic: String,
    qos: QoS,
    types: Vec<String>,
    pub counts: std::sync::Arc<MqttCounts>,
    /// "queue full": one warning a minute while events are dropped.
    dropping: Mutex<Throttle>,
}

fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    }
}

/// The topic an event goes to.
pub fn topic_of(prefix: &str, e: &Event) -> String {
    format!("{prefix}/{}/{}", e.station_id, e.kind)
}

impl Mqtt {
    /// Starts the client's event loop (it connects in the background) as `client_id`
    /// (`s.client_id` resolved), with the credentials the environment holds.
    pub fn start(
        s: &MqttConfig,
        client_id: String,
        credentials: Option<(String, String)>,
        mut stopping: Stopping,
    ) -> Mqtt {
        let mut opts = MqttOptions::new(client_id, s.host.clone(), s.port);
        opts.set_keep_alive(Duration::from_secs(s.keep_alive_s).max(Duration::from_secs(5)));
        if let Some((user, password)) = credentials {
            opts.set_credentials(user, password);
        }
        let (client, mut eventloop) = AsyncClient::new(opts, s.queue.max(1));
        let counts = std::sync::Arc::new(MqttCounts::default());
        let seen = counts.clone();
        let broker = format!("{}:{}", s.host, s.port);
        tokio::spawn(async move {
            let mut failures = 0u32;
            let mut unreachable = Throttle::default();
            loop {
                tokio::select! {
                    ev = eventloop.poll() => match ev {
                        Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                            match unreachable.clear(Instant::now()) {
                                Some(c) => tracing::info!(%broker, "MQTT connected{c}"),
                                None => tracing::info!(%broker, "MQTT connected"),
                            }
                            failures = 0;
                        }
                        Ok(rumqttc::Event::Incoming(
                            rumqttc::Packet::PubAck(_) | rumqttc::Packet::PubComp(_),
                        )) => {
                            seen.acknowledged.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            failures += 1;
                            seen.connection_failures.fetch_add(1, Ordering::Relaxed);
                            let wait = super::webhook::backoff(failures, Duration::from_secs(30));
                            match unreachable.hit(Instant::now()) {
                                Some(r) => tracing::warn!(
                                    %broker,
                                    "MQTT broker unreachable ({e}); reconnecting in {}s{r}",
                                    wait.as_secs()
                                ),
                                None => tracing::debug!(%broker, "MQTT broker unreachable ({e})"),
                            }
                            tokio::select! {
                                _ = tokio::time::sleep(wait) => {}
                                _ = stopping.wait() => break,
                            }
                        }
                    },
                    _ = stopping.wait() => break,
                }
            }
        });
        Mqtt {
            client,
            topic: s.topic.clone(),
            qos: qos(s.qos),
            types: s.types.clone(),
            counts,
            dropping: Mutex::default(),
        }
    }

    /// Queues the event unless its type is not wanted; never waits.
    pub fn publish(&self, event: &Event, json: &str) {
        if !self.types.is_empty() && !self.types.contains(&event.kind) {
            return;
        }
        match self.client.try_publish(
            topic_of(&self.topic, event),
            self.qos,
            false,
            json.as_bytes().to_vec(),
        ) {
            Ok(()) => {
                self.counts.queued.fetch_add(1, Ordering::Relaxed);
                if let Some(c) = self.dropping.lock().unwrap().clear(Instant::now()) {
                    tracing::info!("MQTT queue takes events again: dropped{c}");
                }
            }
            Err(e) => {
                let n = self.counts.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                match self.dropping.lock().unwrap().hit(Instant::now()) {
                    Some(r) => tracing::warn!(
                        id = %event.id,
                        dropped = n,
                        "MQTT queue full or closed ({e}): event not published{r}"
                    ),
                    None => tracing::debug!(id = %event.id, dropped = n, "MQTT event dropped"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_name_station_then_type() {
        let e = Event {
            id: "x".into(),
            kind: "order.mismatch".into(),
            time_unix_ms: 0,
            station_id: "station-1".into(),
            order_id: None,
            data: serde_json::Value::Null,
        };
        assert_eq!(
            topic_of("order-accuracy", &e),
            "order-accuracy/station-1/order.mismatch"
        );
        assert_eq!(qos(0), QoS::AtMostOnce);
        assert_eq!(qos(1), QoS::AtLeastOnce);
    }
}
