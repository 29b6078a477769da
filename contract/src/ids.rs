//! Station and order IDs become parts of object keys, so only a narrow alphabet is allowed:
//! `[A-Za-z0-9][A-Za-z0-9_-]{0,63}`. OCR noise, path separators, `..` and unicode are refused.
//!
//! An order number the till hands out again (a daily reset, a counter that wraps) is a new
//! *occurrence* of that ID at the station: its objects live under the order key
//! `{order}.{n}` (n ≥ 2; the first occurrence is the bare ID, as it always was). IDs hold
//! no `.`, so an order key can never be mistaken for another order's ID.

use std::fmt;

/// Longest accepted ID, in bytes (all accepted characters are ASCII).
pub const MAX_ID_LEN: usize = 64;

/// What an ID names; only used to make error messages precise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Station,
    Order,
    /// The name of an event sink (a webhook).
    Sink,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::Station => "station ID",
            IdKind::Order => "order ID",
            IdKind::Sink => "sink name",
        })
    }
}

/// Why an ID was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    Empty(IdKind),
    TooLong(IdKind, usize),
    BadFirstChar(IdKind, char),
    BadChar(IdKind, char),
    /// An order key's `.{n}` is not a number ≥ 2 without leading zeros.
    BadOccurrence(String),
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Empty(k) => write!(f, "{k} is empty"),
            IdError::TooLong(k, n) => {
                write!(f, "{k} is {n} bytes long, at most {MAX_ID_LEN} are allowed")
            }
            IdError::BadFirstChar(k, c) => {
                write!(f, "{k} must start with a letter or digit, not {c:?}")
            }
            IdError::BadChar(k, c) => write!(
                f,
                "{k} may only hold letters, digits, '_' and '-', not {c:?}"
            ),
            IdError::BadOccurrence(n) => write!(
                f,
                "order key occurrence {n:?} must be a number from 2 up, without leading zeros \
                 (the first occurrence is the bare order ID)"
            ),
        }
    }
}

impl std::error::Error for IdError {}

/// Checks `id` against `[A-Za-z0-9][A-Za-z0-9_-]{0,63}`.
pub fn validate_id(kind: IdKind, id: &str) -> Result<(), IdError> {
    let mut chars = id.chars();
    let first = chars.next().ok_or(IdError::Empty(kind))?;
    if !first.is_ascii_alphanumeric() {
        return Err(IdError::BadFirstChar(kind, first));
    }
    if let Some(bad) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        return Err(IdError::BadChar(kind, bad));
    }
    if id.len() > MAX_ID_LEN {
        return Err(IdError::TooLong(kind, id.len()));
    }
    Ok(())
}

/// Whether `id` may become part of a key.
pub fn is_valid_id(id: &str) -> bool {
    validate_id(IdKind::Order, id).is_ok()
}

/// Checks an order key: an order ID, or `{id}.{n}` for its n-th occurrence (n ≥ 2).
/// Key builders and parsers take order keys; what OCR reads is checked with [`validate_id`].
pub fn validate_order_key(key: &str) -> Result<(), IdError> {
    let (id, occurrence) = match key.split_once('.') {
        Some((id, n)) => (id, Some(n)),
        None => (key, None),
    };
    validate_id(IdKind::Order, id)?;
    if let Some(n) = occurrence
        && parse_occurrence(n).is_none()
    {
        return Err(IdError::BadOccurrence(n.to_owned()));
    }
    Ok(())
}

/// `n` as an occurrence number: decimal, ≥ 2, no leading zero, no sign.
fn parse_occurrence(n: &str) -> Option<u32> {
    if n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok().filter(|&n| n >= 2)
}

/// The order ID and occurrence of an order key: `("384", 1)` for `384`, `("384", 2)` for
/// `384.2`. Takes keys [`validate_order_key`] accepts; anything after a `.` that is not an
/// occurrence counts as occurrence 1 of the whole key.
pub fn split_order_key(key: &str) -> (&str, u32) {
    match key.split_once('.') {
        Some((id, n)) => match parse_occurrence(n) {
            Some(n) => (id, n),
            None => (key, 1),
        },
        None => (key, 1),
    }
}

/// The order key of occurrence `n` of `order`: the bare ID for the first.
pub fn order_key(order: &str, occurrence: u32) -> String {
    if occurrence <= 1 {
        order.to_owned()
    } else {
        format!("{order}.{occurrence}")
    }
}

/// How an order ID is printed on a slip, `ocrsegment`'s default `order-pattern` (and what
/// `orchestrator calibrate` looks for): case-insensitive; reads `#384`, `ORDER 384`,
/// `ORDER #384`, `Order No. 384`, `Order #A7-5521` and the OCR joins `ORDER#384` /
/// `ORDER384`. The ID, the one capture group, must hold a digit so that words after
/// "order" (`ORDER SUMMARY`) are not taken for IDs.
pub const DEFAULT_ORDER_PATTERN: &str =
    r"(?i)(?:\border\s*(?:no\.?\s*|number\s*|num\s*)?[#:.]?\s*|#\s*)([a-z]*[0-9][a-z0-9_-]*)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_keys_name_occurrences() {
        for key in ["384", "384.2", "A7-5521.17", "x.4294967295"] {
            assert_eq!(validate_order_key(key), Ok(()), "{key}");
            let (id, n) = split_order_key(key);
            assert_eq!(order_key(id, n), key);
        }
        assert_eq!(split_order_key("384"), ("384", 1));
        assert_eq!(split_order_key("384.12"), ("384", 12));
        assert_eq!(order_key("384", 1), "384");
        for (key, want) in [
            ("384.1", IdError::BadOccurrence("1".into())),
            ("384.0", IdError::BadOccurrence("0".into())),
            ("384.02", IdError::BadOccurrence("02".into())),
            ("384.", IdError::BadOccurrence(String::new())),
            ("384.x", IdError::BadOccurrence("x".into())),
            ("384.2.3", IdError::BadOccurrence("2.3".into())),
            ("384.+2", IdError::BadOccurrence("+2".into())),
            (
                "384.99999999999",
                IdError::BadOccurrence("99999999999".into()),
            ),
            (".2", IdError::Empty(IdKind::Order)),
            ("a/b.2", IdError::BadChar(IdKind::Order, '/')),
        ] {
            assert_eq!(validate_order_key(key), Err(want), "{key}");
        }
        // What OCR reads stays an ID: a '.' is refused there.
        assert!(validate_id(IdKind::Order, "384.2").is_err());
    }

    #[test]
    fn accepts_contract_alphabet() {
        for id in ["384", "A7-5521", "station_1", "a", &"x".repeat(64)] {
            assert!(is_valid_id(id), "{id} should be valid");
        }
    }

    #[test]
    fn refuses_everything_else() {
        let long = "x".repeat(65);
        let cases: [(&str, IdError); 8] = [
            ("", IdError::Empty(IdKind::Order)),
            ("../etc", IdError::BadFirstChar(IdKind::Order, '.')),
            ("a/b", IdError::BadChar(IdKind::Order, '/')),
            ("_a", IdError::BadFirstChar(IdKind::Order, '_')),
            ("-a", IdError::BadFirstChar(IdKind::Order, '-')),
            ("a b", IdError::BadChar(IdKind::Order, ' ')),
            ("ordé", IdError::BadChar(IdKind::Order, 'é')),
            (&long, IdError::TooLong(IdKind::Order, 65)),
        ];
        for (id, want) in cases {
            assert_eq!(validate_id(IdKind::Order, id), Err(want), "{id:?}");
        }
    }

    #[test]
    fn error_names_the_kind() {
        let e = validate_id(IdKind::Station, "a/b").unwrap_err();
        assert_eq!(
            e.to_string(),
            "station ID may only hold letters, digits, '_' and '-', not '/'"
        );
    }
}
