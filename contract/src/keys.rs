//! Object keys:
//! `{prefix}{station}/{order}/frame_{unix_ms}_{seq:06}.jpg`, `{prefix}{station}/{order}/__EOS__`
//! and `{results_prefix}results/{station}/{order}.json`; beside the results,
//! `{results_prefix}expected/{order}.json` holds an order's expected items, and
//! `{results_prefix}outbox/{webhook}/{unix_ms}_{writer}_{seq}.json` each webhook's undelivered
//! events.
//!
//! `seq` is zero-padded to six digits so that a lexicographic listing is capture order.
//!
//! `{order}` in the frame, marker, result and claim keys is an *order key*: the order ID,
//! or `{id}.{n}` for the n-th time the same number was used at the station (see
//! [`crate::validate_order_key`]). Expected orders are the till's: always the bare ID.

use crate::ids::{IdError, IdKind, split_order_key, validate_id, validate_order_key};
use std::fmt;

/// File name of the completion marker, written last for every order.
pub const MARKER_NAME: &str = "__EOS__";
/// Start of every frame object's file name.
pub const FRAME_PREFIX: &str = "frame_";
/// Extension of every frame object.
pub const FRAME_EXTENSION: &str = ".jpg";
/// Folder under the results prefix that holds one JSON result per order.
pub const RESULTS_DIR: &str = "results";

/// `{prefix}{station}/`: everything a station stores.
pub fn station_prefix(prefix: &str, station: &str) -> Result<String, IdError> {
    validate_id(IdKind::Station, station)?;
    Ok(format!("{prefix}{station}/"))
}

/// `{prefix}{station}/{order}/`: everything one order (an order key) stores.
pub fn order_prefix(prefix: &str, station: &str, order: &str) -> Result<String, IdError> {
    validate_id(IdKind::Station, station)?;
    validate_order_key(order)?;
    Ok(format!("{prefix}{station}/{order}/"))
}

/// `{prefix}{station}/{order}.`: a LIST with this prefix and the delimiter `/` names, as
/// common prefixes, the folders of every later occurrence of order ID `order`.
pub fn occurrences_prefix(prefix: &str, station: &str, order: &str) -> Result<String, IdError> {
    validate_id(IdKind::Station, station)?;
    validate_id(IdKind::Order, order)?;
    Ok(format!("{prefix}{station}/{order}."))
}

/// The occurrence (≥ 2) a common prefix `{prefix}{station}/{order}.{n}/` of a LIST under
/// [`occurrences_prefix`] names; `None` for anything else.
pub fn parse_occurrence_prefix(
    prefix: &str,
    station: &str,
    order: &str,
    common_prefix: &str,
) -> Option<u32> {
    let key = common_prefix
        .strip_prefix(prefix)?
        .strip_prefix(station)?
        .strip_prefix('/')?
        .strip_suffix('/')?;
    validate_order_key(key).ok()?;
    match split_order_key(key) {
        (id, n) if id == order && n >= 2 => Some(n),
        _ => None,
    }
}

/// Key of one frame.
pub fn frame_key(
    prefix: &str,
    station: &str,
    order: &str,
    unix_ms: u64,
    seq: u32,
) -> Result<String, IdError> {
    Ok(format!(
        "{}{FRAME_PREFIX}{unix_ms}_{seq:06}{FRAME_EXTENSION}",
        order_prefix(prefix, station, order)?
    ))
}

/// Key of an order's completion marker.
pub fn marker_key(prefix: &str, station: &str, order: &str) -> Result<String, IdError> {
    Ok(format!(
        "{}{MARKER_NAME}",
        order_prefix(prefix, station, order)?
    ))
}

/// Key of an order's result (`order` is an order key).
pub fn result_key(prefix: &str, station: &str, order: &str) -> Result<String, IdError> {
    validate_id(IdKind::Station, station)?;
    validate_order_key(order)?;
    Ok(format!("{prefix}{RESULTS_DIR}/{station}/{order}.json"))
}

/// Folder of the claims beside the results.
pub const CLAIMS_DIR: &str = "claims";

/// Key of the claim on computing result `revision` of an order: `claims/{station}/{order}`
/// for the first, `claims/{station}/{order}.rev{revision}` for a reprocess (`order` is an
/// order key; an occurrence is all digits after its `.`, so the two never collide).
pub fn claim_key(
    prefix: &str,
    station: &str,
    order: &str,
    revision: u32,
) -> Result<String, IdError> {
    validate_id(IdKind::Station, station)?;
    validate_order_key(order)?;
    Ok(if revision <= 1 {
        format!("{prefix}{CLAIMS_DIR}/{station}/{order}")
    } else {
        format!("{prefix}{CLAIMS_DIR}/{station}/{order}.rev{revision}")
    })
}

/// Folder beside the results that holds the expected items of each order, as the till
/// sent them (`PUT /api/expected-orders/{order}`).
pub const EXPECTED_DIR: &str = "expected";

/// Key of an order's expected items: `{prefix}expected/{order}.json`.
pub fn expected_key(prefix: &str, order: &str) -> Result<String, IdError> {
    validate_id(IdKind::Order, order)?;
    Ok(format!("{prefix}{EXPECTED_DIR}/{order}.json"))
}

/// `{prefix}expected/`: every expected order.
pub fn expected_prefix(prefix: &str) -> String {
    format!("{prefix}{EXPECTED_DIR}/")
}

/// The order ID of a key [`expected_key`] wrote under `prefix`; `None` for any other key.
pub fn parse_expected_key<'k>(prefix: &str, key: &'k str) -> Option<&'k str> {
    let order = key
        .strip_prefix(prefix)?
        .strip_prefix(EXPECTED_DIR)?
        .strip_prefix('/')?
        .strip_suffix(".json")?;
    validate_id(IdKind::Order, order).ok()?;
    Some(order)
}

/// Folder beside the results that holds each webhook's undelivered events, one object per
/// event, deleted once the receiver accepted it.
pub const OUTBOX_DIR: &str = "outbox";

/// `{prefix}outbox/{sink}/`: the undelivered events of one webhook.
pub fn outbox_prefix(prefix: &str, sink: &str) -> Result<String, IdError> {
    validate_id(IdKind::Sink, sink)?;
    Ok(format!("{prefix}{OUTBOX_DIR}/{sink}/"))
}

/// Key of one undelivered event:
/// `{prefix}outbox/{sink}/{unix_ms:013}_{writer:08x}_{seq:06}.json`. A listing is the
/// order the events were recorded in; `writer` (random per process) keeps two processes
/// recording in the same millisecond apart.
pub fn outbox_key(
    prefix: &str,
    sink: &str,
    unix_ms: u64,
    writer: u32,
    seq: u64,
) -> Result<String, IdError> {
    Ok(format!(
        "{}{unix_ms:013}_{writer:08x}_{seq:06}.json",
        outbox_prefix(prefix, sink)?
    ))
}

/// What a key under a frames prefix names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedKey {
    Frame {
        station: String,
        order: String,
        unix_ms: u64,
        seq: u32,
    },
    Marker {
        station: String,
        order: String,
    },
}

/// Why a key is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    MissingPrefix,
    Shape,
    Id(IdError),
    FrameName,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::MissingPrefix => f.write_str("key does not start with the configured prefix"),
            KeyError::Shape => f.write_str("key is not {station}/{order}/{file}"),
            KeyError::Id(e) => write!(f, "{e}"),
            KeyError::FrameName => {
                f.write_str("file name is neither __EOS__ nor frame_{unix_ms}_{seq:06}.jpg")
            }
        }
    }
}

impl std::error::Error for KeyError {}

/// Parses a frame or marker key written under `prefix`.
pub fn parse_key(prefix: &str, key: &str) -> Result<ParsedKey, KeyError> {
    let rest = key.strip_prefix(prefix).ok_or(KeyError::MissingPrefix)?;
    let mut parts = rest.split('/');
    let (Some(station), Some(order), Some(file), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(KeyError::Shape);
    };
    validate_id(IdKind::Station, station).map_err(KeyError::Id)?;
    validate_order_key(order).map_err(KeyError::Id)?;
    let (station, order) = (station.to_owned(), order.to_owned());
    if file == MARKER_NAME {
        return Ok(ParsedKey::Marker { station, order });
    }
    let stem = file
        .strip_prefix(FRAME_PREFIX)
        .and_then(|f| f.strip_suffix(FRAME_EXTENSION))
        .ok_or(KeyError::FrameName)?;
    let (ms, seq) = stem.split_once('_').ok_or(KeyError::FrameName)?;
    if seq.len() < 6 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return Err(KeyError::FrameName);
    }
    Ok(ParsedKey::Frame {
        station,
        order,
        unix_ms: ms.parse().map_err(|_| KeyError::FrameName)?,
        seq: seq.parse().map_err(|_| KeyError::FrameName)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_contract() {
        assert_eq!(
            frame_key("", "station_1", "384", 1_700_000_000_123, 7).unwrap(),
            "station_1/384/frame_1700000000123_000007.jpg"
        );
        assert_eq!(
            marker_key("frames/", "station_1", "384").unwrap(),
            "frames/station_1/384/__EOS__"
        );
        assert_eq!(
            result_key("", "station_1", "384").unwrap(),
            "results/station_1/384.json"
        );
        assert_eq!(
            outbox_key("r/", "pos", 1_700_000_000_123, 0xab, 7).unwrap(),
            "r/outbox/pos/1700000000123_000000ab_000007.json"
        );
        assert!(outbox_key("", "../x", 1, 1, 1).is_err());
        // Older events list first, whoever wrote them.
        assert!(
            outbox_key("", "a", 99, u32::MAX, 999_999).unwrap()
                < outbox_key("", "a", 100, 0, 1).unwrap()
        );
    }

    #[test]
    fn seq_padding_sorts_in_capture_order() {
        let a = frame_key("", "s", "o", 5, 9).unwrap();
        let b = frame_key("", "s", "o", 5, 10).unwrap();
        assert!(a < b);
    }

    #[test]
    fn refuses_ids_that_escape_the_layout() {
        assert!(frame_key("", "s", "../x", 1, 1).is_err());
        assert!(marker_key("", "a/b", "1").is_err());
        assert!(result_key("", "s", "").is_err());
    }

    #[test]
    fn parses_what_it_writes() {
        let k = frame_key("p/", "st", "A7-5521", 42, 3).unwrap();
        assert_eq!(
            parse_key("p/", &k).unwrap(),
            ParsedKey::Frame {
                station: "st".into(),
                order: "A7-5521".into(),
                unix_ms: 42,
                seq: 3
            }
        );
        let m = marker_key("p/", "st", "9").unwrap();
        assert_eq!(
            parse_key("p/", &m).unwrap(),
            ParsedKey::Marker {
                station: "st".into(),
                order: "9".into()
            }
        );
        assert_eq!(parse_key("q/", &m), Err(KeyError::MissingPrefix));
        assert_eq!(parse_key("p/", "p/st/9"), Err(KeyError::Shape));
        assert_eq!(
            parse_key("p/", "p/st/9/frame_1_2.jpg"),
            Err(KeyError::FrameName)
        );
    }

    #[test]
    fn expected_keys_are_validated_and_parse_back() {
        assert_eq!(
            expected_key("r/", "A7-5521").unwrap(),
            "r/expected/A7-5521.json"
        );
        assert_eq!(expected_key("", "384").unwrap(), "expected/384.json");
        for bad in ["", "../x", "a/b", "a.b", "ä"] {
            assert!(expected_key("", bad).is_err(), "{bad:?}");
        }
        let k = expected_key("r/", "384").unwrap();
        assert_eq!(parse_expected_key("r/", &k), Some("384"));
        assert_eq!(expected_prefix("r/"), "r/expected/");
        assert_eq!(parse_expected_key("", &k), None, "another prefix");
        assert_eq!(parse_expected_key("r/", "r/expected/384.txt"), None);
        assert_eq!(parse_expected_key("r/", "r/expected/a/b.json"), None);
        assert_eq!(parse_expected_key("r/", "r/results/s/384.json"), None);
    }

    #[test]
    fn claim_keys_per_revision_never_collide() {
        assert_eq!(claim_key("r/", "s1", "384", 1).unwrap(), "r/claims/s1/384");
        assert_eq!(claim_key("r/", "s1", "384", 0).unwrap(), "r/claims/s1/384");
        assert_eq!(claim_key("", "s1", "384", 2).unwrap(), "claims/s1/384.rev2");
        assert!(
            claim_key("", "s1", "a.b", 1).is_err(),
            "order IDs hold no '.'"
        );
        assert_eq!(
            claim_key("", "s1", "384.2", 2).unwrap(),
            "claims/s1/384.2.rev2"
        );
        assert_ne!(
            claim_key("", "s1", "384.2", 1).unwrap(),
            claim_key("", "s1", "384", 2).unwrap()
        );
    }

    #[test]
    fn occurrences_live_beside_the_first() {
        assert_eq!(
            frame_key("p/", "s", "384.2", 5, 1).unwrap(),
            "p/s/384.2/frame_5_000001.jpg"
        );
        assert_eq!(
            result_key("", "s", "384.3").unwrap(),
            "results/s/384.3.json"
        );
        assert_eq!(
            parse_key("p/", "p/s/384.2/__EOS__").unwrap(),
            ParsedKey::Marker {
                station: "s".into(),
                order: "384.2".into()
            }
        );
        assert!(parse_key("p/", "p/s/384.1/__EOS__").is_err());
        assert!(
            expected_key("", "384.2").is_err(),
            "the till's IDs are bare"
        );
        let list = occurrences_prefix("p/", "s", "384").unwrap();
        assert_eq!(list, "p/s/384.");
        assert!(occurrences_prefix("p/", "s", "384.2").is_err());
        for (common, want) in [
            ("p/s/384.2/", Some(2)),
            ("p/s/384.10/", Some(10)),
            ("p/s/384.1/", None),
            ("p/s/384.x/", None),
            ("p/s/3840/", None),
            ("p/s/384.2", None),
            ("p/t/384.2/", None),
        ] {
            assert_eq!(
                parse_occurrence_prefix("p/", "s", "384", common),
                want,
                "{common}"
            );
        }
    }
}
