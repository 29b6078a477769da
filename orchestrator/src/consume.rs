//! Discovers completed orders through their `__EOS__` markers and turns each into a
//! result: claim, manifest, frames (named by the manifest, never listed), selection,
//! recognition, validation, `results/{station}/{order}.json`.
//!
//! # Discovery without one request per known order
//! Order IDs are not monotonic, so "list after the newest key" misses orders. Instead each
//! station has a *cursor* into its key space `{prefix}{station}/`:
//! * on start, one full scan (every page) finds every marker, so orders whose result is
//!   missing after a crash are processed;
//! * then every poll makes exactly **one** `ListObjectsV2` request per station: the next
//!   page (`list_page_size` keys) after the cursor, wrapping to the start when the listing
//!   is exhausted. Requests per poll are constant; a full cycle takes
//!   `keys / list_page_size` polls, so a marker is found at the latest one cycle after it
//!   is written;
//! * the station pipeline announces every stored marker on its bus (`order-stored`,
//!   printed by `gst-launch-1.0 -m`); the supervisor passes those to [`Consumer::hint`],
//!   which fetches that one marker at once. The cycle is the safety net for lost hints.
//!
//! Markers already handled are remembered in memory with their LastModified, so a cycle
//! only costs the LIST.
//!
//! # A repeated order ID
//! When an order ID comes back at a station after its marker was written, the sink writes
//! a new marker that lists the frames of every segment of the order (a superset). A
//! handled order is looked at again when the listing shows its marker with another
//! LastModified (compared at whole seconds) or when a hint names it; the marker's
//! `frame_count` and `last_unix_ms` against those recorded in the result decide. A changed
//! marker is processed again: the result is overwritten with `revision` one higher. After
//! a restart, the result's recorded `marker_last_modified_ms` is compared with the listing,
//! so an unchanged order still costs one GET of its result.
//!
//! # Exactly once
//! An order whose result object exists is done (across restarts). Before processing, an
//! order is claimed with a conditional PUT (`If-None-Match: *`) of `claims/{station}/{order}`
//! holding the owner name; a claim held by another owner means another orchestrator does
//! the order (it is looked at again on later passes until its result appears). A claim of
//! our own owner name (same host after a restart) is ours; one of another owner older than
//! `claim_ttl` with still no result is taken over through a conditional PUT of
//! `claims/{station}/{order}.takeover-{claimed_unix_ms}`, which exactly one contender wins.
//! Processing a replaced marker again claims `claims/{station}/{order}.rev{revision}`
//! (the revision the new result will carry) the same way, so exactly one replica does it,
//! and one that reads the result before the winner wrote it waits for the next revision.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oa_contract::{MARKER_NAME, Manifest, ParsedKey, parse_key};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::detector::Detector;
use crate::metrics::{Metrics, OrderObservation, log};
use crate::orders::{Inventory, Orders};
use crate::recognize::{Frame, Recognizer};
use crate::result::{OrderResult, OrderStatus, Timings};
use crate::store::{Layout, Store, StoreError};

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
}

/// Default owner name: `OA_INSTANCE_ID`, else the host name.
pub fn default_owner() -> String {
    std::env::var("OA_INSTANCE_ID")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "orchestrator".into())
}

type OrderKey = (String, String);

/// What became of a marker.
enum Processed {
    /// Its result is up to date (written now or before); looked at again only when the
    /// marker changes. `marker_ms` is the LastModified of the marker it stands for.
    Done { marker_ms: Option<i64> },
    /// Another orchestrator holds a fresh claim on it.
    Deferred,
}

/// Called with the station ID of every new marker.
pub type MarkerCallback = Box<dyn Fn(&str) + Send + Sync>;

/// Orders being or already handled, and the results known to this process.
pub struct Consumer {
    store: Store,
    settings: Settings,
    recognizer: Arc<dyn Recognizer>,
    orders: Arc<Orders>,
    inventory: Arc<Inventory>,
    metrics: Arc<Metrics>,
    /// Optional object detector for frame selection.
    detector: Option<Arc<Detector>>,
    results: Mutex<BTreeMap<OrderKey, OrderResult>>,
    /// Orders whose result is up to date, with the LastModified of their marker.
    handled: Mutex<HashMap<OrderKey, Option<i64>>>,
    in_flight: Mutex<HashSet<OrderKey>>,
    cursors: Mutex<HashMap<String, Option<String>>>,
    limit: Arc<Semaphore>,
    hints: Mutex<Option<mpsc::UnboundedSender<OrderKey>>>,
    progress: Mutex<Option<MarkerCallback>>,
    processed: std::sync::atomic::AtomicU64,
    /// Outcome of the latest marker listing: `Err` holds why the store could not be read.
    storage: Mutex<Option<Result<(), String>>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Two LastModified values name the same version of a marker. Compared at whole seconds:
/// an HTTP `Last-Modified` header has none of the milliseconds some listings carry, and
/// two versions of one marker are seconds apart (new frames of the order arrive at the
/// pipeline's frame rate in between). A hint is compared by content, never by this.
fn same_marker_version(a: Option<i64>, b: Option<i64>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a.div_euclid(1000) == b.div_euclid(1000))
}

/// What a result records of the manifest it was computed from.
fn manifest_summary(m: &Manifest) -> (Option<u32>, Option<u64>) {
    (Some(m.frame_count), m.last_unix_ms)
}

impl Consumer {
    pub fn new(
        store: Store,
        settings: Settings,
        recognizer: Arc<dyn Recognizer>,
        orders: Arc<Orders>,
        inventory: Arc<Inventory>,
        metrics: Arc<Metrics>,
    ) -> Arc<Consumer> {
        Consumer::with_detector(
            store, settings, recognizer, orders, inventory, metrics, None,
        )
    }

    /// Like [`Consumer::new`], with an optional object detector for frame selection
    /// (see [`crate::select::select_frames_with`]).
    pub fn with_detector(
        store: Store,
        settings: Settings,
        recognizer: Arc<dyn Recognizer>,
        orders: Arc<Orders>,
        inventory: Arc<Inventory>,
        metrics: Arc<Metrics>,
        detector: Option<Arc<Detector>>,
    ) -> Arc<Consumer> {
        Arc::new(Consumer {
            limit: Arc::new(Semaphore::new(settings.max_concurrent_orders.max(1))),
            store,
            settings,
            recognizer,
            orders,
            inventory,
            metrics,
            detector,
            results: Mutex::new(BTreeMap::new()),
            handled: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
            cursors: Mutex::new(HashMap::new()),
            hints: Mutex::new(None),
            progress: Mutex::new(None),
            processed: std::sync::atomic::AtomicU64::new(0),
            storage: Mutex::new(None),
        })
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
    pub fn hint(&self, station: &str, order: &str) {
        if let Some(tx) = self.hints.lock().unwrap().as_ref() {
            let _ = tx.send((station.to_owned(), order.to_owned()));
        }
    }

    /// Results written or found by this process.
    pub fn results(&self) -> Vec<OrderResult> {
        self.results.lock().unwrap().values().cloned().collect()
    }

    pub fn result(&self, station: &str, order: &str) -> Option<OrderResult> {
        self.results
            .lock()
            .unwrap()
            .get(&(station.to_owned(), order.to_owned()))
            .cloned()
    }

    /// Orders this process processed itself (wrote the result of).
    pub fn processed_count(&self) -> u64 {
        self.processed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Orders discovered and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().unwrap().len()
    }

    /// Full scan, then one page per station per poll, until `shutdown`; waits for the
    /// orders in flight before returning.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        *self.hints.lock().unwrap() = Some(tx);
        for station in self.settings.stations.clone() {
            loop {
                match self.poll_station(&station).await {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        log(format_args!("{station} initial scan: {e}"));
                        break;
                    }
                }
            }
        }
        let mut tick = tokio::time::interval(self.settings.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    for station in self.settings.stations.clone() {
                        if let Err(e) = self.poll_station(&station).await {
                            self.metrics.error("list");
                            log(format_args!("{station} marker discovery: {e}"));
                        }
                    }
                }
                Some((station, order)) = rx.recv() => {
                    if let Ok(key) = oa_contract::marker_key(&self.settings.layout.prefix, &station, &order) {
                        self.clone().found(&station, &order, &key, None, true);
                    }
                }
                _ = crate::supervise::stopped(&mut shutdown) => break,
            }
        }
        *self.hints.lock().unwrap() = None;
        // Let the orders in flight finish (bounded).
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One LIST page of `station` from its cursor; `true` when more pages follow.
    pub async fn poll_station(self: &Arc<Self>, station: &str) -> Result<bool, StoreError> {
        let prefix = oa_contract::station_prefix(&self.settings.layout.prefix, station)
            .map_err(|e| StoreError(format!("station {station:?}: {e}")))?;
        let cursor = self.cursors.lock().unwrap().get(station).cloned().flatten();
        self.metrics.list_request(station);
        let listed = self
            .store
            .list_page(
                &self.settings.layout.bucket,
                &prefix,
                cursor.as_deref(),
                self.settings.list_page_size,
            )
            .await;
        *self.storage.lock().unwrap() = Some(match &listed {
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        });
        let (keys, more) = listed?;
        let next = if more {
            keys.last().map(|k| k.key.clone())
        } else {
            None
        };
        self.cursors
            .lock()
            .unwrap()
            .insert(station.to_owned(), next.clone());
        for k in keys {
            if !k.key.ends_with(MARKER_NAME) {
                continue;
            }
            if let Ok(ParsedKey::Marker { station: s, order }) =
                parse_key(&self.settings.layout.prefix, &k.key)
                && s == station
            {
                self.clone()
                    .found(&s, &order, &k.key, k.last_modified_ms, false);
            }
        }
        Ok(next.is_some())
    }

    /// A marker was listed (with its LastModified) or `hinted` (announced by the pipeline).
    fn found(
        self: Arc<Self>,
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
        if !self.in_flight.lock().unwrap().insert(id.clone()) {
            return;
        }
        self.metrics.marker_seen(station);
        if let Some(f) = self.progress.lock().unwrap().as_ref() {
            f(station);
        }
        let key = key.to_owned();
        let discovered = Instant::now();
        tokio::spawn(async move {
            let Ok(_permit) = self.limit.clone().acquire_owned().await else {
                return;
            };
            let outcome = self.process(&id, &key, marker_ms, discovered).await;
            self.in_flight.lock().unwrap().remove(&id);
            match outcome {
                Ok(Processed::Done { marker_ms }) => {
                    self.handled.lock().unwrap().insert(id, marker_ms);
                }
                Ok(Processed::Deferred) => {
                    log(format_args!(
                        "{} order {} is claimed by another orchestrator; looked at again \
                         on a later pass (taken over after {} s without a result)",
                        id.0,
                        id.1,
                        self.settings.claim_ttl.as_secs()
                    ));
                }
                Err(e) => {
                    // Not handled: the next discovery cycle retries it.
                    self.metrics.error("storage");
                    log(format_args!(
                        "{} order {} not processed (will retry): {e}",
                        id.0, id.1
                    ));
                }
            }
        });
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
        let result_key = layout.result_key(station, order);
        let id = (station.clone(), order.clone());
        let mut previous = None;
        if let Some(existing) = self.store.get(&layout.results_bucket, &result_key).await? {
            let Ok(r) = serde_json::from_slice::<OrderResult>(&existing.body) else {
                return Ok(Processed::Done {
                    marker_ms: listed_ms,
                });
            };
            // A result from before revisions existed is final; so is one whose marker was
            // listed unchanged since. The common case costs this one GET.
            if r.revision == 0 || same_marker_version(listed_ms, r.marker_last_modified_ms) {
                let marker_ms = listed_ms.or(r.marker_last_modified_ms);
                self.results.lock().unwrap().insert(id, r);
                return Ok(Processed::Done { marker_ms });
            }
            previous = Some(r);
        }
        let get_marker = async || match self.store.get(&layout.bucket, marker_key).await? {
            Some(marker) => Ok(marker),
            None => Err(StoreError(format!("marker {marker_key} disappeared"))),
        };
        let (revision, marker) = match previous {
            None => {
                if self.settings.claim && !self.claim(station, order, 1).await? {
                    // Not handled: a later pass finds its result, or takes over a stale claim.
                    return Ok(Processed::Deferred);
                }
                (1, get_marker().await?)
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
                log(format_args!(
                    "{station} order {order}: its marker was replaced (the order ID came \
                     back); processing it again as revision {revision}"
                ));
                (revision, marker)
            }
        };
        let marker_ms = marker.last_modified_ms.or(listed_ms);
        let queue_s = marker_ms.map(|m| (now_ms() - m).max(0) as f64 / 1000.0);
        let mut timings = Timings {
            discover: ms(start.duration_since(discovered) + start.elapsed()),
            ..Timings::default()
        };
        let mut result = OrderResult {
            order_id: order.clone(),
            station_id: station.clone(),
            status: OrderStatus::NoFrames,
            expected: self
                .orders
                .get(order)
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
            detected: vec![],
            matched: vec![],
            missing: vec![],
            extra: vec![],
            quantity_mismatch: vec![],
            accuracy: 0.0,
            selected_frames: vec![],
            recognizer: self.recognizer.name().to_owned(),
            timings_ms: Timings::default(),
            error: None,
            revision,
            manifest_frame_count: None,
            manifest_last_unix_ms: None,
            marker_last_modified_ms: marker_ms,
        };
        let mut instance = String::from("unknown");
        let mut frames_uploaded = 0u64;
        let mut recognition_s = None;
        match Manifest::from_json(&marker.body) {
            Err(e) => result.error = Some(format!("manifest {marker_key}: {e}")),
            Ok(m) if m.station_id != *station || m.order_id != *order => {
                result.error = Some(format!(
                    "manifest {marker_key} names station {} order {}",
                    m.station_id, m.order_id
                ))
            }
            Ok(manifest) => {
                (result.manifest_frame_count, result.manifest_last_unix_ms) =
                    manifest_summary(&manifest);
                instance = manifest.pipeline_instance.clone();
                frames_uploaded = manifest.frames.len() as u64;
                let t = Instant::now();
                let (loaded, missing) = self.load_frames(&manifest).await?;
                timings.load = ms(t.elapsed());
                if !missing.is_empty() {
                    log(format_args!(
                        "{station} order {order}: {} of {} frames missing ({})",
                        missing.len(),
                        manifest.frames.len(),
                        missing.join(", ")
                    ));
                }
                if loaded.is_empty() {
                    result.error = Some(if manifest.frames.is_empty() {
                        "manifest lists no frames".to_owned()
                    } else {
                        format!(
                            "none of the {} frames named by the manifest could be loaded (missing: {})",
                            manifest.frames.len(),
                            missing.join(", ")
                        )
                    });
                } else {
                    let t = Instant::now();
                    let bodies: Vec<Vec<u8>> = loaded.iter().map(|f| f.jpeg.clone()).collect();
                    let k = self.settings.frames_per_order.max(1);
                    let selected = match self.detector.clone() {
                        None => crate::select::select_frames(&bodies, k),
                        // Model inference is CPU-bound: keep it off the async workers.
                        Some(d) => tokio::task::spawn_blocking(move || {
                            crate::select::select_frames_with(&bodies, k, Some(&d))
                        })
                        .await
                        .unwrap_or_else(|e| {
                            Err(crate::select::SelectError::Failed(format!(
                                "selection task failed: {e}"
                            )))
                        }),
                    };
                    timings.select = ms(t.elapsed());
                    match selected {
                        Err(e) => {
                            result.status = OrderStatus::RecognitionFailed;
                            result.error = Some(format!("frame selection: {e}"));
                        }
                        Ok(idx) => {
                            let frames: Vec<Frame> =
                                idx.iter().map(|i| loaded[*i].clone()).collect();
                            result.selected_frames = frames.iter().map(|f| f.key.clone()).collect();
                            let t = Instant::now();
                            let detected = self.recognizer.recognize(&frames).await;
                            recognition_s = Some(t.elapsed().as_secs_f64());
                            timings.recognize = ms(t.elapsed());
                            match detected {
                                Err(e) => {
                                    result.status = OrderStatus::RecognitionFailed;
                                    result.error = Some(format!("recognition: {e}"));
                                }
                                Ok(detected) => {
                                    let t = Instant::now();
                                    let v = crate::validate::validate(
                                        self.orders.get(order),
                                        &detected,
                                        &self.inventory,
                                    );
                                    timings.validate = ms(t.elapsed());
                                    result.status = v.status;
                                    result.expected = v.expected;
                                    result.detected = v.detected;
                                    result.matched = v.matched;
                                    result.missing = v.missing;
                                    result.extra = v.extra;
                                    result.quantity_mismatch = v.quantity_mismatch;
                                    result.accuracy = v.accuracy;
                                }
                            }
                        }
                    }
                }
            }
        }
        timings.total = ms(start.duration_since(discovered) + start.elapsed());
        result.timings_ms = timings;
        let body = serde_json::to_vec_pretty(&result).expect("result serialises");
        self.store
            .put(
                &layout.results_bucket,
                &result_key,
                body,
                "application/json",
            )
            .await?;
        let latency_s = marker_ms.map(|m| (now_ms() - m).max(0) as f64 / 1000.0);
        let status = serde_json::to_value(result.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        self.metrics.order(&OrderObservation {
            station,
            status: &status,
            pipeline_instance: &instance,
            frames: frames_uploaded,
            latency_s,
            queue_s,
            recognition_s,
        });
        log(format_args!(
            "{station} order {order} {status} accuracy={:.2} latency_ms={}{}{}",
            result.accuracy,
            latency_s.map_or_else(|| "unknown".to_owned(), |s| format!("{:.0}", s * 1000.0)),
            result
                .error
                .as_deref()
                .map(|e| format!(" error={e:?}"))
                .unwrap_or_default(),
            if revision > 1 {
                format!(" revision={revision}")
            } else {
                String::new()
            }
        ));
        self.processed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.results
            .lock()
            .unwrap()
            .insert((station.clone(), order.clone()), result);
        Ok(Processed::Done { marker_ms })
    }

    /// `true` when this orchestrator owns result `revision` of the order now.
    async fn claim(&self, station: &str, order: &str, revision: u32) -> Result<bool, StoreError> {
        let layout = &self.settings.layout;
        let key = layout.claim_key(station, order, revision);
        let body = serde_json::json!({ "owner": self.settings.owner, "claimed_unix_ms": now_ms() });
        if self
            .store
            .put_if_absent(&layout.results_bucket, &key, body.to_string().into_bytes())
            .await?
        {
            return Ok(true);
        }
        let Some(existing) = self.store.get(&layout.results_bucket, &key).await? else {
            return Ok(false);
        };
        let claim = serde_json::from_slice::<serde_json::Value>(&existing.body).ok();
        let owner = claim.as_ref().and_then(|v| v["owner"].as_str());
        if owner == Some(self.settings.owner.as_str()) {
            return Ok(true);
        }
        let claimed_ms = claim
            .as_ref()
            .and_then(|v| v["claimed_unix_ms"].as_i64())
            .or(existing.last_modified_ms)
            .unwrap_or(0);
        if now_ms() - claimed_ms < self.settings.claim_ttl.as_millis() as i64 {
            return Ok(false);
        }
        // The claimant went quiet. The takeover key is derived from the stale claim, so
        // among several orchestrators exactly one conditional PUT wins it.
        let takeover = format!("{key}.takeover-{claimed_ms}");
        let won = self
            .store
            .put_if_absent(
                &layout.results_bucket,
                &takeover,
                body.to_string().into_bytes(),
            )
            .await?;
        if won {
            log(format_args!(
                "{station} order {order}: claim by {} is {} s old with no result; taken over",
                owner.unwrap_or("?"),
                (now_ms() - claimed_ms) / 1000
            ));
        }
        Ok(won)
    }

    /// The frames the manifest names, in manifest order; missing ones by key.
    async fn load_frames(&self, m: &Manifest) -> Result<(Vec<Frame>, Vec<String>), StoreError> {
        let mut set = tokio::task::JoinSet::new();
        let sem = Arc::new(Semaphore::new(8));
        for (i, f) in m.frames.iter().enumerate() {
            let store = self.store.clone();
            let bucket = self.settings.layout.bucket.clone();
            let key = f.key.clone();
            let sem = sem.clone();
            set.spawn(async move {
                let _p = sem.acquire_owned().await;
                (i, key.clone(), store.get(&bucket, &key).await)
            });
        }
        let mut got: Vec<(usize, Frame)> = vec![];
        let mut missing = vec![];
        while let Some(j) = set.join_next().await {
            let (i, key, res) = j.map_err(|e| StoreError(format!("frame task: {e}")))?;
            match res? {
                Some(o) => got.push((i, Frame { key, jpeg: o.body })),
                None => missing.push(key),
            }
        }
        got.sort_by_key(|(i, _)| *i);
        missing.sort();
        Ok((got.into_iter().map(|(_, f)| f).collect(), missing))
    }
}
