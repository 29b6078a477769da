//! Frames without an order that `minioframesink` keeps until it knows where they belong:
//! the pre-roll (frames held for nothing: the last `pre-roll` of them go to the next order
//! that is tagged) and frames held for an order (`held-for`: they go to that order if its
//! next tagged frame comes first, else they are dropped).
//!
//! The queue is always some pre-roll frames followed by some held frames: a frame held for
//! nothing means that the hold window upstream has passed, so the held frames before it are
//! dropped. Whatever is taken comes out in capture order.

use std::collections::VecDeque;

/// Most frames held for orders at once; the hold window of `ocrsegment` is far smaller,
/// this only bounds memory against a tagger that never stops holding.
pub const MAX_HELD: usize = 1_024;

#[derive(Debug)]
struct Entry<T> {
    item: T,
    held_for: Option<String>,
}

#[derive(Debug)]
pub struct HeldFrames<T> {
    pre_roll: usize,
    entries: VecDeque<Entry<T>>,
}

impl<T> HeldFrames<T> {
    pub fn new(pre_roll: usize) -> Self {
        HeldFrames {
            pre_roll,
            entries: VecDeque::new(),
        }
    }

    /// Keeps one frame without an order; returns the frames this drops, oldest first.
    pub fn push(&mut self, item: T, held_for: Option<String>) -> Vec<T> {
        let mut dropped = Vec::new();
        match held_for {
            None => {
                let first_held = self
                    .entries
                    .iter()
                    .position(|e| e.held_for.is_some())
                    .unwrap_or(self.entries.len());
                let window_passed: Vec<_> = self.entries.drain(first_held..).collect();
                self.entries.push_back(Entry {
                    item,
                    held_for: None,
                });
                let beyond = self.entries.len().saturating_sub(self.pre_roll);
                dropped.extend(self.entries.drain(..beyond));
                dropped.extend(window_passed);
            }
            Some(order) => {
                self.entries.push_back(Entry {
                    item,
                    held_for: Some(order),
                });
                let held = self.entries.iter().filter(|e| e.held_for.is_some()).count();
                if held > MAX_HELD
                    && let Some(i) = self.entries.iter().position(|e| e.held_for.is_some())
                {
                    dropped.extend(self.entries.remove(i));
                }
            }
        }
        dropped.into_iter().map(|e| e.item).collect()
    }

    /// A frame of `order` arrived: returns `(frames that belong to it, frames dropped)`, each
    /// in capture order, and empties the queue.
    pub fn take_for(&mut self, order: &str) -> (Vec<T>, Vec<T>) {
        let (mut keep, mut drop) = (Vec::new(), Vec::new());
        for e in self.entries.drain(..) {
            match e.held_for.as_deref() {
                None => keep.push(e.item),
                Some(o) if o == order => keep.push(e.item),
                Some(_) => drop.push(e.item),
            }
        }
        (keep, drop)
    }

    /// `order` completed: its held frames can no longer join it; returns them.
    pub fn drop_order(&mut self, order: &str) -> Vec<T> {
        let mut dropped = Vec::new();
        let mut kept = VecDeque::with_capacity(self.entries.len());
        for e in self.entries.drain(..) {
            if e.held_for.as_deref() == Some(order) {
                dropped.push(e.item);
            } else {
                kept.push_back(e);
            }
        }
        self.entries = kept;
        dropped
    }

    /// Everything still kept, in capture order.
    pub fn drain(&mut self) -> Vec<T> {
        self.entries.drain(..).map(|e| e.item).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(o: &str) -> Option<String> {
        Some(o.into())
    }

    #[test]
    fn held_frames_join_their_order_in_capture_order() {
        let mut h = HeldFrames::new(1);
        assert!(h.push(1, None).is_empty());
        assert!(h.push(2, s("A")).is_empty());
        assert!(h.push(3, s("A")).is_empty());
        assert_eq!(h.take_for("A"), (vec![1, 2, 3], vec![]));
        assert!(h.drain().is_empty());
    }

    #[test]
    fn another_order_drops_what_was_held_for_the_previous_one() {
        let mut h = HeldFrames::new(1);
        h.push(1, s("A"));
        h.push(2, s("A"));
        // The next order's unconfirmed first frames are held for it.
        h.push(3, s("B"));
        assert_eq!(h.take_for("B"), (vec![3], vec![1, 2]));
    }

    #[test]
    fn a_frame_held_for_nothing_ends_the_window() {
        let mut h = HeldFrames::new(2);
        h.push(1, None);
        h.push(2, s("A"));
        h.push(3, s("A"));
        assert_eq!(h.push(4, None), vec![2, 3]);
        assert_eq!(h.push(5, None), vec![1], "beyond the pre-roll");
        assert_eq!(h.take_for("A"), (vec![4, 5], vec![]));
    }

    #[test]
    fn a_completed_order_drops_its_held_frames_only() {
        let mut h = HeldFrames::new(1);
        h.push(1, None);
        h.push(2, s("A"));
        h.push(3, s("B"));
        assert_eq!(h.drop_order("A"), vec![2]);
        assert_eq!(h.take_for("B"), (vec![1, 3], vec![]));
    }

    #[test]
    fn pre_roll_zero_keeps_no_unheld_frame() {
        let mut h = HeldFrames::new(0);
        assert_eq!(h.push(1, None), vec![1]);
        h.push(2, s("A"));
        assert_eq!(h.take_for("A"), (vec![2], vec![]));
    }

    #[test]
    fn held_frames_are_bounded() {
        let mut h = HeldFrames::new(0);
        for i in 0..MAX_HELD {
            assert!(h.push(i, s("A")).is_empty());
        }
        assert_eq!(h.push(MAX_HELD, s("A")), vec![0]);
        let (keep, drop) = h.take_for("A");
        assert_eq!((keep.len(), keep[0], drop.len()), (MAX_HELD, 1, 0));
    }
}
