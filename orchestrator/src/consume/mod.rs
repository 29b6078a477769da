//! Discovers completed orders through their `__EOS__` markers and turns each into a
//! result: claim, manifest, frames (named by the manifest, never listed), selection,
//! recognition, validation, `results/{station}/{order}.json`.
//!
//! * [`discovery`]: finding markers without one request per known order.
//! * [`claim`]: exactly one replica processes each order revision.
//! * [`evaluate`]: the pure step from what was loaded and recognised to the result.
//!
//! # Discovery independent of history
//! Order IDs are not monotonic and a station's folder holds every frame ever stored, so
//! listing it grows with the bucket. Instead the sink announces every order in the
//! station index ([`oa_contract::index`]: `{station}/__index__/`, newest first), and:
//! * every poll lists the index from its newest entry down to [`index::LOOKBACK_MS`]
//!   below the newest entry already seen: one `ListObjectsV2` request unless more than
//!   `list_page_size` entries were stored in that window. Each new `marker` entry is
//!   looked at; each `begin` with no `marker` since is an *open* order (orphan recovery);
//! * a per-station checkpoint, `{results_prefix}checkpoints/{station}.json`, records the
//!   time before which every entry was looked at to the end (the oldest order not done
//!   yet holds it back). It is written at most every
//!   [`discovery::CHECKPOINT_EVERY`] and at stop; a restart lists the index only down to
//!   `LOOKBACK_MS` below it, so it is ready at once whatever lies below;
//! * a station with no checkpoint (a first start, or a store written before the index)
//!   is listed once in full, in the background while the index is already polled, so
//!   markers stored before the index are still processed; its checkpoint is written once
//!   that listing and what it found are done;
//! * the station pipeline announces every stored marker on its bus (`order-stored`); the
//!   supervisor passes those to [`Consumer::hint`], which fetches that one marker at once;
//! * after a start, [`backfill`] reads the stations' earlier results back into memory
//!   (newest first, until each station's share is held), in the background;
//! * orders waiting for another look (a failure that may pass, expected items awaited, a
//!   claim held by another replica) are looked at again when their delay is up.
//!
//! An index entry is written before what it announces: a marker not there yet is looked
//! for again (for up to an hour). An entry stored more than `LOOKBACK_MS` older than the
//! newest already seen (a sink clock set back) is missed by the index; the hint still
//! finds its marker.
//!
//! # A repeated order ID
//! When an order ID comes back at a station after its marker was written, the sink writes
//! a new marker that lists the frames of every segment of the order (a superset). A
//! handled order is looked at again when its new index entry (or a hint) names it, or,
//! in a full listing, its marker shows another LastModified (whole seconds); the marker's
//! `frame_count` and `last_unix_ms` against those recorded in the result decide. A changed
//! marker is processed again: the result is overwritten with `revision` one higher. After
//! a restart, the result's recorded `marker_last_modified_ms` is compared with the listing,
//! so an unchanged order still costs one GET of its result.
//!
//! # Exactly once
//! An order whose result object exists is done (across restarts). Before processing, an
//! order revision is claimed ([`claim`]); a claim held by another owner means another
//! orchestrator does the order (it is looked at again on later passes until its result
//! appears, or its claim goes stale and is taken over).
//!
//! # Expected items that come late
//! The expected items are looked up ([`ExpectedOrders::lookup`]: the API's, else
//! `orders_file`'s) once the order is recognised. When neither knows the order yet, a
//! recognised order is not `unknown-order` at once: it is *held* in memory (at most
//! [`MAX_AWAITING`] orders) with what recognition found, shown as `awaiting-order` in
//! [`Consumer::results`] and written nowhere, and looked at again from the retry map
//! (the expected items looked up again, the claim renewed; delays doubling from
//! `retry_delay` to [`MAX_RETRY_DELAY`]) for `expected_wait`. An order stored through this
//! process's API wakes it at once ([`Consumer::expected_arrived`]); one stored through
//! another replica is seen at the next look. It is validated from the held recognition,
//! never recognised again, and its one result is written as any first result (fenced by
//! `If-None-Match`). After `expected_wait` it is `unknown-order` as before. A held order
//! is lost with the process: after a restart it is recognised again (its claim is ours)
//! and waits anew. When [`MAX_AWAITING`] orders are held, the next is `unknown-order` at
//! once.

pub mod backfill;
pub mod claim;
pub mod discovery;
pub mod evaluate;
pub mod frames;
pub mod index;
pub mod known;
pub mod recovery;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oa_contract::Manifest;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::detector::Detector;
use crate::expected::ExpectedOrders;
use crate::metrics::{Metrics, OrderObservation};
use crate::orders::{Inventory, Orders};
use crate::recognize::{Frame, Recognizer};
use crate::result::{OrderResult, OrderStatus, Timings};
use crate::shutdown::Stopping;
use crate::store::{Layout, Store, StoreError};
use discovery::same_marker_version;
use evaluate::{Header, Outcome};

/// How the consumer runs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub stations: Vec<String>,
    pub layout: Layout,
    pub poll_interval: Duration,
    pub max_concurrent_orders: usize,
    pub frames_per_order: usize,
    /// Claim orders with a conditional PUT (several orchestrators on one bucket).
    pub claim: bool,
    /// A claim older than this, by another owner, with no result yet, is taken to belong
    /// to an orchestrator that died mid-order and is taken over.
    pub claim_ttl: Duration,
    /// Keys per LIST request (at most 1000 on S3).
    pub list_page_size: i32,
    /// Name written into claims; claims with this name are ours (stable across restarts).
    pub owner: String,
    /// How long recognition failures that may pass are retried before an order gets a
    /// final `recognition-failed`.
    pub recognition_retry: Duration,
    /// An order whose newest frame is older than this and that has no marker is
    /// finalised by the orchestrator (reason `recovered`); `None` never.
    pub orphan_after: Option<Duration>,
    /// First delay before an order is tried again (after a failure that may pass or a
    /// storage error); it doubles up to [`MAX_RETRY_DELAY`].
    pub retry_delay: Duration,
    /// How long a recognised order whose expected items are not known yet waits for them
    /// (`awaiting-order`) before it becomes `unknown-order`; zero never waits.
    pub expected_wait: Duration,
    /// The shortest `reuse_after_s` of the stations: the expected items the till stored
    /// for a reused number count for its new order (`{order}.{n}`) only when stored less
    /// than this before the order's first frame, so the previous order's are never taken.
    pub reuse_after: Duration,
}

/// The longest wait between two attempts at one order.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// Recognised orders held in memory at most while their expected items are awaited.
pub const MAX_AWAITING: usize = 10_000;

/// A recognised order waiting for its expected items: everything needed to validate it
/// without recognising it again.
#[derive(Debug, Clone)]
struct Awaiting {
    /// When the order was first found to be waiting.
    since: Instant,
    /// When its marker was first discovered (for `timings_ms.total`).
    discovered: Instant,
    /// Looks so far, for the delay before the next.
    checks: u32,
    revision: u32,
    manifest: (Option<u32>, Option<u64>),
    header: Header,
    outcome: Outcome,
    timings: Timings,
    instance: String,
    frames_uploaded: u64,
    recognition_s: Option<f64>,
}

/// An order waiting for its next attempt.
#[derive(Debug, Clone, Copy)]
struct Retry {
    attempts: u32,
    first: Instant,
    next: Instant,
}

/// Everything a consumer works with.
pub struct ConsumerDeps {
    pub store: Store,
    pub settings: Settings,
    pub recognizer: Arc<dyn Recognizer>,
    /// The orders file's orders; used only when `expected` is `None`.
    pub orders: Arc<Orders>,
    pub inventory: Arc<Inventory>,
    pub metrics: Arc<Metrics>,
    /// Optional object detector for frame selection.
    pub detector: Option<Arc<Detector>>,
    /// The expected-orders service shared with the HTTP API; `None`: one of the
    /// consumer's own over `orders` and the results bucket.
    pub expected: Option<Arc<ExpectedOrders>>,
}

/// Default owner name: `OA_INSTANCE_ID`, else the host name.
pub fn default_owner() -> String {
    std::env::var("OA_INSTANCE_ID")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            let host = crate::roles::hostname();
            if host.is_empty() {
                "orchestrator".into()
            } else {
                host
            }
        })
}

type OrderKey = (String, String);

/// What became of a marker.
enum Processed {
    /// Its result is up to date (written now or before); looked at again only when the
    /// marker changes. `marker_ms` is the LastModified of the marker it stands for.
    Done { marker_ms: Option<i64> },
    /// Another orchestrator holds a fresh claim on it.
    Deferred,
    /// Its index entry is there, its marker not (yet): written just after the entry, or
    /// never when the pipeline died (then its `begin` finds it).
    NotYet,
    /// Recognition failed in a way that may pass: no result yet, tried again later.
    RetryLater(String),
    /// Recognised; its expected items are awaited (held), looked at again after `delay`.
    Awaiting { delay: Duration, first: bool },
}

/// Called with the station ID of every new marker.
pub type MarkerCallback = Box<dyn Fn(&str) + Send + Sync>;

/// Orders remembered as handled at most (a full listing's saving, see [`discovery`]).
const MAX_HANDLED: usize = 200_000;

/// How soon a marker announced in the index and not stored yet is looked for again, times
/// the attempts so far (it is normally written a moment after its entry).
const NOT_YET_RETRY: Duration = Duration::from_millis(250);

/// How long a marker announced in the index is looked for.
const NOT_YET_LIMIT: Duration = Duration::from_secs(3600);

/// How long a stopping consumer waits for the orders in flight.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// Orders being or already handled, and the results known to this process.
pub struct Consumer {
    store: Store,
    settings: Settings,
    recognizer: Arc<dyn Recognizer>,
    expected: Arc<ExpectedOrders>,
    inventory: Arc<Inventory>,
    metrics: Arc<Metrics>,
    detector: Option<Arc<Detector>>,
    /// The newest results of each station ([`known`]).
    results: Mutex<known::Known>,
    /// Orders whose result is up to date, with the LastModified of their marker.
    handled: Mutex<HashMap<OrderKey, Option<i64>>>,
    in_flight: Mutex<HashSet<OrderKey>>,
    /// Orders to try again, not before their time: discovery finds them again at every
    /// poll, and a store or VLM that is down must not be asked at that rate.
    retries: Mutex<HashMap<OrderKey, Retry>>,
    /// Recognised orders whose expected items are awaited.
    awaiting: Mutex<HashMap<OrderKey, Awaiting>>,
    /// Orders whose expected items arrived while they were in flight: looked at again as
    /// soon as that attempt ends.
    wakes: Mutex<HashSet<OrderKey>>,
    /// Orders seen with frames and no marker.
    orphans: Mutex<recovery::Orphans>,
    recovered: std::sync::atomic::AtomicU64,
    /// The order tasks; finished ones are reaped at every poll, the rest drained on stop.
    tasks: Mutex<JoinSet<()>>,
    cursors: Mutex<HashMap<String, Option<String>>>,
    /// Per station: its index, checkpoint and full listing ([`discovery`]).
    discovery: Mutex<HashMap<String, discovery::StationState>>,
    limit: Arc<Semaphore>,
    hints: Mutex<Option<mpsc::UnboundedSender<OrderKey>>>,
    progress: Mutex<Option<MarkerCallback>>,
    /// The stations whose orders are looked for; `settings.stations` at first, changed by
    /// a reload ([`Consumer::set_stations`]).
    stations: Mutex<Vec<String>>,
    /// Where final results are announced.
    events: Mutex<Option<Arc<crate::events::Events>>>,
    processed: std::sync::atomic::AtomicU64,
    /// Outcome of the latest marker listing: `Err` holds why the store could not be read.
    storage: Mutex<Option<Result<(), String>>>,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// What a result records of the manifest it was computed from.
fn manifest_summary(m: &Manifest) -> (Option<u32>, Option<u64>) {
    (Some(m.frame_count), m.last_unix_ms)
}

impl Consumer {
    /// The stations whose orders are looked for.
    pub fn stations(&self) -> Vec<String> {
        self.stations.lock().unwrap().clone()
    }

    /// Looks for the orders of these stations from now on (a reload of the station list);
    /// a station added is listed in full once, as at a start.
    pub fn set_stations(&self, stations: Vec<String>) {
        *self.stations.lock().unwrap() = stations;
    }

    pub fn new(deps: ConsumerDeps) -> Arc<Consumer> {
        let expected = deps.expected.unwrap_or_else(|| {
            let layout = &deps.settings.layout;
            ExpectedOrders::new(
                deps.store.clone(),
                layout.results_bucket.clone(),
                layout.results_prefix.clone(),
                deps.inventory.clone(),
                (*deps.orders).clone(),
            )
        });
        let consumer = Arc::new(Consumer {
            stations: Mutex::new(deps.settings.stations.clone()),
            limit: Arc::new(Semaphore::new(deps.settings.max_concurrent_orders.max(1))),
            store: deps.store,
            settings: deps.settings,
            recognizer: deps.recognizer,
            expected: expected.clone(),
            inventory: deps.inventory,
            metrics: deps.metrics,
            detector: deps.detector,
            results: Mutex::new(known::Known::default()),
            handled: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
            retries: Mutex::new(HashMap::new()),
            awaiting: Mutex::new(HashMap::new()),
            wakes: Mutex::new(HashSet::new()),
            orphans: Mutex::new(recovery::Orphans::default()),
            recovered: std::sync::atomic::AtomicU64::new(0),
            tasks: Mutex::new(JoinSet::new()),
            cursors: Mutex::new(HashMap::new()),
            discovery: Mutex::new(HashMap::new()),
            hints: Mutex::new(None),
            progress: Mutex::new(None),
            events: Mutex::new(None),
            processed: std::sync::atomic::AtomicU64::new(0),
            storage: Mutex::new(None),
        });
        let weak = Arc::downgrade(&consumer);
        expected.on_arrival(Box::new(move |order| {
            if let Some(c) = weak.upgrade() {
                c.expected_arrived(order);
            }
        }));
        consumer
    }

    /// The expected-orders service this consumer validates against.
    pub fn expected(&self) -> &Arc<ExpectedOrders> {
        &self.expected
    }

    /// Orders held while their expected items are awaited.
    pub fn awaiting_count(&self) -> usize {
        self.awaiting.lock().unwrap().len()
    }

    /// The expected items of `order_id` were just stored: every order with that ID held
    /// for them (or in flight now), whichever occurrence of the number, is looked at again
    /// at once.
    pub fn expected_arrived(&self, order_id: &str) {
        let mut keys: Vec<OrderKey> = self
            .awaiting
            .lock()
            .unwrap()
            .keys()
            .filter(|k| oa_contract::split_order_key(&k.1).0 == order_id)
            .cloned()
            .collect();
        keys.extend(
            self.in_flight
                .lock()
                .unwrap()
                .iter()
                .filter(|k| oa_contract::split_order_key(&k.1).0 == order_id)
                .cloned(),
        );
        if keys.is_empty() {
            return;
        }
        self.wakes.lock().unwrap().extend(keys.iter().cloned());
        {
            let now = Instant::now();
            let mut retries = self.retries.lock().unwrap();
            for k in &keys {
                if let Some(r) = retries.get_mut(k) {
                    r.next = now;
                }
            }
        }
        for (station, order) in keys {
            self.hint(&station, &order);
        }
    }

    /// Whether the latest marker listing reached the store (`None` before the first one).
    pub fn storage_status(&self) -> Option<Result<(), String>> {
        self.storage.lock().unwrap().clone()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn layout(&self) -> &Layout {
        &self.settings.layout
    }

    /// Called with the station ID for every new marker (the supervisor's progress signal).
    pub fn on_marker(&self, f: MarkerCallback) {
        *self.progress.lock().unwrap() = Some(f);
    }

    /// A marker was announced (e.g. by the pipeline's `order-stored` bus message).
    /// Announces every final result from now on (`order.completed`, `order.mismatch`).
    pub fn set_events(&self, events: Arc<crate::events::Events>) {
        *self.events.lock().unwrap() = Some(events);
    }

    pub fn hint(&self, station: &str, order: &str) {
        if let Some(tx) = self.hints.lock().unwrap().as_ref() {
            let _ = tx.send((station.to_owned(), order.to_owned()));
        }
    }

    /// Results written or found by this process.
    pub fn results(&self) -> Vec<OrderResult> {
        self.results.lock().unwrap().values().cloned().collect()
    }

    /// One page of the results known to this process ([`crate::listing`]).
    pub fn results_page(&self, q: &crate::listing::Query) -> crate::listing::Page {
        crate::listing::page(self.results.lock().unwrap().values(), q)
    }

    pub fn result(&self, station: &str, order: &str) -> Option<OrderResult> {
        self.results
            .lock()
            .unwrap()
            .get(&(station.to_owned(), order.to_owned()))
            .cloned()
    }

    /// The result of an order: from memory, else (older than what memory keeps, or
    /// written by another replica) read from the store. `Ok(None)`: no result.
    pub async fn result_or_stored(
        &self,
        station: &str,
        order: &str,
    ) -> Result<Option<OrderResult>, StoreError> {
        if let Some(r) = self.result(station, order) {
            return Ok(Some(r));
        }
        self.stored_result(station, order).await
    }

    /// Orders this process processed itself (wrote the result of).
    pub fn processed_count(&self) -> u64 {
        self.processed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Markers this process wrote for orders left without one (reason `recovered`).
    pub fn recovered_count(&self) -> u64 {
        self.recovered.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Orders discovered and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().unwrap().len()
    }

    /// Polls every station's index (and, in the background, lists the stations without a
    /// checkpoint once in full and reads earlier results back, [`backfill`]) until `stopping`; waits for the orders in flight (at most
    /// [`DRAIN_LIMIT`]) and writes the checkpoints before returning.
    pub async fn run(self: Arc<Self>, mut stopping: Stopping) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        *self.hints.lock().unwrap() = Some(tx);
        let scans = {
            let this = self.clone();
            tokio::spawn(async move { this.full_scans().await })
        };
        let backfill = {
            let this = self.clone();
            tokio::spawn(async move { this.backfill().await })
        };
        let mut tick = tokio::time::interval(self.settings.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.reap();
                    for station in self.stations() {
                        if let Err(e) = self.poll_station(&station).await {
                            self.metrics.error("list");
                            tracing::warn!(station, "marker discovery: {e}");
                        }
                    }
                    self.look_again();
                    self.recover_orphans().await;
                    for station in self.stations() {
                        self.save_checkpoint(&station, false).await;
                    }
                }
                Some((station, order)) = rx.recv() => {
                    if let Ok(key) = oa_contract::marker_key(&self.settings.layout.prefix, &station, &order) {
                        self.found(&station, &order, &key, None, true);
                    }
                }
                _ = stopping.wait() => break,
            }
        }
        scans.abort();
        backfill.abort();
        *self.hints.lock().unwrap() = None;
        self.drain().await;
        for station in self.stations() {
            self.save_checkpoint(&station, true).await;
        }
    }

    /// Forgets the order tasks that finished.
    fn reap(&self) {
        let mut tasks = self.tasks.lock().unwrap();
        while tasks.try_join_next().is_some() {}
    }

    /// Waits for the order tasks in flight, at most [`DRAIN_LIMIT`].
    async fn drain(&self) {
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap());
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(DRAIN_LIMIT, all).await.is_err() {
            tracing::warn!(
                "{} order(s) still in flight after {} s; left for the next start",
                self.in_flight(),
                DRAIN_LIMIT.as_secs()
            );
        }
    }

    /// A marker was listed (with its LastModified) or `hinted` (announced by the pipeline).
    fn found(
        self: &Arc<Self>,
        station: &str,
        order: &str,
        key: &str,
        marker_ms: Option<i64>,
        hinted: bool,
    ) {
        let id = (station.to_owned(), order.to_owned());
        // A handled order is looked at again only when its marker may have been replaced:
        // listed with another LastModified, or announced again by the pipeline.
        if let Some(&known) = self.handled.lock().unwrap().get(&id)
            && !hinted
            && (marker_ms.is_none() || same_marker_version(marker_ms, known))
        {
            return;
        }
        if self
            .retries
            .lock()
            .unwrap()
            .get(&id)
            .is_some_and(|r| Instant::now() < r.next)
        {
            return;
        }
        if !self.in_flight.lock().unwrap().insert(id.clone()) {
            return;
        }
        self.metrics.marker_seen(station);
        if let Some(f) = self.progress.lock().unwrap().as_ref() {
            f(station);
        }
        let key = key.to_owned();
        let discovered = Instant::now();
        let this = self.clone();
        self.tasks.lock().unwrap().spawn(async move {
            let Ok(_permit) = this.limit.clone().acquire_owned().await else {
                return;
            };
            // A wake from here on is one this attempt may miss.
            this.wakes.lock().unwrap().remove(&id);
            let outcome = this.process(&id, &key, marker_ms, discovered).await;
            this.in_flight.lock().unwrap().remove(&id);
            let woken = this.wakes.lock().unwrap().remove(&id);
            let (station, order) = (&id.0, &id.1);
            match outcome {
                Ok(Processed::Done { marker_ms }) => {
                    this.retries.lock().unwrap().remove(&id);
                    this.awaiting.lock().unwrap().remove(&id);
                    this.resolved(&id.0, &id.1);
                    let mut handled = this.handled.lock().unwrap();
                    if handled.len() >= MAX_HANDLED {
                        // Only saves GETs in a full listing; the index needs none of it.
                        handled.clear();
                    }
                    handled.insert(id, marker_ms);
                }
                Ok(Processed::NotYet) => {
                    let mut r = this.schedule_retry(&id);
                    // The marker comes just after its entry: looked for again soon, not
                    // after a recognition backoff (a 30 s retry_delay once made a test
                    // wait 30 s for a marker stored a millisecond later).
                    if let Some(stored) = this.retries.lock().unwrap().get_mut(&id) {
                        let soon = Instant::now() + NOT_YET_RETRY.saturating_mul(stored.attempts);
                        stored.next = stored.next.min(soon);
                        r = *stored;
                    }
                    if r.first.elapsed() > NOT_YET_LIMIT {
                        this.retries.lock().unwrap().remove(&id);
                        tracing::warn!(
                            station,
                            order,
                            "announced in the index {} min ago and still no marker: no longer \
                             looked for (an order whose pipeline died gets one from orphan \
                             recovery)",
                            NOT_YET_LIMIT.as_secs() / 60
                        );
                    } else {
                        tracing::debug!(station, order, "marker not stored yet: looked for again");
                    }
                }
                Ok(Processed::Awaiting { delay, first }) => {
                    let delay = if woken { Duration::ZERO } else { delay };
                    {
                        let now = Instant::now();
                        let mut retries = this.retries.lock().unwrap();
                        let r = retries.entry(id.clone()).or_insert(Retry {
                            attempts: 0,
                            first: now,
                            next: now,
                        });
                        r.next = now + delay;
                    }
                    if first {
                        tracing::info!(
                            station,
                            order,
                            "recognised; its expected items are not known yet: awaiting them \
                             for up to {} s (awaiting-order)",
                            this.settings.expected_wait.as_secs()
                        );
                    }
                    if woken {
                        this.hint(station, order);
                    }
                }
                Ok(Processed::Deferred) => {
                    this.schedule_retry(&id);
                    tracing::info!(
                        station,
                        order,
                        "claimed by another orchestrator; looked at again on a later pass \
                         (taken over after {} s without a result)",
                        this.settings.claim_ttl.as_secs()
                    );
                }
                Ok(Processed::RetryLater(why)) => {
                    this.metrics.recognition_retry(station);
                    let r = this.schedule_retry(&id);
                    tracing::warn!(
                        station,
                        order,
                        attempt = r.attempts,
                        "recognition failed, tried again in {:.0} s: {why}",
                        r.next
                            .saturating_duration_since(Instant::now())
                            .as_secs_f64()
                    );
                }
                Err(e) => {
                    // Not handled: tried again after a backoff.
                    this.metrics.error("storage");
                    let r = this.schedule_retry(&id);
                    tracing::warn!(
                        station,
                        order,
                        "not processed, tried again in {:.0} s: {e}",
                        r.next
                            .saturating_duration_since(Instant::now())
                            .as_secs_f64()
                    );
                }
            }
        });
    }

    /// Records one more failed attempt at `id` and when the next may start.
    fn schedule_retry(&self, id: &OrderKey) -> Retry {
        let now = Instant::now();
        let mut retries = self.retries.lock().unwrap();
        let r = retries.entry(id.clone()).or_insert(Retry {
            attempts: 0,
            first: now,
            next: now,
        });
        r.attempts += 1;
        let delay = self
            .settings
            .retry_delay
            .saturating_mul(1 << (r.attempts - 1).min(16))
            .min(MAX_RETRY_DELAY);
        r.next = now + delay;
        *r
    }

    /// Whether a failure of recognition that may pass should wait for another attempt,
    /// and how many attempts this one makes.
    fn attempt_number(&self, id: &OrderKey) -> (u32, bool) {
        match self.retries.lock().unwrap().get(id) {
            None => (1, true),
            Some(r) => (
                r.attempts + 1,
                r.first.elapsed() < self.settings.recognition_retry,
            ),
        }
    }

    /// Handles one marker; `Err` only for storage failures worth a retry.
    async fn process(
        &self,
        (station, order): &OrderKey,
        marker_key: &str,
        listed_ms: Option<i64>,
        discovered: Instant,
    ) -> Result<Processed, StoreError> {
        let start = Instant::now();
        let layout = &self.settings.layout;
        let result_key = layout.result_key(station, order)?;
        let id = (station.clone(), order.clone());
        let mut previous = None;
        // A result that cannot be read is no answer: the order is processed again and the
        // object replaced.
        let mut result_unreadable = false;
        if let Some(existing) = self.store.get(&layout.results_bucket, &result_key).await? {
            match serde_json::from_slice::<OrderResult>(&existing.body) {
                Err(e) => {
                    tracing::warn!(
                        station,
                        order,
                        "result {result_key} is unreadable ({e}); processing the order again"
                    );
                    result_unreadable = true;
                }
                // A result from before revisions existed is final; so is one whose marker
                // was listed unchanged since. The common case costs this one GET.
                Ok(r)
                    if r.revision == 0
                        || same_marker_version(listed_ms, r.marker_last_modified_ms) =>
                {
                    let marker_ms = listed_ms.or(r.marker_last_modified_ms);
                    self.results.lock().unwrap().insert(id, r);
                    return Ok(Processed::Done { marker_ms });
                }
                Ok(r) => previous = Some(r),
            }
        }
        let get_marker = async || match self.store.get(&layout.bucket, marker_key).await? {
            Some(marker) => Ok(marker),
            None => Err(StoreError(format!("marker {marker_key} disappeared"))),
        };
        let (revision, marker) = match previous {
            None => {
                let Some(marker) = self.store.get(&layout.bucket, marker_key).await? else {
                    return Ok(Processed::NotYet);
                };
                if self.settings.claim && !self.claim(station, order, 1).await? {
                    // Not handled: a later look finds its result, or takes over a stale claim.
                    return Ok(Processed::Deferred);
                }
                (1, marker)
            }
            Some(prev) => {
                // The marker may have been replaced: its content decides. One that cannot
                // be read does not replace a result.
                let marker = get_marker().await?;
                let changed = Manifest::from_json(&marker.body).is_ok_and(|m| {
                    manifest_summary(&m) != (prev.manifest_frame_count, prev.manifest_last_unix_ms)
                });
                if !changed {
                    let marker_ms = marker.last_modified_ms.or(listed_ms);
                    self.results.lock().unwrap().insert(id, prev);
                    return Ok(Processed::Done { marker_ms });
                }
                let revision = prev.revision + 1;
                if self.settings.claim && !self.claim(station, order, revision).await? {
                    return Ok(Processed::Deferred);
                }
                tracing::info!(
                    station,
                    order,
                    "marker replaced (the order ID came back); processing it again as \
                     revision {revision}"
                );
                (revision, marker)
            }
        };
        let marker_ms = marker.last_modified_ms.or(listed_ms);
        let queue_s = marker_ms.map(|m| (now_ms() - m).max(0) as f64 / 1000.0);
        let mut timings = Timings {
            discover: ms(start.duration_since(discovered) + start.elapsed()),
            ..Timings::default()
        };
        let mut header = Header {
            station_id: station.clone(),
            order_id: order.clone(),
            recognizer: self.recognizer.name().to_owned(),
            revision,
            marker_last_modified_ms: marker_ms,
            ..Header::default()
        };
        let (attempt, may_wait) = self.attempt_number(&id);
        header.recognition_attempts = attempt;
        let mut instance = String::from("unknown");
        let mut frames_uploaded = 0u64;
        let mut recognition_s = None;
        let parsed = Manifest::from_json(&marker.body);
        let first_frame_ms = parsed.as_ref().ok().and_then(|m| m.first_unix_ms);
        // An order held for its expected items is validated from what was recognised
        // then, as long as it is the same revision of the same marker.
        let held = self.awaiting.lock().unwrap().get(&id).cloned();
        let held = match held {
            Some(h)
                if h.revision == revision
                    && parsed
                        .as_ref()
                        .is_ok_and(|m| manifest_summary(m) == h.manifest) =>
            {
                Some(h)
            }
            Some(_) => {
                self.awaiting.lock().unwrap().remove(&id);
                None
            }
            None => None,
        };
        let mut first_discovered = discovered;
        let outcome = if let Some(h) = &held {
            header = h.header.clone();
            timings = h.timings.clone();
            instance = h.instance.clone();
            frames_uploaded = h.frames_uploaded;
            recognition_s = h.recognition_s;
            first_discovered = h.discovered;
            h.outcome.clone()
        } else {
            match parsed {
                Err(e) => Outcome::BadManifest(format!("manifest {marker_key}: {e}")),
                Ok(m) if m.station_id != *station || m.order_id != *order => {
                    Outcome::BadManifest(format!(
                        "manifest {marker_key} names station {} order {}",
                        m.station_id, m.order_id
                    ))
                }
                Ok(manifest) => {
                    (header.manifest_frame_count, header.manifest_last_unix_ms) =
                        manifest_summary(&manifest);
                    instance = manifest.pipeline_instance.clone();
                    frames_uploaded = manifest.frames.len() as u64;
                    self.recognise(&manifest, &mut timings, &mut recognition_s)
                        .await?
                }
            }
        };
        if let Outcome::RecognitionFailed {
            error,
            transient: true,
            ..
        } = &outcome
            && may_wait
        {
            return Ok(Processed::RetryLater(error.clone()));
        }
        let t = Instant::now();
        // A number the till reused is stored as `{order}.{n}`; the till knows it by the bare
        // ID, and what it stored before the previous order with that number ended is that
        // order's.
        let (slip, occurrence) = oa_contract::split_order_key(order);
        let not_before = first_frame_ms
            .filter(|_| occurrence > 1)
            .map(|first| first as i64 - self.settings.reuse_after.as_millis() as i64);
        let expected = self.expected.lookup_since(slip, not_before).await?;
        if expected.is_none() && matches!(outcome, Outcome::Recognized { .. }) {
            let since = held.as_ref().map_or_else(Instant::now, |h| h.since);
            let waited = since.elapsed();
            if waited < self.settings.expected_wait {
                let checks = held.as_ref().map_or(0, |h| h.checks + 1);
                let mut awaiting = self.awaiting.lock().unwrap();
                if awaiting.len() < MAX_AWAITING || awaiting.contains_key(&id) {
                    awaiting.insert(
                        id.clone(),
                        Awaiting {
                            since,
                            discovered: first_discovered,
                            checks,
                            revision,
                            manifest: (header.manifest_frame_count, header.manifest_last_unix_ms),
                            header: header.clone(),
                            outcome: outcome.clone(),
                            timings: timings.clone(),
                            instance: instance.clone(),
                            frames_uploaded,
                            recognition_s,
                        },
                    );
                    drop(awaiting);
                    let mut shown = evaluate::evaluate(header, outcome, None, &self.inventory);
                    shown.validation.status = OrderStatus::AwaitingOrder;
                    shown.timings_ms = timings;
                    self.results.lock().unwrap().insert(id, shown);
                    let delay = self
                        .settings
                        .retry_delay
                        .saturating_mul(1 << checks.min(16))
                        .min(MAX_RETRY_DELAY)
                        .min(self.settings.expected_wait - waited);
                    return Ok(Processed::Awaiting {
                        delay,
                        first: held.is_none(),
                    });
                }
                drop(awaiting);
                tracing::warn!(
                    station,
                    order,
                    "{MAX_AWAITING} orders already await their expected items; this one is \
                     unknown-order now"
                );
            }
        }
        if let Some((source, _)) = &expected
            && held.is_some()
        {
            tracing::info!(
                station,
                order,
                ?source,
                "expected items arrived; validating the recognised items"
            );
        }
        let mut result = evaluate::evaluate(
            header,
            outcome,
            expected.as_ref().map(|(_, items)| items.as_slice()),
            &self.inventory,
        );
        timings.validate = ms(t.elapsed());
        timings.total = ms(start.duration_since(first_discovered) + start.elapsed());
        result.timings_ms = timings;
        let body = serde_json::to_vec_pretty(&result).expect("result serialises");
        // Its outbox objects before the result: a crash in between leaves the event to be
        // delivered, under the ID the order's retry announces again.
        let events = self.events.lock().unwrap().clone();
        let staged = match &events {
            Some(e) => Some(e.stage(crate::events::order_event(&result)).await?),
            None => None,
        };
        if revision == 1 && !result_unreadable {
            // Fenced: a replica whose claim was taken over while it worked must not
            // overwrite the result of the one that took it over.
            if !self
                .store
                .put_if_absent(&layout.results_bucket, &result_key, body)
                .await?
            {
                tracing::info!(
                    station,
                    order,
                    "another orchestrator wrote the result first; keeping theirs"
                );
                if let Some(theirs) = self.store.get(&layout.results_bucket, &result_key).await?
                    && let Ok(r) = serde_json::from_slice::<OrderResult>(&theirs.body)
                {
                    self.results.lock().unwrap().insert(id, r);
                }
                return Ok(Processed::Done { marker_ms });
            }
        } else {
            self.store
                .put(
                    &layout.results_bucket,
                    &result_key,
                    body,
                    "application/json",
                )
                .await?;
        }
        let latency_s = marker_ms.map(|m| (now_ms() - m).max(0) as f64 / 1000.0);
        let status = result.validation.status.as_str();
        self.metrics.order(&OrderObservation {
            station,
            status,
            pipeline_instance: &instance,
            frames: frames_uploaded,
            latency_s,
            queue_s,
            recognition_s,
        });
        tracing::info!(
            station,
            order,
            status,
            accuracy = result.validation.accuracy,
            latency_ms = latency_s.map(|s| (s * 1000.0).round() as u64),
            revision,
            error = result.error.as_deref(),
            "order processed"
        );
        self.processed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.results
            .lock()
            .unwrap()
            .insert((station.clone(), order.clone()), result);
        // After the result is readable through the API too.
        if let (Some(events), Some(staged)) = (&events, staged) {
            events.publish(staged);
        }
        Ok(Processed::Done { marker_ms })
    }

    /// Loads the manifest's frames, selects the best and recognises their items; at most
    /// [`frames::MAX_FRAMES_IN_MEMORY`] frames are in memory at once ([`frames`]).
    async fn recognise(
        &self,
        manifest: &Manifest,
        timings: &mut Timings,
        recognition_s: &mut Option<f64>,
    ) -> Result<Outcome, StoreError> {
        let (station, order) = (&manifest.station_id, &manifest.order_id);
        let k = self.settings.frames_per_order.max(1);
        let picked = frames::select(
            &self.store,
            &self.settings.layout.bucket,
            &manifest.frames,
            k,
            self.detector.clone(),
        )
        .await?;
        timings.load = ms(picked.load);
        let missing = &picked.missing;
        if !missing.is_empty() {
            tracing::warn!(
                station,
                order,
                "{} of {} frames missing ({})",
                missing.len(),
                manifest.frames.len(),
                missing.join(", ")
            );
        }
        if picked.loaded == 0 {
            return Ok(Outcome::NoFrames(if manifest.frames.is_empty() {
                "manifest lists no frames".to_owned()
            } else {
                format!(
                    "none of the {} frames named by the manifest could be loaded (missing: {})",
                    manifest.frames.len(),
                    missing.join(", ")
                )
            }));
        }
        timings.select = ms(picked.select);
        let frames: Vec<Frame> = match picked.chosen {
            Err(e) => return Ok(Outcome::SelectionFailed(e.to_string())),
            Ok(chosen) => chosen.into_iter().map(|c| c.frame).collect(),
        };
        let selected: Vec<String> = frames.iter().map(|f| f.key.clone()).collect();
        let t = Instant::now();
        let detected = self.recognizer.recognize_with_usage(&frames).await;
        *recognition_s = Some(t.elapsed().as_secs_f64());
        timings.recognize = ms(t.elapsed());
        Ok(match detected {
            Err(e) => Outcome::RecognitionFailed {
                selected,
                error: e.message,
                transient: e.transient,
            },
            Ok(r) => {
                if let Some(t) = &r.usage {
                    self.metrics.recognition_tokens(t);
                }
                Outcome::Recognized {
                    selected,
                    detected: r.items,
                    tokens: r.usage,
                }
            }
        })
    }
}
