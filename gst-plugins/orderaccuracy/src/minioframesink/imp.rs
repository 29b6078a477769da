use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use oa_contract::messages::{self, field};
use oa_contract::{FrameEntry, IndexKind, Manifest, order_key, split_order_key};
use tokio::runtime::Runtime;
use tokio::sync::{Semaphore, watch};

use super::completed::{self, CompletedOrders};
use super::held::HeldFrames;
use super::progress::ProgressClock;
use super::stored;
use crate::events::OrderComplete;
use crate::meta::{OrderTag, held_for, unix_ms_now};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "minioframesink",
        gst::DebugColorFlags::empty(),
        Some("S3 order frame sink"),
    )
});

// One runtime for every instance: a pipeline per station means many sinks per process,
// and a runtime each would multiply idle threads for no gain.
static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(
            std::thread::available_parallelism()
                .map(|n| n.get().clamp(2, 4))
                .unwrap_or(2),
        )
        .thread_name("minioframesink")
        .build()
        .expect("tokio runtime for minioframesink")
});

const DEFAULT_ENDPOINT_URI: &str = "";
const DEFAULT_BUCKET: &str = "frames";
const DEFAULT_PREFIX: &str = "";
const DEFAULT_REGION: &str = "us-east-1";
const DEFAULT_FORCE_PATH_STYLE: bool = true;
const DEFAULT_MAX_IN_FLIGHT: u32 = 4;
const DEFAULT_MAX_BUFFERED: u32 = 64;
const DEFAULT_RETRY_ATTEMPTS: u32 = 8;
const DEFAULT_RETRY_BACKOFF_MS: u32 = 100;
const DEFAULT_RETRY_BACKOFF_MAX_MS: u32 = 5_000;
const DEFAULT_REQUEST_TIMEOUT_MS: u32 = 10_000;
const DEFAULT_PRE_ROLL: u32 = 1;
const DEFAULT_PIPELINE_INSTANCE: &str = "";
const DEFAULT_PROGRESS_INTERVAL_S: u32 = 1;
const DEFAULT_REUSE_AFTER_S: u32 = 1_800;
/// Longest the streaming thread waits, when an order starts, to learn whether the order
/// was stored before (the GET of its marker and the LIST of its prefix, together: the LIST
/// finds frames stored without a marker, or after it): on a healthy store the answers (usually 404 and an empty listing)
/// take milliseconds; in an outage this bounds the stall (frames keep arriving at 1/s)
/// instead of the full retry budget of an upload.
const MARKER_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, Clone)]
struct Settings {
    endpoint_uri: String,
    bucket: String,
    prefix: String,
    region: String,
    force_path_style: bool,
    max_in_flight: u32,
    max_buffered: u32,
    retry_attempts: u32,
    retry_backoff_ms: u32,
    retry_backoff_max_ms: u32,
    request_timeout_ms: u32,
    pre_roll: u32,
    pipeline_instance: String,
    progress_interval_s: u32,
    reuse_after_s: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            endpoint_uri: DEFAULT_ENDPOINT_URI.into(),
            bucket: DEFAULT_BUCKET.into(),
            prefix: DEFAULT_PREFIX.into(),
            region: DEFAULT_REGION.into(),
            force_path_style: DEFAULT_FORCE_PATH_STYLE,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_buffered: DEFAULT_MAX_BUFFERED,
            retry_attempts: DEFAULT_RETRY_ATTEMPTS,
            retry_backoff_ms: DEFAULT_RETRY_BACKOFF_MS,
            retry_backoff_max_ms: DEFAULT_RETRY_BACKOFF_MAX_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            pre_roll: DEFAULT_PRE_ROLL,
            pipeline_instance: DEFAULT_PIPELINE_INSTANCE.into(),
            progress_interval_s: DEFAULT_PROGRESS_INTERVAL_S,
            reuse_after_s: DEFAULT_REUSE_AFTER_S,
        }
    }
}

impl Settings {
    fn endpoint_name(&self) -> String {
        if self.endpoint_uri.is_empty() {
            format!("the default AWS S3 endpoint of region {}", self.region)
        } else {
            self.endpoint_uri.clone()
        }
    }
}

#[derive(Default)]
struct Counters {
    frames_received: AtomicU64,
    frames_uploaded: AtomicU64,
    frames_dropped_untagged: AtomicU64,
    bytes_uploaded: AtomicU64,
    markers_written: AtomicU64,
    orders_repeated: AtomicU64,
    orders_resumed: AtomicU64,
    orders_reused: AtomicU64,
}

impl Counters {
    fn reset(&self) {
        for c in [
            &self.frames_received,
            &self.frames_uploaded,
            &self.frames_dropped_untagged,
            &self.bytes_uploaded,
            &self.markers_written,
            &self.orders_repeated,
            &self.orders_resumed,
            &self.orders_reused,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// `(station, order)`: the order as its slip names it, or (once [`MinioFrameSink::begin_order`]
/// chose where it is stored) `(station, order key)`.
type OrderId = (String, String);

/// Frames an order already has in the store when it starts here.
enum Earlier {
    /// Listed by its marker (remembered, or read with one GET): the order's ID came back
    /// after the order was completed.
    Marker(Vec<FrameEntry>),
    /// Found by listing its prefix, with no marker: a pipeline stopped (killed, crashed)
    /// in the middle of the order, and this one resumes it.
    Listed(Vec<FrameEntry>),
}

impl Earlier {
    fn frames(&self) -> &[FrameEntry] {
        match self {
            Earlier::Marker(f) | Earlier::Listed(f) => f,
        }
    }
}

#[derive(Debug, Default)]
struct OrderProgress {
    /// Frames of the order's earlier segments (its ID came back after its marker was
    /// written, or a stopped pipeline stored them without one): listed first in its new
    /// marker; `next_seq` continues after them.
    earlier: Vec<FrameEntry>,
    next_seq: u32,
    /// Frame PUTs of this order not yet finished.
    pending: usize,
    /// Frames that carried this order's tag (pre-rolled frames are not counted), to
    /// compare with what `eosmarker` says it let through.
    tagged: u32,
    stored: Vec<FrameEntry>,
}

/// What the upload tasks and the streaming thread agree on, under one lock with a
/// condition variable so every blocking wait is woken by `unlock()` too.
#[derive(Default)]
struct Progress {
    flushing: bool,
    /// The first upload that failed for good; every later render and event fails.
    failed: Option<String>,
    /// Frames accepted by render() and not stored yet: the back-pressure count.
    buffered: usize,
    /// Frame and marker PUTs not finished yet.
    pending: usize,
    orders: HashMap<OrderId, OrderProgress>,
    markers_done: HashSet<String>,
}

#[derive(Default)]
struct Shared {
    progress: Mutex<Progress>,
    cond: Condvar,
}

enum WaitError {
    Flushing,
    Failed,
}

impl From<WaitError> for gst::FlowError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::Flushing => gst::FlowError::Flushing,
            WaitError::Failed => gst::FlowError::Error,
        }
    }
}

impl Shared {
    /// Blocks until `ready` yields a value; gives up when flushing or once an upload failed.
    fn wait_until<R>(
        &self,
        mut ready: impl FnMut(&mut Progress) -> Option<R>,
    ) -> Result<R, WaitError> {
        let mut p = self.progress.lock().unwrap();
        loop {
            if p.failed.is_some() {
                return Err(WaitError::Failed);
            }
            if let Some(r) = ready(&mut p) {
                return Ok(r);
            }
            if p.flushing {
                return Err(WaitError::Flushing);
            }
            p = self.cond.wait(p).unwrap();
        }
    }

    fn update(&self, f: impl FnOnce(&mut Progress)) {
        f(&mut self.progress.lock().unwrap());
        self.cond.notify_all();
    }
}

#[derive(Debug, Clone, Copy)]
struct RetryPolicy {
    attempts: u32,
    backoff: Duration,
    max_backoff: Duration,
}

/// Everything an upload task needs, shared by all tasks of one start()..stop() run.
struct Uploader {
    client: Client,
    bucket: String,
    retry: RetryPolicy,
    in_flight: Semaphore,
    cancel: watch::Receiver<bool>,
    shared: Arc<Shared>,
    element: glib::WeakRef<super::MinioFrameSink>,
}

fn is_transient<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(e) => {
            let status = e.raw().status().as_u16();
            status >= 500
                || status == 429
                || matches!(
                    e.err().code(),
                    Some("SlowDown" | "RequestTimeout" | "InternalError")
                )
        }
        _ => false,
    }
}

/// What a LIST (every page) found.
#[derive(Default)]
struct Listing {
    /// `(key, size)` of each object.
    objects: Vec<(String, Option<i64>)>,
    /// The common prefixes, when listed with a delimiter.
    folders: Vec<String>,
}

impl Uploader {
    /// Lists `prefix` (every page, with `delimiter` if any) within `limit`; blocks.
    fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        limit: Duration,
    ) -> Result<Listing, String> {
        let pages = async {
            let mut listing = Listing::default();
            let mut token: Option<String> = None;
            loop {
                let out = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(prefix)
                    .set_delimiter(delimiter.map(str::to_owned))
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(|e| DisplayErrorContext(&e).to_string())?;
                listing.objects.extend(
                    out.contents()
                        .iter()
                        .filter_map(|o| Some((o.key()?.to_owned(), o.size()))),
                );
                listing.folders.extend(
                    out.common_prefixes()
                        .iter()
                        .filter_map(|c| c.prefix().map(str::to_owned)),
                );
                match out.next_continuation_token() {
                    Some(next) if out.is_truncated() == Some(true) => {
                        token = Some(next.to_owned());
                    }
                    _ => return Ok::<_, String>(listing),
                }
            }
        };
        // The timer is created inside the runtime.
        match RUNTIME.block_on(async { tokio::time::timeout(limit, pages).await }) {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {limit:?}")),
        }
    }

    async fn put_with_retry(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), String> {
        let mut backoff = self.retry.backoff;
        let mut attempt = 1;
        loop {
            let result = {
                let _permit = self.in_flight.acquire().await.expect("never closed");
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .content_type(content_type)
                    .content_length(body.len() as i64)
                    .body(ByteStream::from(body.clone()))
                    .send()
                    .await
            };
            let err = match result {
                Ok(_) => return Ok(()),
                Err(err) => err,
            };
            let cause = DisplayErrorContext(&err).to_string();
            if !is_transient(&err) {
                return Err(cause);
            }
            if attempt > self.retry.attempts {
                return Err(format!("{cause} (gave up after {attempt} attempts)"));
            }
            gst::warning!(
                CAT,
                "PUT {key} failed (attempt {attempt}), retrying in {backoff:?}: {cause}"
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.retry.max_backoff);
            attempt += 1;
        }
    }

    /// PUTs in the background; `on_stored` runs under the progress lock once stored.
    fn spawn_put(
        self: &Arc<Self>,
        key: String,
        body: Bytes,
        content_type: &'static str,
        on_stored: impl FnOnce(&mut Progress) + Send + 'static,
        on_failed: impl FnOnce(&mut Progress) + Send + 'static,
    ) {
        let this = self.clone();
        self.shared.update(|p| p.pending += 1);
        RUNTIME.spawn(async move {
            let mut cancel = this.cancel.clone();
            let result = tokio::select! {
                r = this.put_with_retry(&key, body, content_type) => r,
                _ = cancel.wait_for(|c| *c) => {
                    Err("the element stopped before the upload finished".to_owned())
                }
            };
            match result {
                Ok(()) => this.shared.update(|p| {
                    p.pending -= 1;
                    on_stored(p);
                }),
                Err(cause) => {
                    let msg = format!("Failed to store s3://{}/{key}: {cause}", this.bucket);
                    gst::error!(CAT, "{msg}");
                    this.shared.update(|p| {
                        p.pending -= 1;
                        on_failed(p);
                        p.failed.get_or_insert(msg.clone());
                    });
                    if let Some(element) = this.element.upgrade() {
                        gst::element_error!(element, gst::ResourceError::Write, ("{msg}"));
                    }
                }
            }
        });
    }
}

/// A frame without an order, pre-rolled or held for one.
struct PreRolled {
    buffer: gst::Buffer,
    unix_ms: u64,
}

struct Started {
    uploader: Arc<Uploader>,
    cancel: watch::Sender<bool>,
    prefix: String,
    pipeline_instance: String,
    max_buffered: usize,
    request_timeout: Duration,
    /// Frames without an order, until it is known where they belong.
    held: HeldFrames<PreRolled>,
    /// The order being collected, as its slip names it and where it is stored; cleared by
    /// its OrderComplete.
    current: Option<(OrderId, OrderId)>,
    /// Frames of recently completed orders, by where they are stored.
    completed: CompletedOrders<OrderId>,
    /// Where an order ID that came back after `reuse_after_ms` is stored (`{order}.{n}`);
    /// kept after its marker so that the slip, briefly out of view, continues it.
    segments: HashMap<OrderId, OrderId>,
    reuse_after_ms: u64,
    /// `unix_ms` of the newest tagged frame: "now" for an OrderComplete none of whose frames
    /// came here (on the clock the frames are stamped with, whatever it is).
    last_unix_ms: u64,
    progress: ProgressClock,
    /// The station of the latest tagged frame, for the progress message.
    station_id: Option<String>,
}

#[derive(Default)]
enum State {
    #[default]
    Stopped,
    Started(Box<Started>),
}

#[derive(Default)]
pub struct MinioFrameSink {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// Replaced at every start(), so that tasks abandoned by a previous run cannot
    /// disturb the accounting of the next one.
    shared: Mutex<Arc<Shared>>,
    counters: Arc<Counters>,
}

#[glib::object_subclass]
impl ObjectSubclass for MinioFrameSink {
    const NAME: &'static str = "OaMinioFrameSink";
    type Type = super::MinioFrameSink;
    type ParentType = gst_base::BaseSink;
}

fn default_pipeline_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}-{}-{}", std::process::id(), unix_ms_now())
}

impl MinioFrameSink {
    fn shared(&self) -> Arc<Shared> {
        self.shared.lock().unwrap().clone()
    }

    fn build_client(settings: &Settings) -> Client {
        let timeout = Duration::from_millis(settings.request_timeout_ms.into());
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(timeout)
            .operation_attempt_timeout(timeout)
            .build();
        // Retries are ours (`retry-attempts`, `retry-backoff`), so that the policy is the
        // one the user configured and a start() probe fails fast.
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(settings.region.clone()))
            .timeout_config(timeouts)
            .retry_config(aws_config::retry::RetryConfig::disabled());
        if !settings.endpoint_uri.is_empty() {
            loader = loader.endpoint_url(settings.endpoint_uri.clone());
        }
        let sdk_config = RUNTIME.block_on(loader.load());
        let config = aws_sdk_s3::config::Builder::from(&sdk_config)
            .force_path_style(settings.force_path_style)
            .build();
        Client::from_conf(config)
    }

    fn head_bucket(&self, client: &Client, settings: &Settings) -> Result<(), gst::ErrorMessage> {
        let bucket = &settings.bucket;
        let endpoint = settings.endpoint_name();
        // The SDK bounds each attempt; this bounds credential resolution too.
        let limit = Duration::from_millis(settings.request_timeout_ms.into()) * 2;
        let result = RUNTIME.block_on(async {
            tokio::time::timeout(limit, client.head_bucket().bucket(bucket).send()).await
        });
        let err = match result {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(err)) => err,
            Err(_) => {
                return Err(gst::error_msg!(
                    gst::ResourceError::OpenWrite,
                    ("S3 endpoint {endpoint} did not answer within {limit:?}")
                ));
            }
        };
        let cause = DisplayErrorContext(&err).to_string();
        gst::debug!(CAT, imp = self, "HeadBucket {bucket} failed: {cause}");
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_owned);
        let refused = matches!(status, Some(401 | 403))
            || matches!(
                code.as_deref(),
                Some("SignatureDoesNotMatch" | "InvalidAccessKeyId" | "AccessDenied")
            );
        if refused {
            return Err(gst::error_msg!(
                gst::ResourceError::NotAuthorized,
                ("S3 endpoint {endpoint} refused the credential for bucket '{bucket}': \
                     check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the AWS profile"),
                ["{cause}"]
            ));
        }
        if status == Some(404) || code.as_deref() == Some("NoSuchBucket") {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                ("Bucket '{bucket}' does not exist at S3 endpoint {endpoint}"),
                ["{cause}"]
            ));
        }
        if status.is_none() && cause.to_ascii_lowercase().contains("credential") {
            return Err(gst::error_msg!(
                gst::ResourceError::NotAuthorized,
                ("No AWS credentials found for S3 endpoint {endpoint}: set \
                     AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or configure an AWS profile"),
                ["{cause}"]
            ));
        }
        match status {
            Some(status) => Err(gst::error_msg!(
                gst::ResourceError::OpenWrite,
                ("S3 endpoint {endpoint} answered HTTP {status} for bucket '{bucket}'"),
                ["{cause}"]
            )),
            None => Err(gst::error_msg!(
                gst::ResourceError::OpenWrite,
                ("Cannot reach S3 endpoint {endpoint}: {cause}")
            )),
        }
    }

    fn count_dropped(&self, why: &str) {
        self.counters
            .frames_dropped_untagged
            .fetch_add(1, Ordering::Relaxed);
        gst::debug!(CAT, imp = self, "Dropping a frame: {why}");
    }

    fn check_failed(&self) -> Result<(), gst::FlowError> {
        if self.shared().progress.lock().unwrap().failed.is_some() {
            return Err(gst::FlowError::Error);
        }
        Ok(())
    }

    /// Hands one frame of `id` to the uploader, blocking while `max-buffered` frames are
    /// already waiting to be stored.
    fn upload_frame(
        &self,
        st: &Started,
        id: &OrderId,
        buffer: gst::Buffer,
        unix_ms: u64,
        tagged: bool,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let max = st.max_buffered;
        let seq = self.shared().wait_until(|p| {
            if p.buffered >= max {
                return None;
            }
            p.buffered += 1;
            let order = p.orders.entry(id.clone()).or_default();
            order.pending += 1;
            order.tagged += u32::from(tagged);
            let seq = order.next_seq;
            order.next_seq += 1;
            Some(seq)
        })?;
        let release = |p: &mut Progress| {
            p.buffered -= 1;
            if let Some(o) = p.orders.get_mut(id) {
                o.pending -= 1;
            }
        };
        let key = match oa_contract::frame_key(&st.prefix, &id.0, &id.1, unix_ms, seq) {
            Ok(key) => key,
            Err(e) => {
                // IDs were validated before; only reachable through a bad `prefix`.
                self.shared().update(release);
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Write,
                    ("Cannot name frame {seq} of order {}: {e}", id.1)
                );
                return Err(gst::FlowError::Error);
            }
        };
        let body = match buffer.into_mapped_buffer_readable() {
            Ok(map) => Bytes::from_owner(map),
            Err(_) => {
                self.shared().update(release);
                gst::element_imp_error!(self, gst::ResourceError::Read, ("Cannot map buffer"));
                return Err(gst::FlowError::Error);
            }
        };
        let entry = FrameEntry {
            key: key.clone(),
            seq,
            unix_ms,
            bytes: body.len() as u64,
        };
        gst::trace!(CAT, imp = self, "Uploading {key} ({} bytes)", entry.bytes);
        let counters = self.counters.clone();
        let (stored_id, failed_id) = (id.clone(), id.clone());
        st.uploader.spawn_put(
            key,
            body,
            "image/jpeg",
            move |p| {
                p.buffered -= 1;
                counters.frames_uploaded.fetch_add(1, Ordering::Relaxed);
                counters
                    .bytes_uploaded
                    .fetch_add(entry.bytes, Ordering::Relaxed);
                let order = p.orders.entry(stored_id).or_default();
                order.pending -= 1;
                order.stored.push(entry);
            },
            move |p| {
                p.buffered -= 1;
                if let Some(o) = p.orders.get_mut(&failed_id) {
                    o.pending -= 1;
                }
            },
        );
        Ok(gst::FlowSuccess::Ok)
    }

    /// Chooses where the order the slip calls `slip` is stored and registers it when it has
    /// no progress yet; returns `(station, order key)`. An order ID that was completed before
    /// (its marker written: remembered, or else found in the store with one GET, with any
    /// frames a LIST finds stored after the marker) continues its `seq` after the stored
    /// frames, and its new marker lists them too; so does an order with frames in the store
    /// and no marker (found with the LIST when the GET answers 404): a pipeline stopped in
    /// its middle, and this one resumes it. When the newest of those frames is
    /// `reuse-after` or more older than `now_ms`, the number came back for another order:
    /// it is stored as the next occurrence, `{order}.{n}` ([`Self::next_occurrence`]).
    fn begin_order(&self, st: &mut Started, slip: &OrderId, now_ms: u64) -> OrderId {
        let mut id = st
            .segments
            .get(slip)
            .cloned()
            .unwrap_or_else(|| slip.clone());
        if self
            .shared()
            .progress
            .lock()
            .unwrap()
            .orders
            .contains_key(&id)
        {
            return id;
        }
        let mut earlier = self.earlier_frames(st, &id);
        if let Some(past) = &earlier
            && stored::is_past(past.frames(), now_ms, st.reuse_after_ms)
        {
            (id, earlier) = self.next_occurrence(st, slip, &id, now_ms, earlier);
        }
        if id == *slip {
            st.segments.remove(slip);
        } else {
            if st.segments.len() >= completed::REMEMBERED_ORDERS {
                // Only a lookup saved: without its entry, a slip that comes back finds the
                // occurrence again with the LIST.
                st.segments.clear();
            }
            st.segments.insert(slip.clone(), id.clone());
        }
        let mut order = OrderProgress::default();
        match earlier {
            Some(Earlier::Marker(earlier)) => {
                self.counters
                    .orders_repeated
                    .fetch_add(1, Ordering::Relaxed);
                order.next_seq = stored::next_seq(&earlier);
                gst::info!(
                    CAT,
                    imp = self,
                    "Order {}/{} comes back after its marker was written: its {} stored \
                     frames are kept, seq continues at {}",
                    id.0,
                    id.1,
                    earlier.len(),
                    order.next_seq
                );
                order.earlier = earlier;
            }
            Some(Earlier::Listed(earlier)) => {
                self.counters.orders_resumed.fetch_add(1, Ordering::Relaxed);
                order.next_seq = stored::next_seq(&earlier);
                gst::info!(
                    CAT,
                    imp = self,
                    "Order {}/{} resumed after a restart: {} frames of it were stored \
                     without a marker and are kept (listed first in its marker), seq \
                     continues at {}",
                    id.0,
                    id.1,
                    earlier.len(),
                    order.next_seq
                );
                order.earlier = earlier;
            }
            None => {}
        }
        self.shared().update(|p| {
            p.orders.entry(id.clone()).or_insert(order);
        });
        self.put_index(st, &id, IndexKind::Begin, now_ms);
        id
    }

    /// Announces in the station index (`oa_contract::index`) that `id` began or is getting
    /// its marker; queued before the frame or marker it announces.
    fn put_index(&self, st: &Started, id: &OrderId, kind: IndexKind, unix_ms: u64) {
        // No frame seen yet (an order that completed with none): the wall clock.
        let unix_ms = if unix_ms == 0 { unix_ms_now() } else { unix_ms };
        let entry = oa_contract::IndexEntry {
            station: id.0.clone(),
            order: id.1.clone(),
            kind,
            unix_ms,
        };
        match oa_contract::index_key(&st.prefix, &id.0, &id.1, kind, unix_ms) {
            Ok(key) => {
                gst::trace!(CAT, imp = self, "Index entry {key}");
                st.uploader.spawn_put(
                    key,
                    Bytes::from(entry.to_json()),
                    "application/json",
                    |_| {},
                    |_| {},
                );
            }
            Err(e) => gst::warning!(CAT, imp = self, "No index entry for {}/{}: {e}", id.0, id.1),
        }
    }

    /// The frames the order stored as `id` has already: remembered, or read from the store.
    fn earlier_frames(&self, st: &Started, id: &OrderId) -> Option<Earlier> {
        match st.completed.get(id) {
            Some(frames) => Some(Earlier::Marker(frames.clone())),
            None => self.stored_frames(st, id),
        }
    }

    /// Where order `slip` is stored now that `past` (stored as such, its frames `earlier`)
    /// is over: the latest occurrence a LIST of `{station}/{order}.` finds, when it is still
    /// going on (a slip briefly out of view, a pipeline restarted in its middle), else the
    /// one after it and after `past`. A LIST that fails keeps `past`, as before numbers
    /// could come back.
    fn next_occurrence(
        &self,
        st: &Started,
        slip: &OrderId,
        past: &OrderId,
        now_ms: u64,
        earlier: Option<Earlier>,
    ) -> (OrderId, Option<Earlier>) {
        let latest = match self.latest_occurrence(st, slip) {
            Ok(latest) => latest,
            Err(cause) => {
                gst::warning!(
                    CAT,
                    imp = self,
                    "Order {}/{} comes back more than {} s after its last frame, but its \
                     later occurrences cannot be listed ({cause}): continuing {} as if the \
                     number had not been reused; check the store's LIST permission",
                    slip.0,
                    slip.1,
                    st.reuse_after_ms / 1_000,
                    past.1
                );
                return (past.clone(), earlier);
            }
        };
        if let Some(n) = latest {
            let latest_id = (slip.0.clone(), order_key(&slip.1, n));
            if latest_id != *past {
                let frames = self.earlier_frames(st, &latest_id);
                if let Some(e) = &frames
                    && !stored::is_past(e.frames(), now_ms, st.reuse_after_ms)
                {
                    return (latest_id, frames);
                }
            }
        }
        let next = latest
            .unwrap_or(1)
            .max(split_order_key(&past.1).1)
            .saturating_add(1);
        let newest = earlier
            .as_ref()
            .and_then(|e| e.frames().iter().map(|f| f.unix_ms).max())
            .unwrap_or_default();
        let id = (slip.0.clone(), order_key(&slip.1, next));
        self.counters.orders_reused.fetch_add(1, Ordering::Relaxed);
        gst::info!(
            CAT,
            imp = self,
            "Order number {}/{} comes back {} s after the last frame of {} (reuse-after {} \
             s): a new order, stored as {}; the earlier one is left as it is",
            slip.0,
            slip.1,
            now_ms.saturating_sub(newest) / 1_000,
            past.1,
            st.reuse_after_ms / 1_000,
            id.1
        );
        (id, None)
    }

    /// The highest occurrence (≥ 2) of order `slip` in the store, from one LIST (every page)
    /// of `{station}/{order}.` with the delimiter `/`; `None` when it has none.
    fn latest_occurrence(&self, st: &Started, slip: &OrderId) -> Result<Option<u32>, String> {
        let prefix = oa_contract::occurrences_prefix(&st.prefix, &slip.0, &slip.1)
            .map_err(|e| e.to_string())?;
        let limit = (st.request_timeout * 2).min(MARKER_LOOKUP_TIMEOUT);
        let listing = st.uploader.list(&prefix, Some("/"), limit)?;
        Ok(listing
            .folders
            .iter()
            .filter_map(|c| oa_contract::parse_occurrence_prefix(&st.prefix, &slip.0, &slip.1, c))
            .max())
    }

    /// The frames `id` already has in the store: those its stored marker lists, with any
    /// frame a LIST of its prefix finds that the marker does not list (stored after the
    /// marker: e.g. the orchestrator's `recovered` marker, then a pipeline that continued
    /// the order and was stopped before writing its own), or when there is no marker (404)
    /// those the LIST finds; `None` when there are none (a new order) or they cannot be
    /// read. Both requests together wait at most `MARKER_LOOKUP_TIMEOUT` (or twice
    /// `request-timeout`, if less); a LIST that fails after a marker was read leaves the
    /// marker's frames alone.
    fn stored_frames(&self, st: &Started, id: &OrderId) -> Option<Earlier> {
        let key = oa_contract::marker_key(&st.prefix, &id.0, &id.1).ok()?;
        let prefix = oa_contract::order_prefix(&st.prefix, &id.0, &id.1).ok()?;
        let up = &st.uploader;
        let limit = (st.request_timeout * 2).min(MARKER_LOOKUP_TIMEOUT);
        let started = Instant::now();
        let get = async {
            let out = up
                .client
                .get_object()
                .bucket(&up.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| {
                    let missing = e.raw_response().map(|r| r.status().as_u16()) == Some(404);
                    (missing, DisplayErrorContext(&e).to_string())
                })?;
            let body = out
                .body
                .collect()
                .await
                .map_err(|e| (false, e.to_string()))?;
            Ok::<_, (bool, String)>(body.into_bytes())
        };
        // The timer is created inside the runtime.
        let result = RUNTIME.block_on(async { tokio::time::timeout(limit, get).await });
        let cause = match result {
            Ok(Ok(body)) => match Manifest::from_json(&body) {
                Ok(m) if m.station_id == id.0 && m.order_id == id.1 => {
                    let left = limit.saturating_sub(started.elapsed());
                    return Some(Earlier::Marker(
                        self.with_unlisted(st, id, &key, &prefix, m.frames, left),
                    ));
                }
                Ok(m) => format!("it names order {}/{}", m.station_id, m.order_id),
                Err(e) => e.to_string(),
            },
            Ok(Err((true, _))) => {
                gst::debug!(CAT, imp = self, "No marker {key} yet: listing the order");
                let left = limit.saturating_sub(started.elapsed());
                return match self.list_frames(st, id, &prefix, left) {
                    Ok(frames) if frames.is_empty() => {
                        gst::debug!(
                            CAT,
                            imp = self,
                            "Nothing stored under {prefix}: a new order"
                        );
                        None
                    }
                    Ok(frames) => Some(Earlier::Listed(frames)),
                    Err(cause) => {
                        gst::warning!(
                            CAT,
                            imp = self,
                            "Cannot list {prefix} ({cause}) for frames a stopped pipeline \
                             stored without a marker; treating order {} as new: if it has \
                             such frames, seq starts at 0 again and its marker will list \
                             only the new frames",
                            id.1
                        );
                        None
                    }
                };
            }
            Ok(Err((false, cause))) => cause,
            Err(_) => format!("no answer within {limit:?}"),
        };
        gst::warning!(
            CAT,
            imp = self,
            "Cannot read the existing marker {key} ({cause}); treating order {} as new: \
             if it was stored before, its new marker replaces the old one and lists only the \
             new frames",
            id.1
        );
        None
    }

    /// `marker` (the frames the stored marker `key` lists) with the frames a LIST of
    /// `prefix` within `limit` finds that it does not list; `marker` alone when the LIST
    /// fails.
    fn with_unlisted(
        &self,
        st: &Started,
        id: &OrderId,
        key: &str,
        prefix: &str,
        marker: Vec<FrameEntry>,
        limit: Duration,
    ) -> Vec<FrameEntry> {
        match self.list_frames(st, id, prefix, limit) {
            Ok(listed) => {
                let listed_by_marker = marker.len();
                let frames = stored::with_unlisted(marker, listed);
                if frames.len() > listed_by_marker {
                    gst::info!(
                        CAT,
                        imp = self,
                        "Order {}/{}: {} frames under {prefix} were stored after its marker \
                         {key} (which lists {listed_by_marker}) and are kept too",
                        id.0,
                        id.1,
                        frames.len() - listed_by_marker
                    );
                }
                frames
            }
            Err(cause) => {
                gst::warning!(
                    CAT,
                    imp = self,
                    "Cannot list {prefix} ({cause}) for frames stored after the marker \
                     {key}: continuing order {} after the {} frames the marker lists; frames \
                     stored after it, if any, are left out of its new marker",
                    id.1,
                    marker.len()
                );
                marker
            }
        }
    }

    /// The frames of `id` stored under `prefix` (its order prefix), listed (every page)
    /// within `limit`.
    fn list_frames(
        &self,
        st: &Started,
        id: &OrderId,
        prefix: &str,
        limit: Duration,
    ) -> Result<Vec<FrameEntry>, String> {
        let listing = st.uploader.list(prefix, None, limit)?;
        Ok(stored::listed_frames(
            &st.prefix,
            &id.0,
            &id.1,
            listing.objects,
        ))
    }

    fn complete_order(&self, done: &OrderComplete) -> Result<(), WaitError> {
        let mut state = self.state.lock().unwrap();
        let State::Started(st) = &mut *state else {
            return Ok(());
        };
        let slip: OrderId = (done.station_id.clone(), done.order_id.clone());
        for _ in st.held.drop_order(&slip.1) {
            self.count_dropped("held for an order that completed");
        }
        if let Err(e) = oa_contract::order_prefix(&st.prefix, &slip.0, &slip.1) {
            gst::warning!(CAT, imp = self, "Ignoring OrderComplete: {e}");
            return Ok(());
        }
        // An order none of whose frames came here may still have earlier segments.
        let id = match &st.current {
            Some((current, stored_as)) if *current == slip => stored_as.clone(),
            _ => {
                let now_ms = st.last_unix_ms;
                self.begin_order(st, &slip, now_ms)
            }
        };
        let marker_key = match oa_contract::marker_key(&st.prefix, &id.0, &id.1) {
            Ok(key) => key,
            Err(e) => {
                gst::warning!(CAT, imp = self, "Ignoring OrderComplete: {e}");
                return Ok(());
            }
        };
        let order = self.shared().wait_until(|p| match p.orders.get(&id) {
            Some(o) if o.pending > 0 => None,
            _ => Some(p.orders.remove(&id).unwrap_or_default()),
        })?;
        if st
            .current
            .as_ref()
            .is_some_and(|(current, _)| *current == slip)
        {
            st.current = None;
        }
        if order.tagged != done.frame_count {
            gst::warning!(
                CAT,
                imp = self,
                "Order {}/{}: upstream counted {} frames, {} tagged frames arrived here; \
                 the manifest lists the {} stored",
                id.0,
                id.1,
                done.frame_count,
                order.tagged,
                order.stored.len()
            );
        }
        let earlier = order.earlier.len();
        let mut frames = order.earlier;
        frames.extend(order.stored);
        let manifest = Manifest::new(&id.0, &id.1, done.reason, frames, &st.pipeline_instance);
        let frame_count = manifest.frame_count;
        st.completed.insert(id.clone(), manifest.frames.clone());
        let counters = self.counters.clone();
        let done_key = marker_key.clone();
        let at_ms = manifest.last_unix_ms.unwrap_or(0).max(st.last_unix_ms);
        self.put_index(st, &id, IndexKind::Marker, at_ms);
        st.uploader.spawn_put(
            marker_key.clone(),
            Bytes::from(manifest.to_json()),
            "application/json",
            move |p| {
                counters.markers_written.fetch_add(1, Ordering::Relaxed);
                p.markers_done.insert(done_key);
            },
            |_| {},
        );
        drop(state);
        self.shared()
            .wait_until(|p| p.markers_done.remove(&marker_key).then_some(()))?;
        gst::info!(
            CAT,
            imp = self,
            "Stored order {}/{} ({frame_count} frames, {earlier} of them from earlier \
             segments, {}) with marker {marker_key}",
            id.0,
            id.1,
            done.reason
        );
        let s = gst::Structure::builder(messages::ORDER_STORED)
            .field(field::STATION_ID, id.0.as_str())
            .field(field::ORDER_ID, id.1.as_str())
            .field(field::FRAME_COUNT, frame_count)
            .field(field::REASON, done.reason.as_str())
            .field(field::KEY, marker_key.as_str())
            .build();
        let _ = self
            .obj()
            .post_message(gst::message::Element::builder(s).src(&*self.obj()).build());
        Ok(())
    }

    /// Takes one frame: into the pre-roll when it has no order, else to the uploader.
    fn store_frame(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.check_failed()?;
        let mut state = self.state.lock().unwrap();
        let State::Started(st) = &mut *state else {
            gst::element_imp_error!(self, gst::CoreError::Failed, ("Not started"));
            return Err(gst::FlowError::Error);
        };
        let tag = OrderTag::from_buffer(buffer);
        if let Some(t) = &tag
            && st.station_id.as_ref() != Some(&t.station_id)
        {
            st.station_id = Some(t.station_id.clone());
        }
        let unix_ms = tag
            .as_ref()
            .map(|t| t.unix_ms)
            .filter(|&ms| ms > 0)
            .unwrap_or_else(unix_ms_now);
        let Some(OrderTag {
            station_id,
            order_id: Some(order_id),
            ..
        }) = tag
        else {
            let frame = PreRolled {
                buffer: buffer.clone(),
                unix_ms,
            };
            for _ in st.held.push(frame, held_for(buffer)) {
                self.count_dropped("no order: beyond the pre-roll, or its hold window passed");
            }
            return Ok(gst::FlowSuccess::Ok);
        };
        if let Err(e) = oa_contract::order_prefix(&st.prefix, &station_id, &order_id) {
            // ocrsegment validates IDs; a foreign tagger might not.
            gst::warning!(CAT, imp = self, "Not storing a frame: {e}");
            self.count_dropped("invalid station or order ID");
            return Ok(gst::FlowSuccess::Ok);
        }
        let slip: OrderId = (station_id, order_id);
        st.last_unix_ms = st.last_unix_ms.max(unix_ms);
        let id = match &st.current {
            Some((current, stored_as)) if *current == slip => stored_as.clone(),
            other => {
                if let Some(((station, order), _)) = other {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "Order {station}/{order} has no OrderComplete yet while {}/{} starts; \
                         its marker will be written when its OrderComplete arrives",
                        slip.0,
                        slip.1
                    );
                }
                let id = self.begin_order(st, &slip, unix_ms);
                st.current = Some((slip.clone(), id.clone()));
                id
            }
        };
        // Untagged frames just before this one that belong to this order come first.
        let (belong, dropped) = st.held.take_for(&slip.1);
        for _ in dropped {
            self.count_dropped("held for another order than the next one tagged");
        }
        for pre in belong {
            self.upload_frame(st, &id, pre.buffer, pre.unix_ms, false)?;
        }
        self.upload_frame(st, &id, buffer.clone(), unix_ms, true)
    }

    /// Posts the progress message if `due` says so now.
    fn post_progress(&self, due: fn(&mut ProgressClock, Instant) -> bool) {
        let station_id = {
            let mut state = self.state.lock().unwrap();
            let State::Started(st) = &mut *state else {
                return;
            };
            if !due(&mut st.progress, Instant::now()) {
                return;
            }
            st.station_id.clone()
        };
        let c = &self.counters;
        let s = gst::Structure::builder(messages::SINK_PROGRESS)
            .field_if_some(field::STATION_ID, station_id)
            .field(
                field::FRAMES_RECEIVED,
                c.frames_received.load(Ordering::Relaxed),
            )
            .field(
                field::FRAMES_STORED,
                c.frames_uploaded.load(Ordering::Relaxed),
            )
            .field(
                field::FRAMES_DROPPED,
                c.frames_dropped_untagged.load(Ordering::Relaxed),
            )
            .field(
                field::MARKERS_WRITTEN,
                c.markers_written.load(Ordering::Relaxed),
            )
            .build();
        let _ = self
            .obj()
            .post_message(gst::message::Element::builder(s).src(&*self.obj()).build());
    }

    /// Waits for every frame and marker PUT; run on EOS.
    fn drain(&self) -> Result<(), WaitError> {
        {
            let mut state = self.state.lock().unwrap();
            if let State::Started(st) = &mut *state {
                for _ in st.held.drain() {
                    self.count_dropped("end of stream before their order was tagged");
                }
            }
        }
        let shared = self.shared();
        shared.wait_until(|p| (p.pending == 0).then_some(()))?;
        let p = shared.progress.lock().unwrap();
        for ((station, order), o) in p.orders.iter().filter(|(_, o)| !o.stored.is_empty()) {
            gst::warning!(
                CAT,
                imp = self,
                "Order {station}/{order} has {} stored frames but no OrderComplete arrived: \
                 no marker written",
                o.stored.len()
            );
        }
        Ok(())
    }
}

impl ObjectImpl for MinioFrameSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("endpoint-uri")
                    .nick("Endpoint URI")
                    .blurb(
                        "S3 endpoint, e.g. http://minio:9000; empty resolves the AWS endpoint \
                         of the region. Credentials always come from the AWS environment or \
                         profile (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE)",
                    )
                    .default_value(Some(DEFAULT_ENDPOINT_URI))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("bucket")
                    .nick("Bucket")
                    .blurb("Bucket that receives frames and markers; must exist")
                    .default_value(Some(DEFAULT_BUCKET))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("prefix")
                    .nick("Key prefix")
                    .blurb(
                        "Prepended verbatim to every key: {prefix}{station}/{order}/... \
                         (end it with '/' to make it a folder)",
                    )
                    .default_value(Some(DEFAULT_PREFIX))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("region")
                    .nick("Region")
                    .blurb("AWS region used for signing (any value for MinIO)")
                    .default_value(Some(DEFAULT_REGION))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("force-path-style")
                    .nick("Force path style")
                    .blurb(
                        "Address buckets as http://endpoint/bucket/key (MinIO and most \
                         S3-compatible servers) instead of http://bucket.endpoint/key",
                    )
                    .default_value(DEFAULT_FORCE_PATH_STYLE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-in-flight")
                    .nick("Max in flight")
                    .blurb("Number of PUT requests sent concurrently")
                    .minimum(1)
                    .maximum(256)
                    .default_value(DEFAULT_MAX_IN_FLIGHT)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-buffered")
                    .nick("Max buffered")
                    .blurb(
                        "Frames held in memory while their uploads are pending; when reached, \
                         the sink blocks (back-pressure) until one is stored",
                    )
                    .minimum(1)
                    .maximum(65_536)
                    .default_value(DEFAULT_MAX_BUFFERED)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("retry-attempts")
                    .nick("Retry attempts")
                    .blurb(
                        "Retries of a PUT after a transient failure (5xx, throttling, timeout, \
                         connection error) before the pipeline fails with an error",
                    )
                    .maximum(1_000)
                    .default_value(DEFAULT_RETRY_ATTEMPTS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("retry-backoff")
                    .nick("Retry backoff")
                    .blurb("Delay before the first retry in milliseconds; doubled on each retry")
                    .minimum(1)
                    .maximum(600_000)
                    .default_value(DEFAULT_RETRY_BACKOFF_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("retry-backoff-max")
                    .nick("Maximum retry backoff")
                    .blurb("Upper bound of the delay between retries in milliseconds")
                    .minimum(1)
                    .maximum(600_000)
                    .default_value(DEFAULT_RETRY_BACKOFF_MAX_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("request-timeout")
                    .nick("Request timeout")
                    .blurb(
                        "Limit in milliseconds for connecting and for each request attempt; \
                         also bounds the bucket check at start and the wait for pending \
                         uploads at stop",
                    )
                    .minimum(100)
                    .maximum(3_600_000)
                    .default_value(DEFAULT_REQUEST_TIMEOUT_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("pre-roll")
                    .nick("Pre-roll")
                    .blurb(
                        "Most recent frames without an order (and held for none) kept and \
                         stored with the next order tagged (its first frames are often \
                         captured before the slip is read); older untagged frames are dropped \
                         and counted. Frames held for an order (ocrsegment's hold-frames) are \
                         kept apart from this",
                    )
                    .maximum(1_024)
                    .default_value(DEFAULT_PRE_ROLL)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("pipeline-instance")
                    .nick("Pipeline instance")
                    .blurb(
                        "Written into every manifest to tell pipeline runs apart; empty \
                         generates hostname-pid-unixms at start",
                    )
                    .default_value(Some(DEFAULT_PIPELINE_INSTANCE))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("progress-interval")
                    .nick("Progress interval")
                    .blurb(
                        "Seconds between sink-progress element messages (frames received, \
                         stored and dropped, markers written) while buffers arrive, tagged or \
                         not; one is also posted on reaching PLAYING. A supervisor's liveness \
                         signal. 0 disables them",
                    )
                    .maximum(3_600)
                    .default_value(DEFAULT_PROGRESS_INTERVAL_S)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("reuse-after")
                    .nick("Reuse after")
                    .blurb(
                        "Seconds after the last frame of an order from which its order ID, \
                         seen again at the station, starts a new order (the till reused the \
                         number) stored under {order}.{n} with its own frames and marker; \
                         sooner, the slip was only out of view and the order continues. 0: \
                         an order ID always continues its order",
                    )
                    .default_value(DEFAULT_REUSE_AFTER_S)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-received")
                    .nick("Frames received")
                    .blurb("Buffers rendered since start, tagged or not")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-uploaded")
                    .nick("Frames uploaded")
                    .blurb("Frames stored since start")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-dropped-untagged")
                    .nick("Frames dropped untagged")
                    .blurb(
                        "Frames not stored because they belonged to no order (beyond the \
                         pre-roll; held for an order that did not come back: another order \
                         was tagged first, it completed, or its hold window passed) or carried \
                         an invalid station or order ID",
                    )
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("bytes-uploaded")
                    .nick("Bytes uploaded")
                    .blurb("Frame bytes stored since start (markers not included)")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("markers-written")
                    .nick("Markers written")
                    .blurb("__EOS__ markers stored since start")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("orders-repeated")
                    .nick("Orders repeated")
                    .blurb(
                        "Orders since start whose ID came back after their marker was written \
                         (one of the last 256 completed, else found with one GET of the \
                         marker when the order starts): seq continues after the stored \
                         frames and the new marker lists the frames of every segment. \
                         Orders with frames stored but no marker are counted in \
                         orders-resumed",
                    )
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("orders-reused")
                    .nick("Orders reused")
                    .blurb(
                        "Orders since start whose order ID came back reuse-after seconds or \
                         more after the last frame stored for it: stored as a new occurrence \
                         {order}.{n}",
                    )
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("orders-resumed")
                    .nick("Orders resumed")
                    .blurb(
                        "Orders since start that had frames stored and no marker when they \
                         started here (a pipeline stopped in their middle; found with a LIST \
                         of the order's prefix when the marker GET answers 404): seq \
                         continues after those frames and the marker lists them first",
                    )
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        match pspec.name() {
            "endpoint-uri" => {
                settings.endpoint_uri = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default();
            }
            "bucket" => {
                settings.bucket = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default();
            }
            "prefix" => {
                settings.prefix = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default();
            }
            "region" => {
                settings.region = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default();
            }
            "force-path-style" => {
                settings.force_path_style = value.get().expect("type checked upstream");
            }
            "max-in-flight" => {
                settings.max_in_flight = value.get().expect("type checked upstream");
            }
            "max-buffered" => {
                settings.max_buffered = value.get().expect("type checked upstream");
            }
            "retry-attempts" => {
                settings.retry_attempts = value.get().expect("type checked upstream");
            }
            "retry-backoff" => {
                settings.retry_backoff_ms = value.get().expect("type checked upstream");
            }
            "retry-backoff-max" => {
                settings.retry_backoff_max_ms = value.get().expect("type checked upstream");
            }
            "request-timeout" => {
                settings.request_timeout_ms = value.get().expect("type checked upstream");
            }
            "pre-roll" => {
                settings.pre_roll = value.get().expect("type checked upstream");
            }
            "pipeline-instance" => {
                settings.pipeline_instance = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default();
            }
            "progress-interval" => {
                settings.progress_interval_s = value.get().expect("type checked upstream");
            }
            "reuse-after" => {
                settings.reuse_after_s = value.get().expect("type checked upstream");
            }
            _ => unimplemented!(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed).to_value();
        let counters = &self.counters;
        match pspec.name() {
            "endpoint-uri" => settings.endpoint_uri.to_value(),
            "bucket" => settings.bucket.to_value(),
            "prefix" => settings.prefix.to_value(),
            "region" => settings.region.to_value(),
            "force-path-style" => settings.force_path_style.to_value(),
            "max-in-flight" => settings.max_in_flight.to_value(),
            "max-buffered" => settings.max_buffered.to_value(),
            "retry-attempts" => settings.retry_attempts.to_value(),
            "retry-backoff" => settings.retry_backoff_ms.to_value(),
            "retry-backoff-max" => settings.retry_backoff_max_ms.to_value(),
            "request-timeout" => settings.request_timeout_ms.to_value(),
            "pre-roll" => settings.pre_roll.to_value(),
            "pipeline-instance" => settings.pipeline_instance.to_value(),
            "progress-interval" => settings.progress_interval_s.to_value(),
            "reuse-after" => settings.reuse_after_s.to_value(),
            "frames-received" => count(&counters.frames_received),
            "frames-uploaded" => count(&counters.frames_uploaded),
            "frames-dropped-untagged" => count(&counters.frames_dropped_untagged),
            "bytes-uploaded" => count(&counters.bytes_uploaded),
            "markers-written" => count(&counters.markers_written),
            "orders-repeated" => count(&counters.orders_repeated),
            "orders-resumed" => count(&counters.orders_resumed),
            "orders-reused" => count(&counters.orders_reused),
            _ => unimplemented!(),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        // A storage sink has no reason to wait for the clock.
        self.obj().set_sync(false);
    }
}

impl GstObjectImpl for MinioFrameSink {}

impl ElementImpl for MinioFrameSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "S3 order frame sink",
                "Sink/Storage",
                "Stores the JPEG frames of each order in S3 (or MinIO) and writes the \
                 order's __EOS__ manifest once all of them are stored",
                "order-accuracy developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::builder("image/jpeg").build();
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::PausedToPlaying {
            // Says "alive" before the first frame, which a camera may take a while to send.
            // Before the parent's transition: that releases the prerolled frame to render(),
            // whose progress would otherwise race this one.
            self.post_progress(ProgressClock::playing);
        }
        self.parent_change_state(transition)
    }
}

impl BaseSinkImpl for MinioFrameSink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        if settings.bucket.is_empty() {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ("The bucket property is empty")
            ));
        }
        let shared = Arc::new(Shared::default());
        *self.shared.lock().unwrap() = shared.clone();
        self.counters.reset();

        let client = Self::build_client(&settings);
        self.head_bucket(&client, &settings)?;

        let pipeline_instance = if settings.pipeline_instance.is_empty() {
            default_pipeline_instance()
        } else {
            settings.pipeline_instance.clone()
        };
        let (cancel, cancel_rx) = watch::channel(false);
        let uploader = Arc::new(Uploader {
            client,
            bucket: settings.bucket.clone(),
            retry: RetryPolicy {
                attempts: settings.retry_attempts,
                backoff: Duration::from_millis(settings.retry_backoff_ms.into()),
                max_backoff: Duration::from_millis(settings.retry_backoff_max_ms.into()),
            },
            in_flight: Semaphore::new(settings.max_in_flight as usize),
            cancel: cancel_rx,
            shared: shared.clone(),
            element: self.obj().downgrade(),
        });
        gst::info!(
            CAT,
            imp = self,
            "Storing into bucket '{}' at {} as pipeline instance {pipeline_instance}",
            settings.bucket,
            settings.endpoint_name()
        );
        *self.state.lock().unwrap() = State::Started(Box::new(Started {
            uploader,
            cancel,
            prefix: settings.prefix,
            pipeline_instance,
            max_buffered: settings.max_buffered as usize,
            request_timeout: Duration::from_millis(settings.request_timeout_ms.into()),
            held: HeldFrames::new(settings.pre_roll as usize),
            current: None,
            completed: CompletedOrders::default(),
            segments: HashMap::new(),
            reuse_after_ms: u64::from(settings.reuse_after_s) * 1_000,
            last_unix_ms: 0,
            progress: ProgressClock::new(Duration::from_secs(settings.progress_interval_s.into())),
            station_id: None,
        }));
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let State::Started(st) = std::mem::take(&mut *self.state.lock().unwrap()) else {
            return Ok(());
        };
        // Without EOS (e.g. gst-launch without -e) uploads may still run: give them a
        // bounded chance, then say what was lost rather than dropping it quietly.
        let deadline = Instant::now() + st.request_timeout;
        let shared = st.uploader.shared.clone();
        let mut p = shared.progress.lock().unwrap();
        while p.pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            p = shared.cond.wait_timeout(p, left).unwrap().0;
        }
        let (pending, unmarked) = (
            p.pending,
            p.orders.values().filter(|o| !o.stored.is_empty()).count(),
        );
        drop(p);
        let _ = st.cancel.send(true);
        if pending > 0 {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                (
                    "Stopped with {pending} uploads still pending after {:?}; they were abandoned",
                    st.request_timeout
                )
            );
        }
        if unmarked > 0 {
            gst::warning!(
                CAT,
                imp = self,
                "Stopped with {unmarked} orders that have stored frames but no marker"
            );
        }
        Ok(())
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.counters
            .frames_received
            .fetch_add(1, Ordering::Relaxed);
        let result = self.store_frame(buffer);
        self.post_progress(ProgressClock::rendered);
        result
    }

    fn event(&self, event: gst::Event) -> bool {
        if let Some(done) = OrderComplete::try_parse(&event) {
            if self.check_failed().is_err() || self.complete_order(&done).is_err() {
                return false;
            }
        } else if let gst::EventView::Eos(_) = event.view() {
            if self.drain().is_err() {
                return false;
            }
            self.post_progress(ProgressClock::ended);
        }
        self.parent_event(event)
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        self.shared().update(|p| p.flushing = true);
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        self.shared().update(|p| p.flushing = false);
        Ok(())
    }
}
