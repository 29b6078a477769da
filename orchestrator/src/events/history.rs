//! The last events, numbered, for `GET /api/events` clients that resume.

use std::collections::VecDeque;
use std::sync::Arc;

use oa_contract::events::Event;

/// One event as published: its number in this process and its JSON.
#[derive(Debug, Clone)]
pub struct Entry {
    /// 1 for the first event of this process.
    pub seq: u64,
    pub event: Arc<Event>,
    pub json: Arc<str>,
}

/// At most `cap` events, oldest first.
#[derive(Debug)]
pub struct History {
    cap: usize,
    last_seq: u64,
    entries: VecDeque<Entry>,
}

impl History {
    pub fn new(cap: usize) -> History {
        History {
            cap: cap.max(1),
            last_seq: 0,
            entries: VecDeque::new(),
        }
    }

    /// Appends an event, forgetting the oldest beyond the capacity; returns its number.
    pub fn push(&mut self, event: Arc<Event>, json: Arc<str>) -> u64 {
        self.last_seq += 1;
        if self.entries.len() == self.cap {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry {
            seq: self.last_seq,
            event,
            json,
        });
        self.last_seq
    }

    /// The number of the newest event (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The number of the retained event with this ID (the newest, should it recur).
    pub fn seq_of(&self, id: &str) -> Option<u64> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.event.id == id)
            .map(|e| e.seq)
    }

    /// The first retained event after number `after` that `keep` accepts, or `Err` with the
    /// newest number looked at when none does.
    pub fn next_after(&self, after: u64, keep: impl Fn(&Event) -> bool) -> Result<Entry, u64> {
        let start = self.entries.partition_point(|e| e.seq <= after);
        self.entries
            .range(start..)
            .find(|e| keep(&e.event))
            .cloned()
            .ok_or(self.last_seq.max(after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, kind: &str) -> Arc<Event> {
        Arc::new(Event {
            id: id.into(),
            kind: kind.into(),
            time_unix_ms: 0,
            station_id: "s".into(),
            order_id: None,
            data: serde_json::Value::Null,
        })
    }

    #[test]
    fn resumes_after_an_id_and_forgets_the_oldest() {
        let mut h = History::new(3);
        for id in ["a", "b", "c", "d"] {
            h.push(event(id, "t"), Arc::from(id));
        }
        assert_eq!(h.last_seq(), 4);
        assert_eq!(h.seq_of("a"), None, "pushed out");
        assert_eq!(h.seq_of("c"), Some(3));
        assert_eq!(h.next_after(3, |_| true).unwrap().event.id, "d");
        assert_eq!(h.next_after(4, |_| true).unwrap_err(), 4);
        // From before the oldest retained: the oldest retained.
        assert_eq!(h.next_after(0, |_| true).unwrap().event.id, "b");
    }

    #[test]
    fn filtered_events_are_skipped_and_remembered_as_seen() {
        let mut h = History::new(10);
        h.push(event("a", "x"), Arc::from(""));
        h.push(event("b", "y"), Arc::from(""));
        h.push(event("c", "x"), Arc::from(""));
        let only_y = |e: &Event| e.kind == "y";
        let b = h.next_after(0, only_y).unwrap();
        assert_eq!((b.seq, b.event.id.as_str()), (2, "b"));
        assert_eq!(h.next_after(b.seq, only_y).unwrap_err(), 3);
    }
}
