//! Loading an order's frames and choosing the best of them, in bounded memory.
//!
//! The frames the manifest names are fetched in manifest order, [`FETCH_CONCURRENCY`]
//! GETs at a time, and handed one by one to a [`Scorer`] on a blocking thread (decoding
//! and the optional object detector are CPU-bound: never on the async workers). The
//! scorer keeps what selection needs of each frame (its scores and a 16x16 thumbnail,
//! [`SCORER_BYTES_PER_FRAME`] bytes) and lets go of the JPEG at once; when every frame is
//! scored it chooses exactly as [`crate::select::select_frames_with`] does over the same
//! frames. Frames the store does not have (404) are reported as missing, by key.
//!
//! # Long orders
//! An order has no upper length: a slip left in view for hours makes an order of tens of
//! thousands of frames. Its frames are never in memory together: at most
//! [`MAX_FRAMES_IN_MEMORY`] JPEG bodies of one order are held at once (GETs in flight,
//! frames queued for the scorer and the one being scored), and one decoded image (the
//! frame being scored), whatever the order's length. An order of at most
//! [`MAX_FRAMES_IN_MEMORY`] frames keeps its bodies until the choice is made; a longer
//! one lets each go once scored and GETs its `frames_per_order` chosen frames again at
//! the end (so the ceiling is `frames_per_order` when that is larger). The choice is the
//! same as over all frames at once, for any length; what grows with the length is the
//! manifest (read once) and [`SCORER_BYTES_PER_FRAME`] per frame (about 1 KB: 20 MB for
//! 20,000 frames). The ceiling holds per order; `max_concurrent_orders` orders are
//! selected at once. A chosen frame deleted between its two GETs fails the attempt as a
//! storage error: the order is tried again, and that frame is then reported missing.
//! `orchestrator/benches/long_order.rs` runs one order of 20,000 frames (640x480, 33 KB)
//! through the consumer: on 2 cores it took 47 s with a peak RSS of 61 MB (29 MB before
//! the order), where loading every frame at once held 645 MB of JPEGs (twice, with the
//! copy made for selection).
//!
//! The result's `timings_ms.load` is the time until every frame was fetched (and the
//! chosen ones fetched again); `timings_ms.select` is the time spent scoring and
//! choosing, which overlaps the loading.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream;
use oa_contract::FrameEntry;
use tokio::sync::mpsc;

use crate::detector::Detector;
use crate::recognize::Frame;
use crate::select::{FrameScore, SelectError};
pub use crate::select::{SCORER_BYTES_PER_FRAME, Scorer};
use crate::store::{Store, StoreError};

/// GETs of one order's frames in flight at once.
pub const FETCH_CONCURRENCY: usize = 8;

/// Fetched frames waiting for the scorer.
const QUEUE: usize = 8;

/// The most JPEG bodies of one order held in memory at once while its frames are
/// selected (or `frames_per_order`, when that is larger: the chosen frames are held
/// together for the recogniser). Streaming holds at most [`FETCH_CONCURRENCY`] (fetching
/// or fetched, in manifest order) + 1 (waiting for room in the queue) + the queue + 1
/// (being scored); an order of at most this many frames keeps them all until the choice.
pub const MAX_FRAMES_IN_MEMORY: usize = 32;

const _: () = assert!(FETCH_CONCURRENCY + QUEUE + 2 <= MAX_FRAMES_IN_MEMORY);

/// The most bodies any one selection of this process held at once (for benchmarks and
/// tests).
static PEAK_HELD: AtomicUsize = AtomicUsize::new(0);

/// The most JPEG bodies any one order's selection held at once since the process started.
pub fn peak_bodies_held() -> usize {
    PEAK_HELD.load(Ordering::SeqCst)
}

/// One chosen frame.
#[derive(Debug, Clone)]
pub struct Chosen {
    /// Its position in the manifest's `frames`.
    pub index: usize,
    pub frame: Frame,
    /// Its score when it was picked.
    pub score: FrameScore,
}

/// What [`select`] found.
#[derive(Debug)]
pub struct Selection {
    /// Frames the manifest names that the store does not have, by key, sorted.
    pub missing: Vec<String>,
    /// How many frames were loaded (and scored).
    pub loaded: usize,
    /// The chosen frames in manifest order; `Err(NoFrames)` when none was loaded.
    pub chosen: Result<Vec<Chosen>, SelectError>,
    /// The most JPEG bodies held at once.
    pub peak_bodies: usize,
    /// Until every frame was fetched, and the chosen ones fetched again.
    pub load: Duration,
    /// Scoring and choosing (overlaps `load`).
    pub select: Duration,
}

/// Counts the bodies held.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

/// A fetched JPEG body, counted by its gauge until it is dropped.
struct Body {
    jpeg: Vec<u8>,
    gauge: Arc<Gauge>,
}

impl Body {
    fn new(jpeg: Vec<u8>, gauge: &Arc<Gauge>) -> Body {
        let now = gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
        gauge.peak.fetch_max(now, Ordering::SeqCst);
        Body {
            jpeg,
            gauge: gauge.clone(),
        }
    }

    fn into_frame(mut self, key: &str) -> Frame {
        Frame {
            key: key.to_owned(),
            jpeg: std::mem::take(&mut self.jpeg),
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        self.gauge.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the scorer thread hands back.
struct Scored {
    chosen: Result<Vec<(usize, FrameScore)>, SelectError>,
    /// Manifest index of each loaded frame, by loaded index.
    manifest_index: Vec<u32>,
    /// The bodies, by loaded index, of an order short enough to keep them.
    kept: Vec<Body>,
    busy: Duration,
}

/// Fetches the frames named by `frames` from `bucket` and chooses the best `k` (with
/// `detector`, if any), holding at most [`MAX_FRAMES_IN_MEMORY`] bodies (or `k`) at once;
/// see the module documentation. `Err` only for storage failures.
pub async fn select(
    store: &Store,
    bucket: &str,
    frames: &[FrameEntry],
    k: usize,
    detector: Option<Arc<Detector>>,
) -> Result<Selection, StoreError> {
    let gauge = Arc::new(Gauge::default());
    let keep = frames.len() <= MAX_FRAMES_IN_MEMORY;
    let expected = frames.len();
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel::<(usize, Body)>(QUEUE);
    let fetch_gauge = gauge.clone();
    let fetch = async move {
        let mut missing = vec![];
        let mut sent = 0usize;
        // Owned futures: ones borrowing through the closure's argument make the order
        // task's future not `Send` (a higher-ranked lifetime the compiler cannot prove).
        let mut gets = stream::iter(0..frames.len())
            .map(|i| {
                let (store, bucket) = (store.clone(), bucket.to_owned());
                let (key, gauge) = (frames[i].key.clone(), fetch_gauge.clone());
                async move {
                    let got = store.get(&bucket, &key).await;
                    (i, got.map(|o| o.map(|o| Body::new(o.body, &gauge))))
                }
            })
            .buffered(FETCH_CONCURRENCY);
        while let Some((i, got)) = gets.next().await {
            match got? {
                Some(body) => {
                    if tx.send((i, body)).await.is_err() {
                        // The scorer is gone (it panicked): its join error says why.
                        break;
                    }
                    sent += 1;
                }
                None => missing.push(frames[i].key.clone()),
            }
        }
        Ok::<_, StoreError>((missing, sent, started.elapsed()))
    };
    let score = tokio::task::spawn_blocking(move || {
        let mut scorer = Scorer::with_capacity(detector.as_deref(), expected);
        let mut manifest_index = Vec::with_capacity(expected);
        let mut kept = vec![];
        let mut busy = Duration::ZERO;
        while let Some((i, body)) = rx.blocking_recv() {
            let t = Instant::now();
            scorer.add(&body.jpeg);
            busy += t.elapsed();
            manifest_index.push(i as u32);
            if keep {
                kept.push(body);
            }
        }
        let t = Instant::now();
        let chosen = scorer.finish(k);
        busy += t.elapsed();
        Scored {
            chosen,
            manifest_index,
            kept,
            busy,
        }
    });
    let (fetched, scored) = futures_util::future::join(fetch, score).await;
    let (mut missing, loaded, mut load) = fetched?;
    missing.sort();
    let (chosen, select) = match scored {
        Err(e) => (
            Err(SelectError::Failed(format!("selection task failed: {e}"))),
            Duration::ZERO,
        ),
        Ok(Scored {
            chosen: Err(e),
            busy,
            ..
        }) => (Err(e), busy),
        Ok(Scored {
            chosen: Ok(picks),
            manifest_index,
            kept,
            busy,
        }) => {
            let index = |loaded_index: usize| manifest_index[loaded_index] as usize;
            let bodies: Vec<(usize, Body, FrameScore)> = if keep {
                let mut kept: Vec<Option<Body>> = kept.into_iter().map(Some).collect();
                picks
                    .iter()
                    .map(|&(li, score)| {
                        let body = kept[li].take().expect("each frame is chosen once");
                        (index(li), body, score)
                    })
                    .collect()
            } else {
                // Every body was let go once scored: fetch the chosen ones again.
                let t = Instant::now();
                let bodies = refetch(store, bucket, frames, &gauge, picks, index).await?;
                load += t.elapsed();
                bodies
            };
            let chosen = bodies
                .into_iter()
                .map(|(i, body, score)| Chosen {
                    index: i,
                    frame: body.into_frame(&frames[i].key),
                    score,
                })
                .collect();
            (Ok(chosen), busy)
        }
    };
    let peak_bodies = gauge.peak.load(Ordering::SeqCst);
    PEAK_HELD.fetch_max(peak_bodies, Ordering::SeqCst);
    Ok(Selection {
        missing,
        loaded,
        chosen,
        peak_bodies,
        load,
        select,
    })
}

/// GETs the chosen frames again (in manifest order), all held until the last arrives.
async fn refetch(
    store: &Store,
    bucket: &str,
    frames: &[FrameEntry],
    gauge: &Arc<Gauge>,
    picks: Vec<(usize, FrameScore)>,
    index: impl Fn(usize) -> usize,
) -> Result<Vec<(usize, Body, FrameScore)>, StoreError> {
    let mut again = stream::iter(picks.into_iter().map(|(li, score)| {
        let i = index(li);
        let (store, bucket) = (store.clone(), bucket.to_owned());
        let (key, gauge) = (frames[i].key.clone(), gauge.clone());
        async move {
            match store.get(&bucket, &key).await? {
                Some(o) => Ok((i, Body::new(o.body, &gauge), score)),
                None => Err(StoreError(format!(
                    "frame {key} disappeared while its order was being selected"
                ))),
            }
        }
    }))
    .buffered(FETCH_CONCURRENCY);
    let mut bodies = vec![];
    while let Some(b) = again.next().await {
        bodies.push(b?);
    }
    Ok(bodies)
}
