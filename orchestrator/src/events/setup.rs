//! From `[events]` and the environment to running sinks.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{ConfigError, EventsConfig};
use crate::shutdown::Stopping;

use super::mqtt::Mqtt;
use super::webhook::{Webhook, WebhookSettings};
use super::{Events, EventsDeps, OutboxPlace};

/// What the environment holds for `[events]`: each webhook's signing secret, the MQTT
/// broker's credentials.
#[derive(Clone, Default)]
pub struct Secrets {
    pub webhooks: Vec<Vec<u8>>,
    pub mqtt: Option<(String, String)>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

/// Reads the secrets `[events]` names through `env`; errors name the field and the variable.
pub fn secrets(
    c: &EventsConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Secrets, ConfigError> {
    let mut out = Secrets::default();
    for (i, w) in c.webhooks.iter().enumerate() {
        match env(&w.secret_env) {
            Some(s) if !s.is_empty() => out.webhooks.push(s.into_bytes()),
            _ => {
                return Err(ConfigError::new(
                    format!("events.webhook[{i}].secret_env"),
                    format!(
                        "set {} in the environment: the secret webhook {:?} signs its \
                         events with (X-OA-Signature)",
                        w.secret_env, w.name
                    ),
                ));
            }
        }
    }
    if let Some(m) = &c.mqtt {
        out.mqtt = match (&m.username_env, &m.password_env) {
            (None, None) => None,
            (u, p) => {
                let read = |field: &str, var: &Option<String>| match var {
                    None => Ok(String::new()),
                    Some(v) => env(v).ok_or_else(|| {
                        ConfigError::new(
                            format!("events.mqtt.{field}"),
                            format!("set {v} in the environment"),
                        )
                    }),
                };
                Some((read("username_env", u)?, read("password_env", p)?))
            }
        };
    }
    Ok(out)
}

/// Builds the sinks (the MQTT client starts connecting; webhooks deliver once
/// [`Events::start_delivery`] is called).
pub fn build(
    c: &EventsConfig,
    secrets: Secrets,
    outbox: OutboxPlace,
    owner: &str,
    stopping: Stopping,
) -> Result<Arc<Events>, String> {
    let mut webhooks = Vec::new();
    for (w, secret) in c.webhooks.iter().zip(secrets.webhooks) {
        webhooks.push(Arc::new(Webhook::new(WebhookSettings {
            name: w.name.clone(),
            url: w.url.trim().to_owned(),
            secret,
            types: w.types.clone(),
            timeout: Duration::from_secs(w.timeout_s),
            max_backoff: Duration::from_secs(w.max_backoff_s),
        })?));
    }
    let mqtt = c.mqtt.as_ref().map(|m| {
        let client_id = if m.client_id.is_empty() {
            format!("order-accuracy-{owner}")
        } else {
            m.client_id.clone()
        };
        Mqtt::start(m, client_id, secrets.mqtt.clone(), stopping.clone())
    });
    Ok(Events::new(EventsDeps {
        outbox,
        webhooks,
        mqtt,
        history: c.history,
        stopping,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MqttConfig, WebhookConfig};

    #[test]
    fn a_missing_secret_names_its_variable() {
        let c = EventsConfig {
            webhooks: vec![WebhookConfig {
                name: "pos".into(),
                url: "http://127.0.0.1/".into(),
                secret_env: "POS_SECRET".into(),
                ..WebhookConfig::default()
            }],
            mqtt: Some(MqttConfig {
                host: "h".into(),
                username_env: Some("MQ_USER".into()),
                ..MqttConfig::default()
            }),
            ..EventsConfig::default()
        };
        let e = secrets(&c, |_| None).unwrap_err();
        assert_eq!(e.field, "events.webhook[0].secret_env");
        assert!(e.message.contains("POS_SECRET"), "{e}");
        let e = secrets(&c, |k| (k == "POS_SECRET").then(|| "s3cret".into())).unwrap_err();
        assert_eq!(e.field, "events.mqtt.username_env");
        let s = secrets(&c, |k| Some(format!("v-{k}"))).unwrap();
        assert_eq!(s.webhooks, [b"v-POS_SECRET".to_vec()]);
        assert_eq!(s.mqtt, Some(("v-MQ_USER".into(), String::new())));
        assert_eq!(format!("{s:?}"), "Secrets(..)", "never printed");
    }
}
