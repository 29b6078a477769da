//! Orders no pipeline will finish: a pipeline that dies mid-order (SIGKILL, power loss,
//! OOM, an element error) leaves frames in the store and no `__EOS__`. The station index
//! shows such an order as a `begin` entry with no `marker` entry since (a full listing,
//! once per store, sees its frames); an order whose newest frame is older than
//! `orphan_after` with no marker gets one written by the orchestrator (reason `recovered`, the frames found by
//! listing the order, in capture order) with `If-None-Match: *`, so exactly one replica
//! writes it and a marker the sink wrote in the meantime is never replaced. It is then
//! processed as any other order.

use std::collections::HashMap;
use std::sync::Arc;

use oa_contract::{CompletionReason, FrameEntry, Manifest, ParsedKey, parse_key};

use super::{Consumer, OrderKey, now_ms};
use crate::store::{Listed, StoreError};

/// What [`Consumer::recover`] found.
enum Recovery {
    /// This replica wrote the marker.
    Written,
    /// A marker is there (the sink's, or another replica's).
    HasMarker,
    /// Nothing stored under the order.
    NoFrames,
    /// Its newest frame (at this time) is recent: the pipeline is still at it.
    Active(u64),
}

/// The newest frame seen per order that had no marker when it was listed.
#[derive(Debug, Default)]
pub struct Orphans {
    newest: HashMap<OrderKey, u64>,
}

/// Orders without a marker tracked at most; beyond, the oldest half is forgotten (the
/// next listing cycle finds them again).
const MAX_TRACKED: usize = 4096;

impl Orphans {
    /// Notes the frames of `station` in a listing page.
    pub fn note_frames(&mut self, prefix: &str, station: &str, keys: &[Listed]) {
        for k in keys {
            if let Ok(ParsedKey::Frame {
                station: s,
                order,
                unix_ms,
                ..
            }) = parse_key(prefix, &k.key)
                && s == station
            {
                let newest = self.newest.entry((s, order)).or_insert(0);
                *newest = (*newest).max(unix_ms);
            }
        }
        if self.newest.len() > MAX_TRACKED {
            let mut ages: Vec<u64> = self.newest.values().copied().collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            self.newest.retain(|_, t| *t > cut);
        }
    }

    /// An order that has a marker (or a result) is no orphan.
    pub fn forget(&mut self, id: &OrderKey) {
        self.newest.remove(id);
    }

    /// Orders whose newest frame is older than `now_ms - after_ms`; they leave the set.
    pub fn take_stale(&mut self, now_ms: u64, after_ms: u64) -> Vec<OrderKey> {
        let stale: Vec<OrderKey> = self
            .newest
            .iter()
            .filter(|(_, t)| now_ms.saturating_sub(**t) > after_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &stale {
            self.newest.remove(k);
        }
        stale
    }
}

impl Consumer {
    /// Writes the marker of every stale order without one.
    pub(super) async fn recover_orphans(self: &Arc<Self>) {
        let Some(after) = self.settings.orphan_after else {
            return;
        };
        let stale = {
            let handled = self.handled.lock().unwrap();
            let in_flight = self.in_flight.lock().unwrap();
            let mut orphans = self.orphans.lock().unwrap();
            orphans
                .newest
                .retain(|k, _| !handled.contains_key(k) && !in_flight.contains(k));
            orphans.take_stale(now_ms().max(0) as u64, after.as_millis() as u64)
        };
        for (station, order) in stale {
            if let Err(e) = self.recover(&station, &order, None).await {
                tracing::warn!(station, order, "recovering the order: {e}");
            }
        }
        // Orders the index shows begun and never marked.
        let now = now_ms().max(0) as u64;
        let after_ms = after.as_millis() as u64;
        for station in self.stations() {
            let stale = self.station(&station, |s| {
                s.index
                    .as_mut()
                    .map(|i| i.take_stale(now, after_ms))
                    .unwrap_or_default()
            });
            for order in stale {
                match self.recover(&station, &order, Some(after_ms)).await {
                    Ok(Recovery::Active(newest)) => {
                        self.station(&station, |s| {
                            s.index.as_mut().map(|i| i.active(&order, newest))
                        });
                    }
                    Ok(Recovery::HasMarker) => {
                        if let Ok(key) =
                            oa_contract::marker_key(&self.settings.layout.prefix, &station, &order)
                        {
                            self.found(&station, &order, &key, None, true);
                        }
                    }
                    Ok(Recovery::NoFrames) => self.resolved(&station, &order),
                    Ok(Recovery::Written) => {}
                    Err(e) => {
                        tracing::warn!(station, order, "recovering the order: {e}; tried again");
                        self.station(&station, |s| {
                            s.index.as_mut().map(|i| i.active(&order, now))
                        });
                    }
                }
            }
        }
    }

    /// Writes the `recovered` marker of an order left without one; `active_within_ms`:
    /// not when its newest frame is younger than that.
    async fn recover(
        self: &Arc<Self>,
        station: &str,
        order: &str,
        active_within_ms: Option<u64>,
    ) -> Result<Recovery, StoreError> {
        let layout = &self.settings.layout;
        let marker = oa_contract::marker_key(&layout.prefix, station, order)
            .map_err(|e| StoreError(e.to_string()))?;
        if self.store.exists(&layout.bucket, &marker).await? {
            return Ok(Recovery::HasMarker);
        }
        let prefix = oa_contract::order_prefix(&layout.prefix, station, order)
            .map_err(|e| StoreError(e.to_string()))?;
        let mut frames = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (keys, more) = self
                .store
                .list_page(&layout.bucket, &prefix, after.as_deref(), 1000)
                .await?;
            after = keys.last().map(|k| k.key.clone());
            for k in &keys {
                if let Ok(ParsedKey::Frame { unix_ms, seq, .. }) = parse_key(&layout.prefix, &k.key)
                {
                    frames.push(FrameEntry {
                        key: k.key.clone(),
                        seq,
                        unix_ms,
                        bytes: k.size,
                    });
                }
            }
            if !more || after.is_none() {
                break;
            }
        }
        if frames.is_empty() {
            return Ok(Recovery::NoFrames);
        }
        let newest = frames.iter().map(|f| f.unix_ms).max().unwrap_or(0);
        if let Some(within) = active_within_ms
            && (now_ms().max(0) as u64).saturating_sub(newest) <= within
        {
            return Ok(Recovery::Active(newest));
        }
        let manifest = Manifest::new(
            station,
            order,
            CompletionReason::Recovered,
            frames,
            &format!("recovered-by-{}", self.settings.owner),
        );
        let won = self
            .store
            .put_if_absent(&layout.bucket, &marker, manifest.to_json())
            .await?;
        if won {
            self.recovered
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.metrics.order_recovered(station);
            tracing::warn!(
                station,
                order,
                frames = manifest.frame_count,
                "order left without a marker (its pipeline died mid-order): marker written \
                 with reason recovered"
            );
            self.found(station, order, &marker, None, true);
            Ok(Recovery::Written)
        } else {
            Ok(Recovery::HasMarker)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(order: &str, ms: u64, seq: u32) -> Listed {
        Listed {
            key: oa_contract::frame_key("", "s1", order, ms, seq).unwrap(),
            last_modified_ms: None,
            size: 1,
        }
    }

    #[test]
    fn orders_whose_newest_frame_is_old_are_stale_once() {
        let mut o = Orphans::default();
        o.note_frames("", "s1", &[frame("1", 1_000, 0), frame("1", 9_000, 1)]);
        o.note_frames("", "s1", &[frame("2", 2_000, 0)]);
        o.note_frames("", "s2", &[frame("3", 0, 0)]);
        assert!(
            o.take_stale(10_000, 5_000)
                .contains(&("s1".into(), "2".into()))
        );
        assert!(o.take_stale(10_000, 5_000).is_empty(), "taken once");
        assert_eq!(o.take_stale(20_000, 5_000), [("s1".into(), "1".into())]);
    }

    #[test]
    fn a_forgotten_order_is_not_stale() {
        let mut o = Orphans::default();
        o.note_frames("", "s1", &[frame("1", 1_000, 0)]);
        o.forget(&("s1".into(), "1".into()));
        assert!(o.take_stale(u64::MAX, 0).is_empty());
    }
}
