//! The station index: how the orchestrator finds new orders without walking frames.
//!
//! Beside the order folders, the sink writes one small object per event of an order:
//! `{prefix}{station}/__index__/{rev_day:05}/{rev_ms:013}_{kind}_{order}` where
//! * `rev_ms` is [`REV_MS_BASE`] minus the Unix ms of the event on the frames' clock, so
//!   that a plain ascending `ListObjectsV2` gives the **newest first**;
//! * `rev_day` is [`REV_DAY_BASE`] minus its Unix day: one folder per day, newest first
//!   too, so that a store backed by a file system (the embedded one) reads one day's
//!   folder for a poll, never every entry of all time;
//! * `kind` is `begin` (the order's first frame is about to be stored: written before it)
//!   or `marker` (its `__EOS__` is about to be written or rewritten: written before it);
//! * `order` is the order key (`384`, `384.2`).
//!
//! The body is a small JSON object for people ([`IndexEntry::to_json`]); readers use the
//! key alone. `__index__` starts with `_`, which no station or order ID can, so the folder
//! never reads as an order ([`crate::parse_key`] refuses its keys).
//!
//! A reader lists the index from its start and stops at the first entry older than what
//! it has already looked at: one request per poll whatever the history, and a restart
//! looks only at entries newer than its checkpoint ([`checkpoint_key`]). Entries are
//! written *before* what they announce, so an entry may name a marker that is not there
//! yet (or never will be, when the pipeline died): a `begin` without a later `marker` is
//! how an order left without one is found.

use std::fmt;

use crate::ids::{IdError, IdKind, validate_id, validate_order_key};

/// Folder of a station's index, inside the station's folder.
pub const INDEX_DIR: &str = "__index__";

/// `rev_ms = REV_MS_BASE - unix_ms`: 13 digits until the year 2286.
pub const REV_MS_BASE: u64 = 9_999_999_999_999;

/// `rev_day = REV_DAY_BASE - unix_ms / DAY_MS`: 5 digits until the year 2243.
pub const REV_DAY_BASE: u64 = 99_999;

/// Milliseconds in a day (the index's day folders).
pub const DAY_MS: u64 = 86_400_000;

/// Folder beside the results holding each station's checkpoint.
pub const CHECKPOINTS_DIR: &str = "checkpoints";

/// What an index entry announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndexKind {
    /// The order's first frame is being stored.
    Begin,
    /// The order's marker is being written (again, for a repeated ID).
    Marker,
}

impl IndexKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IndexKind::Begin => "begin",
            IndexKind::Marker => "marker",
        }
    }

    fn parse(s: &str) -> Option<IndexKind> {
        match s {
            "begin" => Some(IndexKind::Begin),
            "marker" => Some(IndexKind::Marker),
            _ => None,
        }
    }
}

impl fmt::Display for IndexKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a station's index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IndexEntry {
    pub station: String,
    pub order: String,
    pub kind: IndexKind,
    /// When it happened, on the frames' clock.
    pub unix_ms: u64,
}

impl IndexEntry {
    /// The body written with the entry (for people; readers use the key).
    pub fn to_json(&self) -> String {
        format!(
            "{{\"station\":\"{}\",\"order\":\"{}\",\"kind\":\"{}\",\"unix_ms\":{}}}",
            self.station, self.order, self.kind, self.unix_ms
        )
    }
}

/// `{prefix}{station}/__index__/`.
pub fn index_prefix(prefix: &str, station: &str) -> Result<String, IdError> {
    validate_id(IdKind::Station, station)?;
    Ok(format!("{prefix}{station}/{INDEX_DIR}/"))
}

/// Key of an index entry; `unix_ms` above [`REV_MS_BASE`] is clamped to it.
pub fn index_key(
    prefix: &str,
    station: &str,
    order: &str,
    kind: IndexKind,
    unix_ms: u64,
) -> Result<String, IdError> {
    validate_order_key(order)?;
    Ok(format!(
        "{}{}_{kind}_{order}",
        index_prefix(prefix, station)?,
        rev_path(unix_ms)
    ))
}

/// `{rev_day:05}/{rev_ms:013}` of `unix_ms` (clamped to [`REV_MS_BASE`]).
fn rev_path(unix_ms: u64) -> String {
    let unix_ms = unix_ms.min(REV_MS_BASE);
    let day = REV_DAY_BASE.saturating_sub(unix_ms / DAY_MS);
    format!("{day:05}/{:013}", REV_MS_BASE - unix_ms)
}

/// The entry a key [`index_key`] wrote under `prefix`; `None` for any other key.
pub fn parse_index_key(prefix: &str, key: &str) -> Option<IndexEntry> {
    let rest = key.strip_prefix(prefix)?;
    let (station, rest) = rest.split_once('/')?;
    let name = rest.strip_prefix(INDEX_DIR)?.strip_prefix('/')?;
    let (day, name) = name.split_once('/')?;
    let (rev, rest) = name.split_once('_')?;
    let (kind, order) = rest.split_once('_')?;
    if rev.len() != 13 || !rev.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    validate_id(IdKind::Station, station).ok()?;
    validate_order_key(order).ok()?;
    let unix_ms = REV_MS_BASE - rev.parse::<u64>().ok()?;
    // The day folder must be the entry's own: a key in another would list out of order.
    if rev_path(unix_ms).split_once('/')?.0 != day {
        return None;
    }
    Some(IndexEntry {
        station: station.to_owned(),
        order: order.to_owned(),
        kind: IndexKind::parse(kind)?,
        unix_ms,
    })
}

/// `StartAfter` for a LIST of the entries of `station` strictly older than `unix_ms`.
pub fn index_after(prefix: &str, station: &str, unix_ms: u64) -> Result<String, IdError> {
    // `~` sorts after `_` and every character of an order key: past every entry of `unix_ms`.
    Ok(format!(
        "{}{}~",
        index_prefix(prefix, station)?,
        rev_path(unix_ms)
    ))
}

/// Key of a station's checkpoint beside the results: `{prefix}checkpoints/{station}.json`.
/// It holds the frames-clock time before which every index entry of the station has been
/// looked at to the end (the orchestrator's business; see its documentation).
pub fn checkpoint_key(prefix: &str, station: &str) -> Result<String, IdError> {
    validate_id(IdKind::Station, station)?;
    Ok(format!("{prefix}{CHECKPOINTS_DIR}/{station}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_list_newest_first_and_parse_back() {
        let older = index_key("p/", "s1", "384", IndexKind::Begin, 1_700_000_000_000).unwrap();
        let newer = index_key("p/", "s1", "385.2", IndexKind::Marker, 1_700_000_000_001).unwrap();
        assert_eq!(older, "p/s1/__index__/80324/8299999999999_begin_384");
        assert!(newer < older, "a plain LIST gives the newest first");
        let e = parse_index_key("p/", &newer).unwrap();
        assert_eq!(
            e,
            IndexEntry {
                station: "s1".into(),
                order: "385.2".into(),
                kind: IndexKind::Marker,
                unix_ms: 1_700_000_000_001
            }
        );
        assert!(e.to_json().contains("\"kind\":\"marker\""));
    }

    #[test]
    fn index_keys_are_never_order_keys() {
        let k = index_key("p/", "s1", "384", IndexKind::Marker, 5).unwrap();
        assert!(crate::parse_key("p/", &k).is_err());
        assert_eq!(parse_index_key("p/", "p/s1/384/__EOS__"), None);
        assert_eq!(
            parse_index_key("p/", "p/s1/__index__/99999/12_begin_384"),
            None
        );
        assert_eq!(
            parse_index_key("p/", "p/s1/__index__/99999/9999999999994_other_384"),
            None
        );
        // The right name in another day's folder.
        assert_eq!(
            parse_index_key("p/", "p/s1/__index__/99998/9999999999994_begin_384"),
            None
        );
        assert!(parse_index_key("p/", "p/s1/__index__/99999/9999999999994_begin_384").is_some());
        assert!(index_key("p/", "s1", "../x", IndexKind::Begin, 5).is_err());
    }

    #[test]
    fn start_after_skips_the_newer_entries_and_those_of_that_ms() {
        let at = index_key("p/", "s1", "9", IndexKind::Marker, 1_000).unwrap();
        let older = index_key("p/", "s1", "1", IndexKind::Begin, 999).unwrap();
        let newer = index_key("p/", "s1", "1", IndexKind::Begin, 1_001).unwrap();
        let after = index_after("p/", "s1", 1_000).unwrap();
        assert!(at < after && newer < after && after < older);
        // Across a day boundary: the older day's folder sorts after.
        let day = DAY_MS;
        let before_midnight = index_key("p/", "s1", "1", IndexKind::Begin, day - 1).unwrap();
        let after = index_after("p/", "s1", day).unwrap();
        assert!(after < before_midnight, "{after} < {before_midnight}");
    }

    #[test]
    fn checkpoints_live_beside_the_results() {
        assert_eq!(checkpoint_key("r/", "s1").unwrap(), "r/checkpoints/s1.json");
        assert!(checkpoint_key("r/", "__index__").is_err());
    }
}
