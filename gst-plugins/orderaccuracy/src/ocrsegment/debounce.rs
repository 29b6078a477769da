//! Which order is current, from the reads of the OCR'd frames: a read ID becomes current
//! after `confirm_frames` consecutive reads, and the current order is released after
//! `release_frames` consecutive OCR'd frames that did not read it.
//!
//! Apart from that, every frame is tagged ([`Debouncer::frame_tag`]): a frame that reads the
//! current order belongs to it; a frame that reads another ID is held for that ID (it
//! belongs to it once it is confirmed); a frame that reads nothing is held for the order
//! last read, up to `hold_frames` frames after that order's last read, so that a hand over
//! the slip does not cost the order those frames. An order released meanwhile and read
//! again within that window is current again at once, without `confirm_frames` reads.

use oa_contract::messages;

/// An order ID read on one OCR'd frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub id: String,
    pub confidence: f32,
}

/// The current order changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `None` once the current order is released.
    pub order_id: Option<String>,
    pub previous: Option<String>,
    /// Mean confidence of the reads that confirmed `order_id` (0 on release).
    pub confidence: f32,
}

impl Change {
    /// The bus message that announces it.
    pub fn message_name(&self) -> &'static str {
        match (&self.order_id, &self.previous) {
            (None, _) => messages::ORDER_RELEASED,
            (Some(_), None) => messages::ORDER_STARTED,
            (Some(_), Some(_)) => messages::ORDER_CHANGED,
        }
    }
}

/// What one frame is tagged with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameTag {
    /// The order the frame belongs to.
    pub order_id: Option<String>,
    /// Without `order_id`: the order the frame belongs to if that order's ID is read (and
    /// confirmed) again before anything else happens.
    pub held_for: Option<String>,
}

/// An ID read on consecutive OCR'd frames but not (yet) current.
#[derive(Debug)]
struct Candidate {
    id: String,
    count: u32,
    confidence_sum: f32,
}

#[derive(Debug)]
pub struct Debouncer {
    confirm_frames: u32,
    release_frames: u32,
    /// What the last OCR'd frame read; frames that are not OCR'd inherit it.
    last_read: Option<Read>,
    candidate: Option<Candidate>,
    current: Option<String>,
    /// Consecutive OCR'd frames that did not read the current order.
    misses: u32,
    hold_frames: u32,
    /// The order last read on a tagged frame, and the frames since that did not read it.
    hold: Option<(String, u32)>,
}

impl Debouncer {
    /// Holds nothing after the last tagged frame, as the tests of the other rules want.
    #[cfg(test)]
    pub fn new(confirm_frames: u32, release_frames: u32) -> Self {
        Self::with_hold(confirm_frames, release_frames, 0)
    }

    /// `hold_frames`: how many frames in a row without the last tagged order's ID are held
    /// for it.
    pub fn with_hold(confirm_frames: u32, release_frames: u32, hold_frames: u32) -> Self {
        Debouncer {
            confirm_frames,
            release_frames,
            last_read: None,
            candidate: None,
            current: None,
            misses: 0,
            hold_frames,
            hold: None,
        }
    }

    /// Feeds one OCR'd frame's read; returns the change it causes.
    pub fn update(&mut self, read: Option<Read>) -> Option<Change> {
        let mut change = None;
        match &read {
            Some(r) if Some(&r.id) == self.current.as_ref() => {
                self.candidate = None;
                self.misses = 0;
            }
            Some(r) => {
                // The order just released, read again within its hold window: the hand has
                // left its slip. It resumes at once, so that its held frames join it even
                // when the slip is in view for only one more frame.
                let resumes =
                    self.current.is_none() && self.hold.as_ref().is_some_and(|(id, _)| id == &r.id);
                let c = match self.candidate.take() {
                    Some(mut c) if c.id == r.id => {
                        c.count += 1;
                        c.confidence_sum += r.confidence;
                        c
                    }
                    _ => Candidate {
                        id: r.id.clone(),
                        count: 1,
                        confidence_sum: r.confidence,
                    },
                };
                if c.count >= self.confirm_frames || resumes {
                    let previous = self.current.replace(c.id.clone());
                    self.misses = 0;
                    change = Some(Change {
                        order_id: Some(c.id),
                        previous,
                        confidence: c.confidence_sum / c.count as f32,
                    });
                } else {
                    self.candidate = Some(c);
                }
            }
            None => self.candidate = None,
        }
        if change.is_none()
            && self.current.is_some()
            && read.as_ref().map(|r| &r.id) != self.current.as_ref()
        {
            self.misses += 1;
            if self.misses >= self.release_frames {
                self.misses = 0;
                change = Some(Change {
                    order_id: None,
                    previous: self.current.take(),
                    confidence: 0.0,
                });
            }
        }
        self.last_read = read;
        change
    }

    /// Whether no confirmation or release is pending.
    pub fn settled(&self) -> bool {
        self.candidate.is_none() && self.misses == 0
    }

    /// The order the latest frame belongs to: the current one, if its read is it.
    pub fn tag_order(&self) -> Option<String> {
        match (&self.last_read, &self.current) {
            (Some(r), Some(c)) if &r.id == c => Some(c.clone()),
            _ => None,
        }
    }

    /// Tags the latest frame (OCR'd or not, after [`Self::update`] for an OCR'd one) and
    /// counts it against the hold window; call once per frame.
    pub fn frame_tag(&mut self) -> FrameTag {
        let read = self.last_read.as_ref().map(|r| r.id.clone());
        if let Some(order) = self.tag_order() {
            self.hold = Some((order.clone(), 0));
            return FrameTag {
                order_id: Some(order),
                held_for: None,
            };
        }
        // Reading the held order again (not yet re-confirmed) restarts its window; another
        // ID's frames count against it, without being held for it.
        match (&mut self.hold, &read) {
            (Some((id, n)), Some(r)) if id == r => *n = 0,
            (Some((_, n)), _) => *n = n.saturating_add(1),
            (None, _) => {}
        }
        if self
            .hold
            .as_ref()
            .is_some_and(|(_, n)| *n > self.hold_frames)
        {
            self.hold = None;
        }
        let held_for = match read {
            Some(id) => Some(id),
            None => self.hold.as_ref().map(|(id, _)| id.clone()),
        };
        FrameTag {
            order_id: None,
            held_for,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(id: &str, confidence: f32) -> Option<Read> {
        Some(Read {
            id: id.into(),
            confidence,
        })
    }

    fn some(s: &str) -> Option<String> {
        Some(s.into())
    }

    #[test]
    fn confirms_after_consecutive_reads() {
        let mut d = Debouncer::new(2, 3);
        assert_eq!(d.update(read("384", 0.8)), None);
        assert!(!d.settled());
        // Not current yet: the frame is not tagged.
        assert_eq!(d.tag_order(), None);
        let c = d.update(read("384", 0.6)).expect("confirmed");
        assert_eq!(
            (c.order_id.as_deref(), c.previous.as_deref()),
            (Some("384"), None)
        );
        assert!((c.confidence - 0.7).abs() < 1e-6);
        assert_eq!(c.message_name(), messages::ORDER_STARTED);
        assert_eq!(d.tag_order(), some("384"));
        assert!(d.settled());
    }

    #[test]
    fn an_interrupted_run_starts_over() {
        let mut d = Debouncer::new(3, 3);
        assert_eq!(d.update(read("1", 0.9)), None);
        assert_eq!(d.update(read("1", 0.9)), None);
        assert_eq!(d.update(None), None);
        assert_eq!(d.update(read("1", 0.9)), None);
        assert_eq!(d.update(read("2", 0.9)), None);
        assert_eq!(d.update(read("1", 0.9)), None);
        assert_eq!(d.update(read("1", 0.9)), None);
        assert!(d.update(read("1", 0.9)).is_some());
    }

    #[test]
    fn confirm_frames_one_is_immediate() {
        let mut d = Debouncer::new(1, 1);
        let c = d.update(read("7", 0.9)).unwrap();
        assert_eq!(c.order_id, some("7"));
        let c = d.update(None).unwrap();
        assert_eq!((c.order_id, c.previous), (None, some("7")));
    }

    #[test]
    fn releases_after_consecutive_misses() {
        let mut d = Debouncer::new(1, 3);
        d.update(read("384", 0.9)).unwrap();
        assert_eq!(d.update(None), None);
        assert_eq!(
            d.tag_order(),
            None,
            "a frame without the read is not tagged"
        );
        assert!(!d.settled(), "a release is pending");
        assert_eq!(d.update(None), None);
        // A read of the current order resets the count.
        assert_eq!(d.update(read("384", 0.9)), None);
        assert_eq!(d.tag_order(), some("384"));
        assert_eq!(d.update(None), None);
        assert_eq!(d.update(None), None);
        let c = d.update(None).expect("released");
        assert_eq!((c.order_id, c.previous.as_deref()), (None, Some("384")));
        assert_eq!(c.confidence, 0.0);
        assert_eq!(
            Change {
                order_id: None,
                previous: some("384"),
                confidence: 0.0
            }
            .message_name(),
            messages::ORDER_RELEASED
        );
        assert!(d.settled());
        assert_eq!(d.update(None), None, "nothing left to release");
    }

    #[test]
    fn a_new_order_replaces_the_current_one() {
        let mut d = Debouncer::new(2, 5);
        d.update(read("384", 0.9));
        d.update(read("384", 0.9)).unwrap();
        // The new ID counts as a miss of the current order while it is a candidate.
        assert_eq!(d.update(read("651", 0.9)), None);
        assert_eq!(d.tag_order(), None);
        let c = d.update(read("651", 0.9)).expect("changed");
        assert_eq!((c.order_id, c.previous), (some("651"), some("384")));
        assert_eq!(
            Change {
                order_id: some("651"),
                previous: some("384"),
                confidence: 0.9
            }
            .message_name(),
            messages::ORDER_CHANGED
        );
        assert_eq!(d.tag_order(), some("651"));
        assert!(d.settled(), "the miss count restarts with the new order");
    }

    #[test]
    fn misses_release_before_a_candidate_confirms() {
        // Release after 2 misses, confirm after 3 reads: a different ID shown for 2 frames
        // releases the current order first, then becomes current itself.
        let mut d = Debouncer::new(3, 2);
        for _ in 0..3 {
            d.update(read("1", 0.9));
        }
        assert_eq!(d.tag_order(), some("1"));
        assert_eq!(d.update(read("2", 0.9)), None);
        let c = d.update(read("2", 0.9)).expect("released");
        assert_eq!((c.order_id, c.previous), (None, some("1")));
        let c = d.update(read("2", 0.9)).expect("started");
        assert_eq!((c.order_id, c.previous), (some("2"), None));
    }

    fn tag(order: Option<&str>, held_for: Option<&str>) -> FrameTag {
        FrameTag {
            order_id: order.map(Into::into),
            held_for: held_for.map(Into::into),
        }
    }

    #[test]
    fn an_occlusion_is_held_for_the_order_read_before() {
        let mut d = Debouncer::with_hold(2, 3, 5);
        d.update(read("384", 0.9));
        assert_eq!(d.frame_tag(), tag(None, Some("384")), "not yet confirmed");
        d.update(read("384", 0.9)).unwrap();
        assert_eq!(d.frame_tag(), tag(Some("384"), None));
        // A hand over the slip for 3 frames releases the order...
        for _ in 0..2 {
            assert_eq!(d.update(None), None);
            assert_eq!(d.frame_tag(), tag(None, Some("384")));
        }
        assert!(d.update(None).is_some(), "released");
        assert_eq!(d.frame_tag(), tag(None, Some("384")));
        // ...and its ID read again within the window resumes it without confirmation.
        let c = d.update(read("384", 0.7)).expect("started again");
        assert_eq!((c.order_id, c.previous), (some("384"), None));
        assert!((c.confidence - 0.7).abs() < 1e-6);
        assert_eq!(d.frame_tag(), tag(Some("384"), None));
    }

    #[test]
    fn the_hold_ends_after_hold_frames() {
        let mut d = Debouncer::with_hold(1, 2, 3);
        d.update(read("7", 0.9)).unwrap();
        assert_eq!(d.frame_tag(), tag(Some("7"), None));
        for _ in 0..3 {
            d.update(None);
            assert_eq!(d.frame_tag(), tag(None, Some("7")));
        }
        d.update(None);
        assert_eq!(d.frame_tag(), FrameTag::default(), "the window has passed");
        // Frames that are not OCR'd count too, and nothing is held any more.
        assert_eq!(d.frame_tag(), FrameTag::default());
        d.update(read("7", 0.9)).unwrap();
        assert_eq!(d.frame_tag(), tag(Some("7"), None));
        // Past the window, a released order needs its confirmation again.
        let mut d = Debouncer::with_hold(2, 1, 1);
        d.update(read("7", 0.9));
        d.update(read("7", 0.9)).unwrap();
        d.frame_tag();
        d.update(None).expect("released");
        assert_eq!(d.frame_tag(), tag(None, Some("7")));
        d.update(None);
        assert_eq!(d.frame_tag(), FrameTag::default());
        assert_eq!(d.update(read("7", 0.9)), None, "a candidate again");
        assert_eq!(d.frame_tag(), tag(None, Some("7")));
    }

    #[test]
    fn another_id_is_held_for_itself_and_counts_against_the_hold() {
        let mut d = Debouncer::with_hold(3, 5, 2);
        d.update(read("1", 0.9));
        d.update(read("1", 0.9));
        d.update(read("1", 0.9)).unwrap();
        assert_eq!(d.frame_tag(), tag(Some("1"), None));
        d.update(read("2", 0.9));
        assert_eq!(d.frame_tag(), tag(None, Some("2")));
        d.update(None);
        assert_eq!(d.frame_tag(), tag(None, Some("1")));
        d.update(None);
        assert_eq!(d.frame_tag(), FrameTag::default(), "3 frames without 1");
    }

    #[test]
    fn another_order_read_after_a_release_still_needs_confirmation() {
        let mut d = Debouncer::with_hold(2, 1, 5);
        d.update(read("1", 0.9));
        d.update(read("1", 0.9)).unwrap();
        d.frame_tag();
        d.update(None).expect("released");
        d.frame_tag();
        assert_eq!(d.update(read("2", 0.9)), None);
        assert_eq!(d.frame_tag(), tag(None, Some("2")));
        let c = d.update(read("2", 0.9)).expect("started");
        assert_eq!((c.order_id, c.previous), (some("2"), None));
    }

    #[test]
    fn hold_zero_holds_only_candidates() {
        let mut d = Debouncer::with_hold(2, 3, 0);
        d.update(read("5", 0.9));
        assert_eq!(d.frame_tag(), tag(None, Some("5")));
        d.update(read("5", 0.9)).unwrap();
        assert_eq!(d.frame_tag(), tag(Some("5"), None));
        d.update(None);
        assert_eq!(d.frame_tag(), FrameTag::default());
    }
}
