//! The pure part of retention: which keys a pass deletes, and in which order.
//!
//! * [`Grouper`] turns a listing of the frames prefix (pages, in key order) into order
//!   folders: the keys of one `{station}/{order}/` folder are contiguous in a listing.
//!   An order folder's frames are deleted only when its newest object, frames and marker
//!   together, is older than the cutoff ([`Folder::expired`]); its marker only once it is
//!   as old as the results are kept ([`Folder::to_delete`]): a marker holds no photo, and
//!   while a result may exist it must stay, or the order number, used again at the
//!   station, would be stored as the same order key and overwrite that result.
//! * [`Deletions`] batches the keys of expired folders for DeleteObjects while keeping
//!   each folder's `__EOS__` marker for a request made after every frame of the folder was
//!   deleted: an interrupted pass leaves a marker whose result exists (harmless) rather
//!   than frames without a marker, which orphan recovery would turn into a new marker.
//!   A folder whose frame could not be deleted keeps its marker until a later pass.
//! * [`parse_claim`] and [`claim_expired`] decide about claims.

use std::collections::{HashMap, HashSet, VecDeque};

use oa_contract::ParsedKey;

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// What retention deletes (the `kind` label of `oa_retention_deleted_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Frames,
    Markers,
    Results,
    Claims,
    /// Station index entries ([`oa_contract::index`]).
    Index,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Frames,
        Kind::Markers,
        Kind::Results,
        Kind::Claims,
        Kind::Index,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Frames => "frames",
            Kind::Markers => "markers",
            Kind::Results => "results",
            Kind::Claims => "claims",
            Kind::Index => "index",
        }
    }
}

/// The cutoff of a retention of `days` at `now_ms`: objects last modified before it go;
/// `None` (0 days) keeps everything.
pub fn cutoff(now_ms: i64, days: u64) -> Option<i64> {
    (days > 0).then(|| now_ms.saturating_sub((days as i64).saturating_mul(DAY_MS)))
}

/// An object older than `cutoff`; one without a date is never old.
pub fn older(last_modified_ms: Option<i64>, cutoff: i64) -> bool {
    last_modified_ms.is_some_and(|m| m < cutoff)
}

/// Whether a listed key is a station index entry older than `cutoff`, both by the time
/// it announces and by its LastModified: it announced an order whose frames are as old.
pub fn expired_index_entry(
    prefix: &str,
    key: &str,
    last_modified_ms: Option<i64>,
    cutoff: i64,
) -> bool {
    oa_contract::parse_index_key(prefix, key)
        .is_some_and(|e| (e.unix_ms as i64) < cutoff && older(last_modified_ms, cutoff))
}

/// The objects of one order folder, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    pub station: String,
    pub order: String,
    pub frames: Vec<String>,
    pub marker: Option<String>,
    /// The newest LastModified of its objects; `None` when one had none.
    pub newest_ms: Option<i64>,
}

impl Folder {
    /// Whether its newest object is older than `cutoff`.
    pub fn expired(&self, cutoff: i64) -> bool {
        older(self.newest_ms, cutoff)
    }

    /// What of an expired folder goes: its frames, and its marker only when the folder is
    /// older than `results_cutoff` too (`None`: results are kept forever, and so are
    /// markers). A kept marker lets the sink see that a number coming back is a new
    /// order (`{order}.{n}`), and the consumer that the order is done.
    pub fn to_delete(mut self, results_cutoff: Option<i64>) -> Folder {
        if !results_cutoff.is_some_and(|c| self.expired(c)) {
            self.marker = None;
        }
        self
    }
}

/// Groups a listing of the frames prefix into order folders. Keys that are neither frames
/// nor markers (results, claims, expected orders, outbox events sharing the prefix, or
/// anything else) are skipped: they are never deleted as frames.
#[derive(Debug)]
pub struct Grouper {
    prefix: String,
    current: Option<Folder>,
}

impl Grouper {
    pub fn new(prefix: &str) -> Grouper {
        Grouper {
            prefix: prefix.to_owned(),
            current: None,
        }
    }

    /// Adds the next listed key; returns the folder before it once the key starts another.
    pub fn push(&mut self, key: &str, last_modified_ms: Option<i64>) -> Option<Folder> {
        let (station, order, is_marker) = match oa_contract::parse_key(&self.prefix, key) {
            Ok(ParsedKey::Frame { station, order, .. }) => (station, order, false),
            Ok(ParsedKey::Marker { station, order }) => (station, order, true),
            Err(_) => return None,
        };
        let done = match &self.current {
            Some(f) if f.station == station && f.order == order => None,
            _ => self.current.take(),
        };
        let folder = self.current.get_or_insert_with(|| Folder {
            station,
            order,
            frames: vec![],
            marker: None,
            newest_ms: Some(i64::MIN),
        });
        folder.newest_ms = match (folder.newest_ms, last_modified_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        if is_marker {
            folder.marker = Some(key.to_owned());
        } else {
            folder.frames.push(key.to_owned());
        }
        done
    }

    /// The last folder, once the listing ended.
    pub fn finish(&mut self) -> Option<Folder> {
        self.current.take()
    }
}

/// One key in a delete request, and the folder it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub key: String,
    pub kind: Kind,
    folder: u64,
}

/// What one delete request did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub frames: u64,
    pub markers: u64,
    /// Keys the store refused, and markers kept because a frame of theirs was refused.
    pub failed: u64,
}

/// The keys of expired folders, batched: frames as they come, each marker in a request
/// after the one that deleted the last frame of its folder.
#[derive(Debug)]
pub struct Deletions {
    batch: usize,
    frames: VecDeque<Item>,
    /// Markers that may go now: every frame of their folder is deleted.
    ready: VecDeque<Item>,
    /// Markers waiting for their folder's frames, and how many frames are left.
    waiting: HashMap<u64, (Item, usize)>,
    next_folder: u64,
}

impl Deletions {
    pub fn new(batch: usize) -> Deletions {
        Deletions {
            batch: batch.max(1),
            frames: VecDeque::new(),
            ready: VecDeque::new(),
            waiting: HashMap::new(),
            next_folder: 0,
        }
    }

    /// Queues every key of `folder`.
    pub fn push(&mut self, folder: Folder) {
        let id = self.next_folder;
        self.next_folder += 1;
        let n = folder.frames.len();
        self.frames
            .extend(folder.frames.into_iter().map(|key| Item {
                key,
                kind: Kind::Frames,
                folder: id,
            }));
        if let Some(key) = folder.marker {
            let marker = Item {
                key,
                kind: Kind::Markers,
                folder: id,
            };
            if n == 0 {
                self.ready.push_back(marker);
            } else {
                self.waiting.insert(id, (marker, n));
            }
        }
    }

    /// The next request: a full one, or with `flush` whatever may go now; `None` when
    /// there is none. Markers whose frames are all deleted come first.
    pub fn next_batch(&mut self, flush: bool) -> Option<Vec<Item>> {
        let available = self.ready.len() + self.frames.len();
        if available == 0 || (!flush && available < self.batch) {
            return None;
        }
        let mut out = Vec::with_capacity(self.batch.min(available));
        while out.len() < self.batch {
            match self.ready.pop_front().or_else(|| self.frames.pop_front()) {
                Some(item) => out.push(item),
                None => break,
            }
        }
        Some(out)
    }

    /// Records what the store did with `batch`: `refused` are the keys it did not delete
    /// (all of them when the request failed). A folder with a refused frame keeps its
    /// marker.
    pub fn done(&mut self, batch: &[Item], refused: &HashSet<String>) -> Outcome {
        let mut out = Outcome::default();
        for item in batch {
            let ok = !refused.contains(&item.key);
            match (item.kind, ok) {
                (Kind::Markers | Kind::Results | Kind::Claims | Kind::Index, true) => {
                    out.markers += 1
                }
                (Kind::Frames, true) => {
                    out.frames += 1;
                    if let Some((_, left)) = self.waiting.get_mut(&item.folder) {
                        *left -= 1;
                        if *left == 0
                            && let Some((marker, _)) = self.waiting.remove(&item.folder)
                        {
                            self.ready.push_back(marker);
                        }
                    }
                }
                (Kind::Frames, false) => {
                    out.failed += 1;
                    if self.waiting.remove(&item.folder).is_some() {
                        out.failed += 1;
                    }
                }
                (_, false) => out.failed += 1,
            }
        }
        out
    }

    /// Markers still waiting for frames of theirs that were never sent.
    pub fn pending(&self) -> usize {
        self.waiting.len() + self.ready.len() + self.frames.len()
    }
}

/// The station and order key of a claim key under `results_prefix`:
/// `claims/{station}/{order}`, `.rev{r}`, and the takeovers of either
/// (`.takeover-{ms}`, repeated); with the revision it claims. `None` for anything else
/// (the conditional-PUT probe, foreign keys).
pub fn parse_claim(results_prefix: &str, key: &str) -> Option<(String, String, u32)> {
    let rest = key
        .strip_prefix(results_prefix)?
        .strip_prefix(oa_contract::CLAIMS_DIR)?
        .strip_prefix('/')?;
    let (station, tail) = rest.split_once('/')?;
    oa_contract::validate_id(oa_contract::IdKind::Station, station).ok()?;
    let mut parts = tail.split('.');
    let id = parts.next()?;
    let mut order = id.to_owned();
    let mut rest: Vec<&str> = parts.collect();
    if rest
        .first()
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        order = format!("{id}.{}", rest.remove(0));
    }
    oa_contract::validate_order_key(&order).ok()?;
    let mut revision = 1;
    for (i, part) in rest.iter().enumerate() {
        if let Some(r) = part.strip_prefix("rev")
            && i == 0
        {
            revision = r.parse().ok().filter(|r| *r >= 2)?;
        } else if let Some(ms) = part.strip_prefix("takeover-") {
            ms.parse::<i64>().ok()?;
        } else {
            return None;
        }
    }
    Some((station.to_owned(), order, revision))
}

/// Whether a claim on `revision` of an order, last modified at `claim_ms`, may be deleted
/// at `now_ms`, given the order's result: `None` when it has none, else when it was last
/// modified and its `revision` (0: written before revisions existed, final).
///
/// Deleting a claim can only matter to a replica about to claim the same revision; the
/// consumer (consume/mod.rs `process`, consume/claim.rs) claims revision 1 only after
/// reading that the order has no result, and revision r ≥ 2 only after reading result
/// r - 1 and finding the marker changed. So a claim goes only when:
/// * the result of that revision (or a later one) exists: a replica reading it now is done
///   with the order and never claims, and a marker that changes later is claimed under a
///   new revision's key, which is not this one;
/// * the claim is older than `claim_ttl`: had it been kept, any replica would already
///   judge it stale and take it over (`claim::judge`), so deleting it opens no door a
///   kept claim does not;
/// * the result is older than `claim_ttl` too: a replica that read "no result" just
///   before it was written and claims just after we deleted would have to stall between
///   those two requests for longer than the TTL (each request times out after 30 s).
pub fn claim_expired(
    claim_ms: Option<i64>,
    revision: u32,
    result: Option<(Option<i64>, u32)>,
    now_ms: i64,
    ttl_ms: i64,
) -> bool {
    let Some((result_ms, result_revision)) = result else {
        return false;
    };
    let cutoff = now_ms.saturating_sub(ttl_ms);
    let done = result_revision == 0 || result_revision >= revision;
    done && older(claim_ms, cutoff) && older(result_ms, cutoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(station: &str, order: &str, seq: u32) -> String {
        oa_contract::frame_key(
            "p/",
            station,
            order,
            1_700_000_000_000 + u64::from(seq),
            seq,
        )
        .unwrap()
    }

    fn marker(station: &str, order: &str) -> String {
        oa_contract::marker_key("p/", station, order).unwrap()
    }

    fn group(keys: &[(String, Option<i64>)]) -> Vec<Folder> {
        let mut g = Grouper::new("p/");
        let mut out: Vec<Folder> = keys.iter().filter_map(|(k, m)| g.push(k, *m)).collect();
        out.extend(g.finish());
        out
    }

    #[test]
    fn a_marker_goes_only_once_as_old_as_the_results_are_kept() {
        let listing = vec![
            (frame("s1", "1", 0), Some(10)),
            (marker("s1", "1"), Some(20)),
        ];
        let folder = group(&listing).remove(0);
        let kept = folder.clone().to_delete(None);
        assert_eq!(
            (kept.frames.len(), kept.marker),
            (1, None),
            "results kept forever"
        );
        let young = folder.clone().to_delete(Some(20));
        assert_eq!(
            (young.frames.len(), young.marker),
            (1, None),
            "not older than 20"
        );
        let old = folder.to_delete(Some(21));
        assert_eq!(old.marker.as_deref(), Some(marker("s1", "1").as_str()));
    }

    #[test]
    fn folders_are_grouped_and_aged_by_their_newest_object() {
        let listing = vec![
            (frame("s1", "1", 0), Some(10)),
            (frame("s1", "1", 1), Some(30)),
            (marker("s1", "1"), Some(20)),
            (frame("s1", "2", 0), Some(5)),
            ("p/results/s1/1.json".to_owned(), Some(1)),
            ("p/expected/1.json".to_owned(), Some(1)),
            (marker("s2", "1"), None),
        ];
        let f = group(&listing);
        assert_eq!(f.len(), 3, "{f:?}");
        assert_eq!((f[0].station.as_str(), f[0].order.as_str()), ("s1", "1"));
        assert_eq!(f[0].frames.len(), 2);
        assert_eq!(f[0].marker.as_deref(), Some(marker("s1", "1").as_str()));
        assert_eq!(f[0].newest_ms, Some(30));
        assert!(
            f[0].expired(31) && !f[0].expired(30),
            "newest object decides"
        );
        assert_eq!((f[1].order.as_str(), f[1].marker.is_none()), ("2", true));
        assert_eq!(f[2].newest_ms, None, "no date: never old");
        assert!(!f[2].expired(i64::MAX));
    }

    #[test]
    fn cutoff_of_zero_days_keeps_everything() {
        assert_eq!(cutoff(10 * DAY_MS, 0), None);
        assert_eq!(cutoff(10 * DAY_MS, 7), Some(3 * DAY_MS));
    }

    fn folder(order: &str, frames: u32, with_marker: bool) -> Folder {
        Folder {
            station: "s".into(),
            order: order.into(),
            frames: (0..frames).map(|i| frame("s", order, i)).collect(),
            marker: with_marker.then(|| marker("s", order)),
            newest_ms: Some(0),
        }
    }

    /// Runs every batch, refusing `refuse`; returns the batches' keys and the outcome.
    fn drain(d: &mut Deletions, refuse: &HashSet<String>) -> (Vec<Vec<String>>, Outcome) {
        let mut batches = vec![];
        let mut total = Outcome::default();
        while let Some(b) = d.next_batch(true) {
            let o = d.done(&b, refuse);
            total.frames += o.frames;
            total.markers += o.markers;
            total.failed += o.failed;
            batches.push(b.into_iter().map(|i| i.key).collect());
        }
        (batches, total)
    }

    #[test]
    fn a_marker_goes_in_a_request_after_the_last_frame_of_its_folder() {
        let mut d = Deletions::new(3);
        d.push(folder("1", 4, true));
        d.push(folder("2", 1, true));
        d.push(folder("3", 0, true));
        assert!(d.next_batch(false).is_some(), "a full batch is ready");
        let mut d = Deletions::new(3);
        d.push(folder("1", 4, true));
        d.push(folder("2", 1, true));
        d.push(folder("3", 0, true));
        let (batches, total) = drain(&mut d, &HashSet::new());
        let at = |k: &str| {
            batches
                .iter()
                .position(|b| b.iter().any(|x| x == k))
                .unwrap()
        };
        for order in ["1", "2"] {
            let n = if order == "1" { 4 } else { 1 };
            for i in 0..n {
                assert!(
                    at(&frame("s", order, i)) < at(&marker("s", order)),
                    "{batches:?}"
                );
            }
        }
        assert!(batches.iter().all(|b| b.len() <= 3), "{batches:?}");
        assert_eq!(
            total,
            Outcome {
                frames: 5,
                markers: 3,
                failed: 0
            }
        );
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn a_folder_whose_frame_is_refused_keeps_its_marker() {
        let mut d = Deletions::new(10);
        d.push(folder("1", 2, true));
        d.push(folder("2", 2, true));
        let refuse: HashSet<String> = [frame("s", "1", 1)].into();
        let (batches, total) = drain(&mut d, &refuse);
        let all: Vec<&String> = batches.iter().flatten().collect();
        assert!(!all.contains(&&marker("s", "1")), "{batches:?}");
        assert!(all.contains(&&marker("s", "2")), "{batches:?}");
        assert_eq!((total.frames, total.markers, total.failed), (3, 1, 2));
    }

    #[test]
    fn claims_parse_with_their_revision() {
        let p = |k: &str| parse_claim("r/", k);
        let some = |s: &str, o: &str, r| Some((s.to_owned(), o.to_owned(), r));
        assert_eq!(p("r/claims/s1/384"), some("s1", "384", 1));
        assert_eq!(p("r/claims/s1/384.2"), some("s1", "384.2", 1));
        assert_eq!(p("r/claims/s1/384.rev3"), some("s1", "384", 3));
        assert_eq!(p("r/claims/s1/384.2.rev3"), some("s1", "384.2", 3));
        assert_eq!(
            p("r/claims/s1/384.rev2.takeover-17.takeover-99"),
            some("s1", "384", 2)
        );
        assert_eq!(p("r/claims/s1/384.takeover-17"), some("s1", "384", 1));
        for bad in [
            "r/claims/.probe-host-1",
            "r/claims/s1/384.json",
            "r/claims/s1/384.rev1",
            "r/claims/s1/../x",
            "claims/s1/384",
            "r/results/s1/384",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_claim_goes_only_once_its_result_exists_and_both_are_older_than_the_ttl() {
        let (now, ttl) = (10_000, 1_000);
        assert!(claim_expired(Some(100), 1, Some((Some(200), 1)), now, ttl));
        assert!(!claim_expired(Some(100), 1, None, now, ttl), "no result");
        assert!(
            !claim_expired(Some(9_500), 1, Some((Some(200), 1)), now, ttl),
            "fresh claim"
        );
        assert!(
            !claim_expired(Some(100), 1, Some((Some(9_500), 1)), now, ttl),
            "fresh result"
        );
        assert!(
            !claim_expired(Some(100), 3, Some((Some(200), 2)), now, ttl),
            "the result of an earlier revision"
        );
        assert!(claim_expired(Some(100), 3, Some((Some(200), 3)), now, ttl));
        assert!(claim_expired(Some(100), 3, Some((Some(200), 0)), now, ttl));
        assert!(!claim_expired(None, 1, Some((Some(200), 1)), now, ttl));
    }
}
