//! Retention: frames and markers, results and claims deleted once they are old enough
//! (`[retention]`); `expected/` and `outbox/` are never touched.
//!
//! A pass, every `interval_s` (the first [`FIRST_PASS_AFTER`] after start):
//! 1. frames: the frames prefix is listed page by page and grouped into order folders;
//!    a folder whose newest object is older than `frames_days` is deleted, its frames
//!    first and its `__EOS__` marker in a later request ([`plan::Deletions`]); station
//!    index entries (`{station}/__index__/`) older than `frames_days` go in the same
//!    listing. A station's checkpoint (one small object) is never deleted;
//! 2. claims: a claim goes once the result of its order (and revision) exists and both
//!    are older than `processing.claim_ttl_s` ([`plan::claim_expired`] says why that
//!    cannot make an order be processed twice);
//! 3. results: `results/` objects older than `results_days` (skipped when step 1 failed:
//!    a result must not go before its marker, or the order would look new).
//!
//! Deletes are DeleteObjects requests of `batch` keys, `pause_ms` apart. A failed pass is
//! logged once (again only when the error changes) and retried at the next interval;
//! nothing else stops. A pass stops between two requests on shutdown.

pub mod plan;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::shutdown::Stopping;
use crate::store::{Layout, Listed, Store, StoreError};
use plan::{Deletions, Grouper, Kind};

/// How long after start the first pass runs.
pub const FIRST_PASS_AFTER: Duration = Duration::from_secs(30);

/// Keys per LIST request.
const LIST_PAGE: i32 = 1000;

#[derive(Debug, Clone)]
pub struct Settings {
    pub layout: Layout,
    /// 0: frames and markers are kept.
    pub frames_days: u64,
    /// 0: results are kept.
    pub results_days: u64,
    pub interval: Duration,
    pub first_pass_after: Duration,
    /// Keys per DeleteObjects request (1..=1000).
    pub batch: usize,
    /// Between two delete requests.
    pub pause: Duration,
    /// The consumer's `claim_ttl`.
    pub claim_ttl: Duration,
    pub list_page_size: i32,
}

impl Settings {
    pub fn from_config(c: &crate::config::Config) -> Settings {
        let r = &c.retention;
        Settings {
            layout: Layout {
                bucket: c.storage.bucket.clone(),
                prefix: c.storage.prefix.clone(),
                results_bucket: c.storage.results_bucket().to_owned(),
                results_prefix: c.storage.results_prefix.clone(),
            },
            frames_days: r.frames_days,
            results_days: r.results_days,
            interval: Duration::from_secs(r.interval_s),
            first_pass_after: FIRST_PASS_AFTER,
            batch: r.batch.clamp(1, crate::config::MAX_RETENTION_BATCH),
            pause: Duration::from_millis(r.pause_ms),
            claim_ttl: Duration::from_secs(c.processing.claim_ttl_s),
            list_page_size: LIST_PAGE,
        }
    }
}

/// What one pass deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub frames: u64,
    pub markers: u64,
    pub results: u64,
    pub claims: u64,
    /// Station index entries.
    pub index: u64,
    /// Keys the store refused to delete (and markers kept because of them).
    pub refused: u64,
    /// The first refusal: key and error.
    pub first_refusal: Option<String>,
    /// The pass ended early because the orchestrator is stopping.
    pub stopped: bool,
}

impl PassReport {
    fn count(&mut self, kind: Kind, n: u64) {
        match kind {
            Kind::Frames => self.frames += n,
            Kind::Markers => self.markers += n,
            Kind::Results => self.results += n,
            Kind::Claims => self.claims += n,
            Kind::Index => self.index += n,
        }
    }
}

/// An order's result as retention sees it: when it was last modified, and its revision.
type ResultSeen = (Option<i64>, u32);

pub struct Retention {
    store: Store,
    settings: Settings,
    metrics: Arc<Metrics>,
}

/// Sends delete requests `pause` apart, stopping between two on shutdown.
struct Sender<'a> {
    store: &'a Store,
    pause: Duration,
    stop: Stopping,
    sent: bool,
}

impl Sender<'_> {
    /// Deletes `keys` from `bucket`; the refused keys. `None` when stopping.
    async fn send(
        &mut self,
        bucket: &str,
        keys: &[String],
        report: &mut PassReport,
    ) -> Result<Option<HashSet<String>>, StoreError> {
        if self.stop.is_stopping() {
            return Ok(None);
        }
        if self.sent && !self.pause.is_zero() {
            tokio::select! {
                _ = self.stop.wait() => return Ok(None),
                _ = tokio::time::sleep(self.pause) => {}
            }
        }
        self.sent = true;
        let refused = self.store.delete_many(bucket, keys).await?;
        if let Some((key, e)) = refused.first()
            && report.first_refusal.is_none()
        {
            report.first_refusal = Some(format!("{key}: {e}"));
        }
        Ok(Some(refused.into_iter().map(|(k, _)| k).collect()))
    }
}

impl Retention {
    pub fn new(store: Store, settings: Settings, metrics: Arc<Metrics>) -> Retention {
        Retention {
            store,
            settings,
            metrics,
        }
    }

    /// Runs a pass at start (after `first_pass_after`) and every `interval` until `stop`.
    pub async fn run(self, mut stop: Stopping) {
        let mut next = tokio::time::Instant::now() + self.settings.first_pass_after;
        // The error last warned about: a pass failing the same way again is not logged
        // at warning level again.
        let mut warned: Option<String> = None;
        loop {
            tokio::select! {
                _ = stop.wait() => return,
                _ = tokio::time::sleep_until(next) => {}
            }
            let started = tokio::time::Instant::now();
            let outcome = self.pass(&stop).await;
            let problem = match &outcome {
                Err(e) => Some(format!("retention pass failed: {e}")),
                Ok(r) if r.refused > 0 => Some(format!(
                    "retention pass: the store refused to delete {} key(s), first {}",
                    r.refused,
                    r.first_refusal.as_deref().unwrap_or("?")
                )),
                Ok(_) => None,
            };
            match problem {
                Some(p) => {
                    self.metrics.error("retention");
                    if warned.as_deref() == Some(p.as_str()) {
                        tracing::debug!("{p} (again; retried every {:?})", self.settings.interval);
                    } else {
                        tracing::warn!(
                            "{p}; retried in {:?} (not logged again while it repeats)",
                            self.settings.interval
                        );
                        warned = Some(p);
                    }
                }
                None => {
                    if warned.take().is_some() {
                        tracing::info!("retention passes succeed again");
                    }
                }
            }
            if stop.is_stopping() {
                return;
            }
            next = started + self.settings.interval;
        }
    }

    /// One pass (see the module's documentation); `Err` on the first storage failure
    /// (what was deleted before it stays deleted and is counted).
    pub async fn pass(&self, stop: &Stopping) -> Result<PassReport, StoreError> {
        let started = Instant::now();
        let mut report = PassReport::default();
        let mut sender = Sender {
            store: &self.store,
            pause: self.settings.pause,
            stop: stop.clone(),
            sent: false,
        };
        let now = now_ms();
        let outcome = async {
            let frames_ok = self.frames(&mut sender, &mut report, now).await;
            let frames_refused = report.refused;
            self.claims(&mut sender, &mut report, now).await?;
            // Results only once every expired marker went: a marker without its result
            // would be processed again.
            frames_ok?;
            if frames_refused > 0 {
                return Ok(());
            }
            self.results(&mut sender, &mut report, now).await
        }
        .await;
        for kind in Kind::ALL {
            let n = match kind {
                Kind::Frames => report.frames,
                Kind::Markers => report.markers,
                Kind::Results => report.results,
                Kind::Claims => report.claims,
                Kind::Index => report.index,
            };
            self.metrics.retention_deleted(kind.label(), n);
        }
        outcome?;
        report.stopped = stop.is_stopping();
        self.metrics.retention_pass(now_ms() as f64 / 1000.0);
        tracing::info!(
            frames = report.frames,
            markers = report.markers,
            results = report.results,
            claims = report.claims,
            index = report.index,
            refused = report.refused,
            stopped = report.stopped,
            duration_ms = started.elapsed().as_millis() as u64,
            "retention pass done"
        );
        Ok(report)
    }

    async fn frames(
        &self,
        sender: &mut Sender<'_>,
        report: &mut PassReport,
        now: i64,
    ) -> Result<(), StoreError> {
        let Some(cutoff) = plan::cutoff(now, self.settings.frames_days) else {
            return Ok(());
        };
        let results_cutoff = plan::cutoff(now, self.settings.results_days);
        let layout = &self.settings.layout;
        let mut grouper = Grouper::new(&layout.prefix);
        let mut deletions = Deletions::new(self.settings.batch);
        let mut index: Vec<String> = vec![];
        let mut after: Option<String> = None;
        loop {
            let Some((page, more)) = self
                .page(sender, &layout.bucket, &layout.prefix, &mut after)
                .await?
            else {
                return Ok(());
            };
            let mut done: Vec<_> = page
                .iter()
                .filter_map(|l| grouper.push(&l.key, l.last_modified_ms))
                .collect();
            index.extend(
                page.iter()
                    .filter(|l| {
                        plan::expired_index_entry(
                            &layout.prefix,
                            &l.key,
                            l.last_modified_ms,
                            cutoff,
                        )
                    })
                    .map(|l| l.key.clone()),
            );
            let last = !more || after.is_none();
            while index.len() >= self.settings.batch || (last && !index.is_empty()) {
                let n = index.len().min(self.settings.batch);
                let keys: Vec<String> = index.drain(..n).collect();
                let Some(refused) = sender.send(&layout.bucket, &keys, report).await? else {
                    return Ok(());
                };
                report.index += (keys.len() - refused.len()) as u64;
                report.refused += refused.len() as u64;
            }
            if last {
                done.extend(grouper.finish());
            }
            for folder in done.into_iter().filter(|f| f.expired(cutoff)) {
                deletions.push(folder.to_delete(results_cutoff));
            }
            while let Some(batch) = deletions.next_batch(last) {
                let keys: Vec<String> = batch.iter().map(|i| i.key.clone()).collect();
                let Some(refused) = sender.send(&layout.bucket, &keys, report).await? else {
                    return Ok(());
                };
                let o = deletions.done(&batch, &refused);
                report.frames += o.frames;
                report.markers += o.markers;
                report.refused += o.failed;
            }
            if last {
                return Ok(());
            }
        }
    }

    async fn claims(
        &self,
        sender: &mut Sender<'_>,
        report: &mut PassReport,
        now: i64,
    ) -> Result<(), StoreError> {
        let layout = &self.settings.layout;
        let ttl_ms = self.settings.claim_ttl.as_millis() as i64;
        let cutoff = now.saturating_sub(ttl_ms);
        let prefix = format!("{}{}/", layout.results_prefix, oa_contract::CLAIMS_DIR);
        // The result of the order looked up last: an order's claims are contiguous.
        let mut looked_up: Option<((String, String), Option<ResultSeen>)> = None;
        let mut expired = vec![];
        let mut after: Option<String> = None;
        loop {
            let Some((page, more)) = self
                .page(sender, &layout.results_bucket, &prefix, &mut after)
                .await?
            else {
                return Ok(());
            };
            for l in &page {
                let Some((station, order, revision)) =
                    plan::parse_claim(&layout.results_prefix, &l.key)
                else {
                    continue;
                };
                if !plan::older(l.last_modified_ms, cutoff) {
                    continue;
                }
                let id = (station, order);
                let result = match &looked_up {
                    Some((seen, r)) if *seen == id => *r,
                    _ => {
                        let r = self.result_of(&id.0, &id.1).await?;
                        looked_up = Some((id, r));
                        r
                    }
                };
                if plan::claim_expired(l.last_modified_ms, revision, result, now, ttl_ms) {
                    expired.push(l.key.clone());
                }
            }
            let last = !more || after.is_none();
            let bucket = &layout.results_bucket;
            if !self
                .flush(sender, bucket, &mut expired, last, Kind::Claims, report)
                .await?
                || last
            {
                return Ok(());
            }
        }
    }

    /// When the result of an order was last modified and its revision; `None` when it
    /// has none (or one that cannot be read: the order may be processed again).
    async fn result_of(
        &self,
        station: &str,
        order: &str,
    ) -> Result<Option<ResultSeen>, StoreError> {
        let layout = &self.settings.layout;
        let key = layout.result_key(station, order)?;
        let Some(obj) = self.store.get(&layout.results_bucket, &key).await? else {
            return Ok(None);
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&obj.body) else {
            return Ok(None);
        };
        let revision = v.get("revision").and_then(|r| r.as_u64()).unwrap_or(0);
        Ok(Some((
            obj.last_modified_ms,
            u32::try_from(revision).unwrap_or(u32::MAX),
        )))
    }

    async fn results(
        &self,
        sender: &mut Sender<'_>,
        report: &mut PassReport,
        now: i64,
    ) -> Result<(), StoreError> {
        let Some(cutoff) = plan::cutoff(now, self.settings.results_days) else {
            return Ok(());
        };
        let layout = &self.settings.layout;
        let prefix = format!("{}{}/", layout.results_prefix, oa_contract::RESULTS_DIR);
        let mut expired = vec![];
        let mut after: Option<String> = None;
        loop {
            let Some((page, more)) = self
                .page(sender, &layout.results_bucket, &prefix, &mut after)
                .await?
            else {
                return Ok(());
            };
            expired.extend(
                page.iter()
                    .filter(|l| l.key.ends_with(".json") && plan::older(l.last_modified_ms, cutoff))
                    .map(|l| l.key.clone()),
            );
            let last = !more || after.is_none();
            let bucket = &layout.results_bucket;
            if !self
                .flush(sender, bucket, &mut expired, last, Kind::Results, report)
                .await?
                || last
            {
                return Ok(());
            }
        }
    }

    /// The next page of `prefix` after `after` (moved on to its last key), and whether more
    /// follow; `None` when stopping.
    async fn page(
        &self,
        sender: &Sender<'_>,
        bucket: &str,
        prefix: &str,
        after: &mut Option<String>,
    ) -> Result<Option<(Vec<Listed>, bool)>, StoreError> {
        if sender.stop.is_stopping() {
            return Ok(None);
        }
        let (page, more) = self
            .store
            .list_page(
                bucket,
                prefix,
                after.as_deref(),
                self.settings.list_page_size,
            )
            .await?;
        *after = page.last().map(|l| l.key.clone());
        Ok(Some((page, more)))
    }

    /// Deletes `expired` a full batch at a time, and what is left when this is the `last`
    /// page; `false` when stopping.
    async fn flush(
        &self,
        sender: &mut Sender<'_>,
        bucket: &str,
        expired: &mut Vec<String>,
        last: bool,
        kind: Kind,
        report: &mut PassReport,
    ) -> Result<bool, StoreError> {
        while expired.len() >= self.settings.batch || (last && !expired.is_empty()) {
            let n = expired.len().min(self.settings.batch);
            let keys: Vec<String> = expired.drain(..n).collect();
            if !self.delete(sender, bucket, &keys, kind, report).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Deletes `keys` of one `kind`; `false` when stopping.
    async fn delete(
        &self,
        sender: &mut Sender<'_>,
        bucket: &str,
        keys: &[String],
        kind: Kind,
        report: &mut PassReport,
    ) -> Result<bool, StoreError> {
        let Some(refused) = sender.send(bucket, keys, report).await? else {
            return Ok(false);
        };
        report.count(kind, (keys.len() - refused.len()) as u64);
        report.refused += refused.len() as u64;
        Ok(true)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
