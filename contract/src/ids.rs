//! Station and order IDs become parts of object keys, so only a narrow alphabet is allowed:
//! `[A-Za-z0-9][A-Za-z0-9_-]{0,63}`. OCR noise, path separators, `..` and unicode are refused.

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

#[cfg(test)]
mod tests {
    use super::*;

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
