//! What the consumer knows of one station's index ([`oa_contract::index`]): the pure core
//! of discovery. It decides where a poll stops listing, what each new entry asks for, and
//! the checkpoint that lets a restart skip history.
//!
//! * A poll lists from the newest entry down to its *floor*: [`LOOKBACK_MS`] before the
//!   newest entry an earlier poll saw, or, on the first poll after a start, before the
//!   stored checkpoint. Entries already looked at in that window are skipped by key.
//! * An order is *unresolved* from its first new entry until its result is up to date
//!   ([`StationIndex::resolved`]). The checkpoint is the time of the oldest unresolved
//!   entry (or just past the newest entry when none is): everything before it needs no
//!   look after a restart.
//! * A `begin` with no `marker` entry since makes the order *open* (only when orphans are
//!   recovered): looked at once its newest known activity is older than `orphan_after`.

use std::collections::HashMap;

use oa_contract::{IndexEntry, IndexKind};

/// How far below the newest entry seen (or the checkpoint) a poll keeps listing: entries
/// stored late or with a clock slightly behind are still found. An entry more than this
/// older than the newest one when it is stored is missed by the index (a pipeline's hint
/// still finds its marker).
pub const LOOKBACK_MS: u64 = 10 * 60 * 1000;

/// What an entry asks the consumer to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A marker was (or is being) written: look at the order.
    Look(String),
}

/// One station's discovery state.
#[derive(Debug, Default)]
pub struct StationIndex {
    /// Entries looked at, by key, with their time; those below the floor are forgotten.
    seen: HashMap<String, u64>,
    newest_ms: Option<u64>,
    /// Where the first poll stops: the loaded checkpoint minus [`LOOKBACK_MS`]; `None`
    /// with no checkpoint (every entry is listed once).
    start_floor: Option<u64>,
    /// Orders announced and not yet done, with the time of their oldest such entry.
    unresolved: HashMap<String, u64>,
    /// Orders begun without a marker entry since, with their newest known activity.
    open: HashMap<String, u64>,
    /// Newest marker entry seen per order (within the window).
    marked: HashMap<String, u64>,
}

impl StationIndex {
    /// A station whose stored checkpoint is `checkpoint_ms` (`None`: none stored).
    pub fn starting_at(checkpoint_ms: Option<u64>) -> StationIndex {
        StationIndex {
            start_floor: checkpoint_ms.map(|c| c.saturating_sub(LOOKBACK_MS)),
            ..StationIndex::default()
        }
    }

    /// Entries older than this end a poll's listing; `None`: list to the end.
    pub fn floor(&self) -> Option<u64> {
        match self.newest_ms {
            Some(n) => Some(n.saturating_sub(LOOKBACK_MS)),
            None => self.start_floor,
        }
    }

    /// Takes the new entries of one poll (any order; those below the floor the poll
    /// started with are left to the caller to stop at); `track_open`: orphans are
    /// recovered, so a `begin` opens its order.
    pub fn take(
        &mut self,
        mut entries: Vec<IndexEntry>,
        keys: &[String],
        track_open: bool,
    ) -> Vec<Action> {
        let mut fresh: Vec<(IndexEntry, &String)> = vec![];
        for (e, k) in entries.drain(..).zip(keys) {
            if !self.seen.contains_key(k) {
                fresh.push((e, k));
            }
        }
        // Oldest first, a begin before a marker of the same ms: a marker then closes the
        // order its begin opened, whatever order the listing gave them in.
        fresh.sort_by_key(|(e, _)| (e.unix_ms, e.kind));
        let mut actions = vec![];
        for (e, k) in fresh {
            self.seen.insert(k.clone(), e.unix_ms);
            self.newest_ms = Some(self.newest_ms.map_or(e.unix_ms, |n| n.max(e.unix_ms)));
            match e.kind {
                IndexKind::Marker => {
                    let m = self.marked.entry(e.order.clone()).or_insert(e.unix_ms);
                    *m = (*m).max(e.unix_ms);
                    if self.open.get(&e.order).is_some_and(|&t| t <= e.unix_ms) {
                        self.open.remove(&e.order);
                    }
                    self.unresolved.entry(e.order.clone()).or_insert(e.unix_ms);
                    if !actions.contains(&Action::Look(e.order.clone())) {
                        actions.push(Action::Look(e.order));
                    }
                }
                IndexKind::Begin => {
                    let closed = self.marked.get(&e.order).is_some_and(|&m| m >= e.unix_ms);
                    if track_open && !closed {
                        let t = self.open.entry(e.order.clone()).or_insert(e.unix_ms);
                        *t = (*t).max(e.unix_ms);
                        self.unresolved.entry(e.order).or_insert(e.unix_ms);
                    }
                }
            }
        }
        self.prune();
        actions
    }

    fn prune(&mut self) {
        if let Some(floor) = self.floor() {
            self.seen.retain(|_, t| *t >= floor);
            self.marked.retain(|_, t| *t >= floor);
        }
    }

    /// The order's result is up to date: it no longer holds the checkpoint back.
    pub fn resolved(&mut self, order: &str) {
        self.unresolved.remove(order);
        self.open.remove(order);
    }

    /// Open orders whose newest known activity is `after_ms` older than `now_ms`; they
    /// leave the open set (the caller puts back those still active, [`Self::active`]).
    pub fn take_stale(&mut self, now_ms: u64, after_ms: u64) -> Vec<String> {
        let stale: Vec<String> = self
            .open
            .iter()
            .filter(|(_, t)| now_ms.saturating_sub(**t) > after_ms)
            .map(|(o, _)| o.clone())
            .collect();
        for o in &stale {
            self.open.remove(o);
        }
        stale
    }

    /// An open order is still getting frames (newest at `unix_ms`): looked at again later.
    pub fn active(&mut self, order: &str, unix_ms: u64) {
        self.open.insert(order.to_owned(), unix_ms);
    }

    /// Orders open now.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Every entry before this time has been looked at to the end; `None` before any
    /// entry is known (nothing to save).
    pub fn checkpoint(&self) -> Option<u64> {
        let oldest = self.unresolved.values().min().copied();
        match (oldest, self.newest_ms) {
            (Some(o), _) => Some(o),
            (None, Some(n)) => Some(n + 1),
            (None, None) => self.start_floor.map(|f| f + LOOKBACK_MS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(order: &str, kind: IndexKind, ms: u64) -> (IndexEntry, String) {
        let e = IndexEntry {
            station: "s1".into(),
            order: order.into(),
            kind,
            unix_ms: ms,
        };
        let k = oa_contract::index_key("", "s1", order, kind, ms).unwrap();
        (e, k)
    }

    fn take(ix: &mut StationIndex, es: &[(IndexEntry, String)]) -> Vec<Action> {
        let keys: Vec<String> = es.iter().map(|(_, k)| k.clone()).collect();
        ix.take(es.iter().map(|(e, _)| e.clone()).collect(), &keys, true)
    }

    #[test]
    fn a_marker_is_looked_at_once_and_holds_the_checkpoint_until_resolved() {
        let mut ix = StationIndex::starting_at(None);
        assert_eq!(ix.floor(), None);
        let es = [
            entry("1", IndexKind::Marker, 2_000_000),
            entry("1", IndexKind::Begin, 1_000_000),
        ];
        assert_eq!(take(&mut ix, &es), [Action::Look("1".into())]);
        assert_eq!(
            ix.open_count(),
            0,
            "its marker closed the order its begin opened"
        );
        assert!(take(&mut ix, &es).is_empty(), "seen entries are skipped");
        assert_eq!(ix.checkpoint(), Some(1_000_000));
        ix.resolved("1");
        assert_eq!(ix.checkpoint(), Some(2_000_001));
        assert_eq!(ix.floor(), Some(2_000_000 - LOOKBACK_MS));
    }

    #[test]
    fn a_begin_without_a_marker_opens_the_order_until_it_is_stale() {
        let mut ix = StationIndex::starting_at(Some(50_000_000));
        assert_eq!(ix.floor(), Some(50_000_000 - LOOKBACK_MS));
        assert!(take(&mut ix, &[entry("7", IndexKind::Begin, 60_000_000)]).is_empty());
        assert_eq!(ix.checkpoint(), Some(60_000_000));
        assert!(ix.take_stale(60_000_500, 1_000).is_empty());
        assert_eq!(ix.take_stale(60_002_000, 1_000), ["7"]);
        ix.active("7", 60_003_000);
        assert!(ix.take_stale(60_003_500, 1_000).is_empty());
        assert_eq!(
            take(&mut ix, &[entry("7", IndexKind::Marker, 60_004_000)]),
            [Action::Look("7".into())]
        );
        assert_eq!(ix.open_count(), 0);
        ix.resolved("7");
        assert_eq!(ix.checkpoint(), Some(60_004_001));
    }

    #[test]
    fn without_orphan_recovery_a_begin_holds_nothing() {
        let mut ix = StationIndex::default();
        let (e, k) = entry("7", IndexKind::Begin, 1_000);
        assert!(ix.take(vec![e], &[k], false).is_empty());
        assert_eq!(ix.open_count(), 0);
        assert_eq!(ix.checkpoint(), Some(1_001));
    }

    #[test]
    fn memory_stays_within_the_window() {
        let mut ix = StationIndex::default();
        for i in 0..10_000u64 {
            let es = [entry(&i.to_string(), IndexKind::Marker, i * 60_000)];
            take(&mut ix, &es);
            ix.resolved(&i.to_string());
        }
        assert!(ix.seen.len() <= 11, "{} entries kept", ix.seen.len());
        assert!(ix.unresolved.is_empty());
    }

    #[test]
    fn a_restart_without_entries_keeps_the_loaded_checkpoint() {
        let ix = StationIndex::starting_at(Some(5 * LOOKBACK_MS));
        assert_eq!(ix.checkpoint(), Some(5 * LOOKBACK_MS));
    }
}
