//! The frames an order already has in the store without a marker (the pipeline was killed
//! mid-order), from a listing of the order's prefix: pure, so the sink only does the I/O.

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
                FrameEntry {
                    key: k(10, 0),
                    seq: 0,
                    unix_ms: 10,
                    bytes: 100
                },
                FrameEntry {
                    key: k(20, 1),
                    seq: 1,
                    unix_ms: 20,
                    bytes: 200
                },
                FrameEntry {
                    key: k(30, 2),
                    seq: 2,
                    unix_ms: 30,
                    bytes: 300
                },
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
        assert_eq!(
            frames,
            [FrameEntry {
                key: k,
                seq: 4,
                unix_ms: 7,
                bytes: 0
            }]
        );
        assert_eq!(next_seq(&frames), 5);
    }
}
