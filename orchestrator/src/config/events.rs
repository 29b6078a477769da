//! `[events]`: where the orchestrator announces results and station changes beyond
//! `GET /api/events` (always served): webhooks and an MQTT broker.

use super::{ConfigError, positive};
use oa_contract::events::EVENT_TYPES;
use oa_contract::{IdKind, validate_id};
use serde::Deserialize;
use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Events kept in memory, for `GET /api/events` clients that come back with
    /// `Last-Event-ID`.
    pub history: usize,
    #[serde(rename = "webhook")]
    pub webhooks: Vec<WebhookConfig>,
    pub mqtt: Option<MqttConfig>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            history: 1024,
            webhooks: Vec::new(),
            mqtt: None,
        }
    }
}

/// `[[events.webhook]]`: events POSTed to `url`, signed, retried until accepted, kept in
/// the store's outbox across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names the webhook's outbox folder and its metrics: `[A-Za-z0-9][A-Za-z0-9_-]*`.
    pub name: String,
    pub url: String,
    /// The environment variable that holds the HMAC-SHA256 signing secret (never the
    /// secret itself: configuration files are shared and committed).
    pub secret_env: String,
    /// Event types to send; empty: all.
    pub types: Vec<String>,
    /// Seconds one delivery may take.
    pub timeout_s: u64,
    /// Longest wait between two tries of an event the receiver did not accept.
    pub max_backoff_s: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            name: String::new(),
            url: String::new(),
            secret_env: "OA_WEBHOOK_SECRET".into(),
            types: Vec::new(),
            timeout_s: 5,
            max_backoff_s: 60,
        }
    }
}

/// `[events.mqtt]`: every event published (QoS 1 by default) to
/// `{topic}/{station_id}/{type}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    /// The topic prefix.
    pub topic: String,
    /// Empty: `order-accuracy-{OA_INSTANCE_ID or host name}`.
    pub client_id: String,
    /// 0 at most once, 1 at least once, 2 exactly once (between us and the broker).
    pub qos: u8,
    pub types: Vec<String>,
    /// Environment variables holding the broker's user name and password.
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    pub keep_alive_s: u64,
    /// Events queued while the broker is unreachable; beyond it the newest are dropped
    /// (and counted), so a dead broker never holds up order processing.
    pub queue: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: String::new(),
            port: 1883,
            topic: "order-accuracy".into(),
            client_id: String::new(),
            qos: 1,
            types: Vec::new(),
            username_env: None,
            password_env: None,
            keep_alive_s: 30,
            queue: 1000,
        }
    }
}

fn check_types(field: &str, types: &[String]) -> Result<(), ConfigError> {
    for (i, t) in types.iter().enumerate() {
        if !EVENT_TYPES.contains(&t.as_str()) {
            return Err(ConfigError::new(
                format!("{field}[{i}]"),
                format!("{t:?} is not an event type ({})", EVENT_TYPES.join(", ")),
            ));
        }
    }
    Ok(())
}

impl EventsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("events.history", self.history as u64)?;
        let mut names = HashSet::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            let f = |k: &str| format!("events.webhook[{i}].{k}");
            validate_id(IdKind::Sink, &w.name)
                .map_err(|e| ConfigError::new(f("name"), e.to_string()))?;
            if !names.insert(w.name.as_str()) {
                return Err(ConfigError::new(
                    f("name"),
                    format!("{:?} is used twice", w.name),
                ));
            }
            let url = w.url.trim();
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url
                    .parse::<axum::http::Uri>()
                    .map(|u| u.host().is_none())
                    .unwrap_or(true)
            {
                return Err(ConfigError::new(
                    f("url"),
                    format!("{url:?} is not an http:// or https:// URL with a host"),
                ));
            }
            if w.secret_env.trim().is_empty() {
                return Err(ConfigError::new(
                    f("secret_env"),
                    "empty: name the environment variable that holds the signing secret",
                ));
            }
            check_types(&f("types"), &w.types)?;
            positive(&f("timeout_s"), w.timeout_s)?;
            positive(&f("max_backoff_s"), w.max_backoff_s)?;
        }
        if let Some(m) = &self.mqtt {
            if m.host.trim().is_empty() {
                return Err(ConfigError::new("events.mqtt.host", "missing"));
            }
            positive("events.mqtt.port", u64::from(m.port))?;
            if m.topic.is_empty() || m.topic.contains(['+', '#']) || m.topic.ends_with('/') {
                return Err(ConfigError::new(
                    "events.mqtt.topic",
                    format!(
                        "{:?}: a topic prefix without wildcards or a trailing '/'",
                        m.topic
                    ),
                ));
            }
            if m.qos > 2 {
                return Err(ConfigError::new("events.mqtt.qos", "0, 1 or 2"));
            }
            check_types("events.mqtt.types", &m.types)?;
            positive("events.mqtt.keep_alive_s", m.keep_alive_s.max(1))?;
            positive("events.mqtt.queue", m.queue as u64)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<EventsConfig, ConfigError> {
        let c: EventsConfig =
            toml::from_str(s).map_err(|e| ConfigError::new("toml", e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn webhooks_and_mqtt_load_with_defaults() {
        let c = parse(
            r#"
            [[webhook]]
            name = "pos"
            url = "http://127.0.0.1:9000/hook"
            types = ["order.mismatch"]
            [mqtt]
            host = "127.0.0.1"
            "#,
        )
        .unwrap();
        assert_eq!(c.webhooks[0].secret_env, "OA_WEBHOOK_SECRET");
        assert_eq!(c.webhooks[0].timeout_s, 5);
        let m = c.mqtt.unwrap();
        assert_eq!(
            (m.port, m.qos, m.topic.as_str()),
            (1883, 1, "order-accuracy")
        );
        assert_eq!(c.history, 1024);
    }

    #[test]
    fn bad_sinks_name_their_field() {
        let field = |s: &str| parse(s).unwrap_err().field;
        assert_eq!(
            field("[[webhook]]\nname = \"a/b\"\nurl = \"http://h/\""),
            "events.webhook[0].name"
        );
        assert_eq!(
            field("[[webhook]]\nname = \"a\"\nurl = \"ftp://h/\""),
            "events.webhook[0].url"
        );
        assert_eq!(
            field(
                "[[webhook]]\nname = \"a\"\nurl = \"http://h/\"\n[[webhook]]\nname = \"a\"\nurl = \"http://h/\""
            ),
            "events.webhook[1].name"
        );
        assert_eq!(
            field("[[webhook]]\nname = \"a\"\nurl = \"http://h/\"\ntypes = [\"order.done\"]"),
            "events.webhook[0].types[0]"
        );
        assert_eq!(
            field("[mqtt]\nhost = \"h\"\ntopic = \"a/#\""),
            "events.mqtt.topic"
        );
        assert_eq!(field("[mqtt]\nhost = \"h\"\nqos = 3"), "events.mqtt.qos");
        assert_eq!(field("[mqtt]\nport = 1"), "events.mqtt.host");
    }
}
