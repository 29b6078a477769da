//! The frames of recently completed orders, so that an order ID that comes back soon (the
//! usual case) continues its order without a request to the store.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use oa_contract::FrameEntry;

/// Completed orders whose frames are kept in memory.
pub const REMEMBERED_ORDERS: usize = 256;

/// The frames listed by the markers of the last `capacity` orders completed.
#[derive(Debug)]
pub struct CompletedOrders<K> {
    capacity: usize,
    frames: HashMap<K, Vec<FrameEntry>>,
    /// Oldest first.
    age: VecDeque<K>,
}

impl<K: Clone + Eq + Hash> Default for CompletedOrders<K> {
    fn default() -> Self {
        CompletedOrders::with_capacity(REMEMBERED_ORDERS)
    }
}

impl<K: Clone + Eq + Hash> CompletedOrders<K> {
    pub fn with_capacity(capacity: usize) -> Self {
        CompletedOrders {
            capacity,
            frames: HashMap::new(),
            age: VecDeque::new(),
        }
    }

    pub fn get(&self, id: &K) -> Option<&Vec<FrameEntry>> {
        self.frames.get(id)
    }

    /// Remembers (or replaces) the frames of `id`, forgetting the oldest order past the
    /// capacity.
    pub fn insert(&mut self, id: K, frames: Vec<FrameEntry>) {
        if self.frames.insert(id.clone(), frames).is_some() {
            self.age.retain(|a| *a != id);
        }
        self.age.push_back(id);
        while self.age.len() > self.capacity {
            if let Some(old) = self.age.pop_front() {
                self.frames.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: u32) -> Vec<FrameEntry> {
        (0..n)
            .map(|seq| FrameEntry {
                key: format!("k{seq}"),
                seq,
                unix_ms: u64::from(seq),
                bytes: 1,
            })
            .collect()
    }

    #[test]
    fn forgets_the_oldest_past_capacity() {
        let mut c = CompletedOrders::with_capacity(2);
        c.insert("a", frames(1));
        c.insert("b", frames(2));
        c.insert("c", frames(3));
        assert!(c.get(&"a").is_none());
        assert_eq!(c.get(&"b").map(Vec::len), Some(2));
        assert_eq!(c.get(&"c").map(Vec::len), Some(3));
    }

    #[test]
    fn replacing_an_order_makes_it_the_newest() {
        let mut c = CompletedOrders::with_capacity(2);
        c.insert("a", frames(1));
        c.insert("b", frames(1));
        c.insert("a", frames(4));
        c.insert("c", frames(1));
        assert_eq!(c.get(&"a").map(Vec::len), Some(4), "a was refreshed");
        assert!(c.get(&"b").is_none());
        assert_eq!(
            CompletedOrders::<String>::default().capacity,
            REMEMBERED_ORDERS
        );
    }
}
