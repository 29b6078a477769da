//! Files written for the first release keep loading. There, every recognition setting sat
//! directly in `[recognition]`; today each backend has its table. A flat key is moved to
//! its backend's table with a warning naming the new key.

use super::ConfigError;

const LABELS_KEYS: &[&str] = &[
    "min_confidence",
    "max_edit_distance",
    "model_dir",
    "threads",
    "det_max_side",
];
const OPENAI_KEYS: &[&str] = &[
    "endpoint",
    "model",
    "api_key_env",
    "timeout_ms",
    "max_concurrent",
    "retries",
    "breaker_failures",
    "breaker_cooldown_ms",
    "ca_file",
];

/// Returns the table in today's form and one warning per key moved.
pub(super) fn upgrade(mut table: toml::Table) -> Result<(toml::Table, Vec<String>), ConfigError> {
    let mut warnings = Vec::new();
    let Some(toml::Value::Table(recognition)) = table.get_mut("recognition") else {
        return Ok((table, warnings));
    };
    let backend = match recognition.get("backend") {
        Some(toml::Value::String(b)) => b.clone(),
        _ => "labels".to_owned(),
    };
    for (owner, keys) in [("labels", LABELS_KEYS), ("openai", OPENAI_KEYS)] {
        for key in keys.iter().copied() {
            let Some(value) = recognition.remove(key) else {
                continue;
            };
            let old = format!("recognition.{key}");
            if owner != backend {
                return Err(ConfigError::new(
                    old,
                    format!("not used by backend {backend:?}"),
                ));
            }
            let new = format!("recognition.{owner}.{key}");
            let section = recognition
                .entry(owner)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(section) = section else {
                return Err(ConfigError::new(
                    format!("recognition.{owner}"),
                    "must be a table",
                ));
            };
            if section.contains_key(key) {
                return Err(ConfigError::new(
                    old,
                    format!("also set as {new}; keep only {new}"),
                ));
            }
            section.insert(key.to_owned(), value);
            warnings.push(format!(
                "{old} is deprecated: write it as {new} (in a [recognition.{owner}] table); \
                 the old form still loads"
            ));
        }
    }
    Ok((table, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade_str(s: &str) -> Result<(toml::Table, Vec<String>), ConfigError> {
        upgrade(toml::from_str(s).unwrap())
    }

    #[test]
    fn flat_keys_move_to_their_backend_table() {
        let (t, w) = upgrade_str(
            "[recognition]\nbackend = \"openai\"\nendpoint = \"http://h\"\nretries = 1\n",
        )
        .unwrap();
        let openai = t["recognition"]["openai"].as_table().unwrap();
        assert_eq!(openai["endpoint"].as_str(), Some("http://h"));
        assert_eq!(openai["retries"].as_integer(), Some(1));
        assert!(t["recognition"].get("endpoint").is_none());
        assert_eq!(w.len(), 2);
        assert!(w[0].contains("recognition.openai.endpoint"), "{w:?}");
    }

    #[test]
    fn todays_form_is_untouched() {
        let src = "[recognition]\nbackend = \"labels\"\n[recognition.labels]\nthreads = 1\n";
        let (t, w) = upgrade_str(src).unwrap();
        assert!(w.is_empty());
        assert_eq!(t, toml::from_str::<toml::Table>(src).unwrap());
    }

    #[test]
    fn a_key_of_the_other_backend_or_set_twice_is_refused() {
        let e = upgrade_str("[recognition]\nendpoint = \"http://h\"\n").unwrap_err();
        assert_eq!(e.field, "recognition.endpoint");
        let e = upgrade_str("[recognition]\nthreads = 1\n[recognition.labels]\nthreads = 2\n")
            .unwrap_err();
        assert!(e.message.contains("recognition.labels.threads"), "{e}");
    }
}
