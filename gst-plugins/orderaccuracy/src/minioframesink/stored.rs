//! The frames an order already has in the store: from a listing of the order's prefix
//! (the pipeline was killed mid-order, before its marker), and merged with those of a marker
//! that exists but may be older than some of them. Pure, so the sink only does the I/O.

use std::collections::HashSet;

use oa_contract::{FrameEntry, ParsedKey, parse_key};

/// The frames of order `order` of `station` among `listed` (`(key, size)` pairs of a
/// listing under the order's prefix, in any order, from any number of pages), sorted by
/// `(seq, unix_ms)`. The marker, keys that are not frames (foreign objects, keys outside
/// `prefix`) and frames of another order are ignored. A size the listing did not give (or
/// a negative one) is 0.
pub(super) fn listed_frames(
    prefix: &str,
    station: &str,
    order: &str,
    listed: impl IntoIterator<Item = (String, Option<i64>)>,
) -> Vec<FrameEntry> {
    let mut frames: Vec<FrameEntry> = listed
        .into_iter()
        .filter_map(|(key, size)| match parse_key(prefix, &key) {
            Ok(ParsedKey::Frame {
                station: s,
                order: o,
                unix_ms,
                seq,
            }) if s == station && o == order => Some(FrameEntry {
                key,
                seq,
                unix_ms,
                bytes: size.and_then(|b| u64::try_from(b).ok()).unwrap_or(0),
            }),
            _ => None,
        })
        .collect();
    frames.sort_by(|a, b| (a.seq, a.unix_ms, &a.key).cmp(&(b.seq, b.unix_ms, &b.key)));
    frames.dedup_by(|a, b| a.key == b.key);
    frames
}

/// The frames `marker` lists, with every frame of `listed` (as [`listed_frames`] gives
/// them) that it does not list by key: frames stored after the marker was written (e.g. a
/// `recovered` marker, then a pipeline that continued the order and was killed before its
/// own marker). Sorted by `(seq, unix_ms)`; a key is kept once, as the marker has it.
pub(super) fn with_unlisted(marker: Vec<FrameEntry>, listed: Vec<FrameEntry>) -> Vec<FrameEntry> {
    let known: HashSet<&str> = marker.iter().map(|f| f.key.as_str()).collect();
    let unlisted: Vec<FrameEntry> = listed
        .into_iter()
        .filter(|f| !known.contains(f.key.as_str()))
        .collect();
    let mut frames = marker;
    frames.extend(unlisted);
    frames.sort_by(|a, b| (a.seq, a.unix_ms, &a.key).cmp(&(b.seq, b.unix_ms, &b.key)));
    frames.dedup_by(|a, b| a.key == b.key);
    frames
}

/// Whether the newest of `frames` is at least `reuse_after_ms` older than `now_ms`: the
/// order they belong to is over, and its number coming back starts another order.
/// `reuse_after_ms` 0 never says so; neither do no frames (nothing tells their age).
pub(super) fn is_past(frames: &[FrameEntry], now_ms: u64, reuse_after_ms: u64) -> bool {
    reuse_after_ms > 0
        && frames
            .iter()
            .map(|f| f.unix_ms)
            .max()
            .is_some_and(|newest| now_ms.saturating_sub(newest) >= reuse_after_ms)
}

/// The `seq` of the next frame stored after `frames`: one past the highest, 0 for none.
pub(super) fn next_seq(frames: &[FrameEntry]) -> u32 {
    frames
        .iter()
        .map(|f| f.seq.saturating_add(1))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oa_contract::{frame_key, marker_key};

    fn listed(keys: &[(String, i64)]) -> Vec<(String, Option<i64>)> {
        keys.iter().map(|(k, s)| (k.clone(), Some(*s))).collect()
    }

    /// Frame `(unix_ms, seq)` of order A of station s1 under `prefix`, of `bytes` bytes.
    fn entry_in(prefix: &str, unix_ms: u64, seq: u32, bytes: u64) -> FrameEntry {
        FrameEntry {
            key: frame_key(prefix, "s1", "A", unix_ms, seq).unwrap(),
            seq,
            unix_ms,
            bytes,
        }
    }

    /// As [`entry_in`], with no prefix.
    fn entry(unix_ms: u64, seq: u32, bytes: u64) -> FrameEntry {
        entry_in("", unix_ms, seq, bytes)
    }

    #[test]
    fn frames_come_sorted_by_seq_with_their_listed_size() {
        let k = |ms, seq| frame_key("p/", "s1", "A", ms, seq).unwrap();
        let frames = listed_frames(
            "p/",
            "s1",
            "A",
            listed(&[
                (k(30, 2), 300),
                (marker_key("p/", "s1", "A").unwrap(), 999),
                (k(10, 0), 100),
                (k(20, 1), 200),
            ]),
        );
        assert_eq!(
            frames,
            [
                entry_in("p/", 10, 0, 100),
                entry_in("p/", 20, 1, 200),
                entry_in("p/", 30, 2, 300),
            ]
        );
        assert_eq!(next_seq(&frames), 3);
    }

    #[test]
    fn seq_orders_before_time_and_equal_seqs_keep_both() {
        // Two runs of an older sink may both have stored a seq 0.
        let k = |ms, seq| frame_key("", "s1", "A", ms, seq).unwrap();
        let frames = listed_frames(
            "",
            "s1",
            "A",
            listed(&[(k(5, 1), 1), (k(9, 0), 1), (k(3, 0), 1)]),
        );
        let got: Vec<(u32, u64)> = frames.iter().map(|f| (f.seq, f.unix_ms)).collect();
        assert_eq!(got, [(0, 3), (0, 9), (1, 5)]);
        assert_eq!(next_seq(&frames), 2);
    }

    #[test]
    fn foreign_keys_markers_and_other_orders_are_ignored() {
        let frames = listed_frames(
            "p/",
            "s1",
            "A",
            vec![
                ("p/s1/A/__EOS__".to_owned(), Some(10)),
                ("p/s1/A/notes.txt".to_owned(), Some(10)),
                ("p/s1/A/frame_1_2.jpg".to_owned(), Some(10)),
                ("p/s1/A/sub/frame_1_000002.jpg".to_owned(), Some(10)),
                ("q/s1/A/frame_1_000002.jpg".to_owned(), Some(10)),
                ("p/s1/B/frame_1_000002.jpg".to_owned(), Some(10)),
                ("p/s2/A/frame_1_000002.jpg".to_owned(), Some(10)),
            ],
        );
        assert!(frames.is_empty(), "{frames:?}");
        assert_eq!(next_seq(&frames), 0);
    }

    #[test]
    fn a_missing_size_is_zero_and_a_key_listed_twice_counts_once() {
        let k = frame_key("", "s1", "A", 7, 4).unwrap();
        let frames = listed_frames(
            "",
            "s1",
            "A",
            vec![(k.clone(), None), (k.clone(), None), (k.clone(), Some(-1))],
        );
        assert_eq!(frames, [entry(7, 4, 0)]);
        assert_eq!(next_seq(&frames), 5);
    }

    #[test]
    fn frames_stored_after_the_marker_join_it_and_seq_continues_after_them() {
        // A `recovered` marker listed 0..=2; a pipeline then stored 3 and 4 and was killed.
        let marker: Vec<FrameEntry> = (0..3).map(|i| entry(10 + i, i as u32, 5)).collect();
        let listed = listed_frames(
            "",
            "s1",
            "A",
            (0..5)
                .rev()
                .map(|i| (entry(10 + i, i as u32, 0).key, Some(7)))
                .chain([(marker_key("", "s1", "A").unwrap(), Some(99))]),
        );
        let frames = with_unlisted(marker, listed);
        let got: Vec<(u32, u64, u64)> =
            frames.iter().map(|f| (f.seq, f.unix_ms, f.bytes)).collect();
        // The marker's own entries (its sizes) for the keys it lists, the listing's for
        // the rest.
        assert_eq!(
            got,
            [(0, 10, 5), (1, 11, 5), (2, 12, 5), (3, 13, 7), (4, 14, 7)]
        );
        assert_eq!(next_seq(&frames), 5);
    }

    #[test]
    fn a_marker_listing_every_stored_frame_is_kept_as_it_is() {
        let marker = vec![entry(10, 0, 1), entry(11, 1, 1)];
        let listed = vec![entry(11, 1, 9), entry(10, 0, 9)];
        assert_eq!(with_unlisted(marker.clone(), listed), marker);
        assert_eq!(with_unlisted(marker.clone(), Vec::new()), marker);
        assert!(with_unlisted(Vec::new(), Vec::new()).is_empty());
    }

    #[test]
    fn unlisted_frames_are_sorted_in_by_seq_then_time() {
        // The marker's frames need not come first: a frame with a lower seq (stored by an
        // older sink, or one the marker missed) sorts in before them; equal seqs by time.
        let marker = vec![entry(20, 1, 1), entry(30, 2, 1)];
        let listed = vec![
            entry(40, 3, 1),
            entry(25, 1, 1),
            entry(5, 0, 1),
            entry(30, 2, 1),
        ];
        let frames = with_unlisted(marker, listed);
        let got: Vec<(u32, u64)> = frames.iter().map(|f| (f.seq, f.unix_ms)).collect();
        assert_eq!(got, [(0, 5), (1, 20), (1, 25), (2, 30), (3, 40)]);
        assert_eq!(next_seq(&frames), 4);
    }

    #[test]
    fn an_order_is_past_once_its_newest_frame_is_old_enough() {
        let frames = |ms: &[u64]| -> Vec<FrameEntry> {
            ms.iter()
                .enumerate()
                .map(|(i, &ms)| FrameEntry {
                    key: format!("k{i}"),
                    seq: i as u32,
                    unix_ms: ms,
                    bytes: 1,
                })
                .collect()
        };
        let hour = 3_600_000;
        assert!(is_past(&frames(&[1_000, 2_000]), 2_000 + hour, hour));
        assert!(!is_past(&frames(&[1_000, 2_000]), 1_999 + hour, hour));
        assert!(!is_past(
            &frames(&[2_000 + hour, 1_000]),
            2_000 + hour,
            hour
        ));
        assert!(!is_past(&frames(&[1_000]), u64::MAX, 0), "0 never reuses");
        assert!(!is_past(&[], u64::MAX, 1), "no frames, no age");
        assert!(
            !is_past(&frames(&[5_000]), 1_000, 1),
            "a clock that went back"
        );
    }
}
