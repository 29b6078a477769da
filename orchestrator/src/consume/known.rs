//! The results this process keeps in memory: the newest [`PER_STATION`] of each station,
//! whatever it ran for. An older result is still in the store: `GET
//! /api/orders/{station}/{order}` reads it from there ([`super::Consumer::result_or_stored`]).

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::result::OrderResult;

/// Results kept in memory per station (about 1 KB each).
pub const PER_STATION: usize = 5_000;

type OrderKey = (String, String);

/// Results by order, and per station the order they were stored in (oldest first).
#[derive(Debug)]
pub struct Known {
    limit: usize,
    seq: u64,
    results: BTreeMap<OrderKey, (u64, OrderResult)>,
    /// `(seq, order)` per station; an entry whose seq is no longer its order's is stale
    /// (the order was stored again since) and skipped when it comes out.
    stored: HashMap<String, VecDeque<(u64, String)>>,
}

impl Default for Known {
    fn default() -> Self {
        Known::with_limit(PER_STATION)
    }
}

impl Known {
    pub fn with_limit(limit: usize) -> Known {
        Known {
            limit: limit.max(1),
            seq: 0,
            results: BTreeMap::new(),
            stored: HashMap::new(),
        }
    }

    /// Keeps `r` as the result of `id`, forgetting the station's oldest beyond the limit.
    pub fn insert(&mut self, id: OrderKey, r: OrderResult) {
        self.seq += 1;
        let seq = self.seq;
        let queue = self.stored.entry(id.0.clone()).or_default();
        queue.push_back((seq, id.1.clone()));
        while queue.len() > self.limit {
            let Some((old_seq, order)) = queue.pop_front() else {
                break;
            };
            let key = (id.0.clone(), order);
            if self.results.get(&key).is_some_and(|(s, _)| *s == old_seq) {
                self.results.remove(&key);
            }
        }
        self.results.insert(id, (seq, r));
    }

    /// Keeps `r`, a result stored before any the station holds (read back after a start),
    /// as the station's oldest, and only while the station has room: it never evicts a
    /// newer result nor replaces one already known. Whether it was kept.
    pub fn insert_older(&mut self, id: OrderKey, r: OrderResult) -> bool {
        if self.results.contains_key(&id) {
            return false;
        }
        if self.is_full(&id.0) {
            return false;
        }
        let queue = self.stored.entry(id.0.clone()).or_default();
        // seq 0 is older than every insert; when it comes out it is this entry's.
        queue.push_front((0, id.1.clone()));
        self.results.insert(id, (0, r));
        true
    }

    /// Whether the station holds as many results as it may. Its stale entries (orders
    /// stored again since) are dropped first, so that they take no room.
    pub fn is_full(&mut self, station: &str) -> bool {
        let Some(queue) = self.stored.get_mut(station) else {
            return false;
        };
        if queue.len() < self.limit {
            return false;
        }
        let results = &self.results;
        queue.retain(|(seq, order)| {
            results
                .get(&(station.to_owned(), order.clone()))
                .is_some_and(|(s, _)| s == seq)
        });
        queue.len() >= self.limit
    }

    pub fn get(&self, id: &OrderKey) -> Option<&OrderResult> {
        self.results.get(id).map(|(_, r)| r)
    }

    pub fn values(&self) -> impl Iterator<Item = &OrderResult> {
        self.results.values().map(|(_, r)| r)
    }

    pub fn len(&self) -> usize {
        self.results.len()
    }

    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::OrderStatus;

    fn r(station: &str, order: &str) -> OrderResult {
        OrderResult::example(station, order, OrderStatus::Validated, None)
    }

    fn id(station: &str, order: &str) -> OrderKey {
        (station.into(), order.into())
    }

    #[test]
    fn each_station_keeps_its_newest_results() {
        let mut k = Known::with_limit(3);
        for n in 1..=5 {
            k.insert(id("a", &n.to_string()), r("a", &n.to_string()));
        }
        k.insert(id("b", "1"), r("b", "1"));
        let orders: Vec<String> = k
            .values()
            .map(|r| format!("{}/{}", r.station_id, r.order_id))
            .collect();
        assert_eq!(orders, ["a/3", "a/4", "a/5", "b/1"]);
        assert!(k.get(&id("a", "2")).is_none());
        assert_eq!(k.len(), 4);
    }

    #[test]
    fn older_results_fill_only_the_room_left_and_go_first() {
        let mut k = Known::with_limit(3);
        k.insert(id("a", "9"), r("a", "9"));
        // Stored twice (awaiting, then final): the first entry is stale.
        k.insert(id("a", "9"), r("a", "9"));
        assert!(k.insert_older(id("a", "8"), r("a", "8")));
        assert!(!k.insert_older(id("a", "9"), r("a", "9")), "known already");
        assert!(
            k.insert_older(id("a", "7"), r("a", "7")),
            "the stale entry of 9 took the room"
        );
        assert!(k.is_full("a"));
        assert!(!k.insert_older(id("a", "6"), r("a", "6")), "no room");
        // A new result pushes out the oldest read back (7), not a newer one.
        k.insert(id("a", "10"), r("a", "10"));
        assert!(k.get(&id("a", "7")).is_none());
        for o in ["8", "9", "10"] {
            assert!(k.get(&id("a", o)).is_some(), "{o}");
        }
        assert_eq!(k.len(), 3);
    }

    #[test]
    fn storing_an_order_again_makes_it_new_and_counts_once() {
        let mut k = Known::with_limit(2);
        k.insert(id("a", "1"), r("a", "1"));
        k.insert(id("a", "2"), r("a", "2"));
        k.insert(id("a", "1"), r("a", "1"));
        k.insert(id("a", "3"), r("a", "3"));
        // 2 was the oldest still stored: it goes; 1, stored again after it, stays.
        assert!(k.get(&id("a", "2")).is_none());
        assert!(k.get(&id("a", "1")).is_some() && k.get(&id("a", "3")).is_some());
        // However often one order is stored, the station never holds more than the limit.
        for _ in 0..10 {
            k.insert(id("a", "3"), r("a", "3"));
        }
        assert!(k.len() <= 2);
        assert!(k.get(&id("a", "3")).is_some());
    }
}
