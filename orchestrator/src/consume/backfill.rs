//! After a start, the results stored before it read back into memory: a restart looks at
//! the index only down to the checkpoint (it is ready at once), so without this the
//! order list, the stats and the dashboard would forget everything older than
//! [`super::index::LOOKBACK_MS`]. Each station's index is walked newest first in the
//! background while discovery goes on, the result of every `marker` entry read
//! (a few at a time) and kept as the station's oldest ([`Known::insert_older`]) until the
//! station's share of memory ([`super::known::PER_STATION`]) is full or the index ends.
//! A result the store does not have (an order not processed yet) is left to discovery.
//!
//! [`Known::insert_older`]: super::known::Known::insert_older

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use oa_contract::IndexKind;

use super::Consumer;
use crate::result::OrderResult;
use crate::store::StoreError;

/// Results read at once per station.
const IN_FLIGHT: usize = 4;
/// Attempts at a failing LIST before the station's read-back gives up (logged).
const ATTEMPTS: u32 = 5;

impl Consumer {
    /// Reads every station's earlier results back, one station after the other.
    pub(super) async fn backfill(self: &Arc<Self>) {
        for station in self.stations() {
            let t = Instant::now();
            let mut failures = 0;
            let read = loop {
                match self.backfill_station(&station).await {
                    Ok(n) => break n,
                    Err(e) if failures + 1 < ATTEMPTS => {
                        failures += 1;
                        tracing::debug!(station, "reading earlier results back: {e}; again");
                        tokio::time::sleep(Duration::from_secs(1 << failures)).await;
                    }
                    Err(e) => {
                        self.metrics.error("backfill");
                        tracing::warn!(
                            station,
                            "reading earlier results back stopped: {e} (the API shows the \
                             results since this start; older ones by order)"
                        );
                        break 0;
                    }
                }
            };
            if read > 0 {
                tracing::info!(
                    station,
                    "{read} earlier results read back in {:.1} s",
                    t.elapsed().as_secs_f64()
                );
            }
        }
    }

    /// One pass over `station`'s index; how many results it kept. Resumable: a result
    /// already known is skipped, so a pass after a failure repeats only LISTs.
    async fn backfill_station(self: &Arc<Self>, station: &str) -> Result<usize, StoreError> {
        let mut after: Option<String> = None;
        let mut seen = HashSet::new();
        let mut kept = 0;
        loop {
            if self.results.lock().unwrap().is_full(station) {
                return Ok(kept);
            }
            let (page, next) = self.index_page(station, after.as_deref()).await?;
            let orders: Vec<(String, u64)> = page
                .into_iter()
                .map(|(_, e)| e)
                .filter(|e| e.kind == IndexKind::Marker)
                .filter(|e| seen.insert(e.order.clone()))
                .filter(|e| {
                    let id = (station.to_owned(), e.order.clone());
                    self.results.lock().unwrap().get(&id).is_none()
                })
                .map(|e| (e.order, e.unix_ms))
                .collect();
            let mut reads = futures_util::stream::iter(orders)
                .map(|(order, marker_ms)| async move {
                    (
                        order.clone(),
                        self.stored_result(station, &order).await,
                        marker_ms,
                    )
                })
                .buffered(IN_FLIGHT);
            while let Some((order, got, marker_ms)) = reads.next().await {
                let mut r = match got {
                    Ok(Some(r)) => r,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::debug!(station, order, "earlier result: {e}");
                        continue;
                    }
                };
                // Results written before the field existed: the index entry's time.
                r.marker_last_modified_ms.get_or_insert(marker_ms as i64);
                let id = (station.to_owned(), order);
                let mut known = self.results.lock().unwrap();
                if known.insert_older(id, r) {
                    kept += 1;
                } else if known.is_full(station) {
                    return Ok(kept);
                }
            }
            match next {
                Some(n) => after = Some(n),
                None => return Ok(kept),
            }
        }
    }

    /// The stored result of `order`, not the one in memory.
    pub(super) async fn stored_result(
        &self,
        station: &str,
        order: &str,
    ) -> Result<Option<OrderResult>, StoreError> {
        let layout = &self.settings.layout;
        let Ok(key) = layout.result_key(station, order) else {
            return Ok(None);
        };
        let Some(o) = self.store.get(&layout.results_bucket, &key).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&o.body)
            .map(Some)
            .map_err(|e| StoreError(format!("{key} is not a result: {e}")))
    }
}
