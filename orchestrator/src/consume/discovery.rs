//! Finding markers: the station index from its newest entry at every poll, a checkpoint
//! per station, and once per store a full listing (see the module documentation of
//! [`super`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use oa_contract::{IndexEntry, MARKER_NAME, ParsedKey, parse_key};
use serde::{Deserialize, Serialize};

use super::index::{self, Action, StationIndex};
use super::{Consumer, OrderKey};
use crate::store::{Listed, StoreError};

/// Two LastModified values name the same version of a marker. Compared at whole seconds:
/// an HTTP `Last-Modified` header has none of the milliseconds some listings carry, and
/// two versions of one marker are seconds apart (new frames of the order arrive at the
/// pipeline's frame rate in between). A hint is compared by content, never by this.
pub fn same_marker_version(a: Option<i64>, b: Option<i64>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a.div_euclid(1000) == b.div_euclid(1000))
}

/// A marker found in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundMarker {
    pub order: String,
    pub key: String,
    pub last_modified_ms: Option<i64>,
}

/// The markers of `station` among the listed keys (frames and foreign keys skipped).
pub fn markers_of(prefix: &str, station: &str, keys: &[Listed]) -> Vec<FoundMarker> {
    keys.iter()
        .filter(|k| k.key.ends_with(MARKER_NAME))
        .filter_map(|k| match parse_key(prefix, &k.key) {
            Ok(ParsedKey::Marker { station: s, order }) if s == station => Some(FoundMarker {
                order,
                key: k.key.clone(),
                last_modified_ms: k.last_modified_ms,
            }),
            _ => None,
        })
        .collect()
}

/// What `checkpoints/{station}.json` holds ([`oa_contract::checkpoint_key`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Every index entry of the station older than this (frames clock) was looked at to
    /// the end: a start lists the index only down to [`index::LOOKBACK_MS`] before it.
    pub before_unix_ms: u64,
    /// The orchestrator that wrote it (`[consumer] owner`).
    pub owner: String,
    /// When it was written (wall clock).
    pub written_unix_ms: i64,
}

/// A checkpoint is written at most this often per station (and when the consumer stops).
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(10);

/// Discovery state of one station.
#[derive(Debug)]
pub(super) struct StationState {
    /// `None` until the stored checkpoint has been read.
    pub index: Option<StationIndex>,
    /// The store held no checkpoint: one full listing of the station (markers written
    /// before the index existed) runs once; no checkpoint is written before it ends.
    pub full_scan: bool,
    pub saved: Option<u64>,
    pub last_save: Option<Instant>,
}

impl StationState {
    pub fn new() -> StationState {
        StationState {
            index: None,
            full_scan: false,
            saved: None,
            last_save: None,
        }
    }
}

impl Consumer {
    /// Reads the station's checkpoint unless it is known; `false` when the store could
    /// not be read (tried again at the next poll).
    async fn load_checkpoint(&self, station: &str) -> Result<(), StoreError> {
        if self.station(station, |s| s.index.is_some()) {
            return Ok(());
        }
        let layout = &self.settings.layout;
        let key = oa_contract::checkpoint_key(&layout.results_prefix, station)
            .map_err(|e| StoreError(format!("checkpoint of {station:?}: {e}")))?;
        let loaded = match self.store.get(&layout.results_bucket, &key).await? {
            None => None,
            Some(o) => match serde_json::from_slice::<Checkpoint>(&o.body) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(
                        station,
                        "checkpoint {key} is unreadable ({e}): listing the station once \
                         in full, as on a first start"
                    );
                    None
                }
            },
        };
        match &loaded {
            Some(c) => tracing::info!(
                station,
                "checkpoint {} (written by {}): looking at index entries from {} s before it",
                c.before_unix_ms,
                c.owner,
                index::LOOKBACK_MS / 1000
            ),
            None => tracing::info!(
                station,
                "no checkpoint in the store (first start, or a store written before the \
                 index): listing the station once in full in the background"
            ),
        }
        self.station(station, |s| {
            s.index = Some(StationIndex::starting_at(
                loaded.as_ref().map(|c| c.before_unix_ms),
            ));
            s.full_scan = loaded.is_none();
            s.saved = loaded.as_ref().map(|c| c.before_unix_ms);
        });
        Ok(())
    }

    /// Runs `f` on the discovery state of `station`.
    pub(super) fn station<R>(&self, station: &str, f: impl FnOnce(&mut StationState) -> R) -> R {
        let mut all = self.discovery.lock().unwrap();
        f(all
            .entry(station.to_owned())
            .or_insert_with(StationState::new))
    }

    /// One poll of `station`'s index: from the newest entry down to the floor (usually
    /// one LIST page), each new marker looked at; the LIST requests it made.
    pub async fn poll_station(self: &Arc<Self>, station: &str) -> Result<usize, StoreError> {
        let result = self.poll_index(station).await;
        *self.storage.lock().unwrap() = Some(match &result {
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        });
        result
    }

    /// One LIST page of `station`'s index after the key `after` (newest first): its
    /// entries with their keys, and the key to list on after (`None`: the index ends).
    pub(super) async fn index_page(
        &self,
        station: &str,
        after: Option<&str>,
    ) -> Result<(Vec<(String, IndexEntry)>, Option<String>), StoreError> {
        let layout = &self.settings.layout;
        let prefix = oa_contract::index_prefix(&layout.prefix, station)
            .map_err(|e| StoreError(format!("station {station:?}: {e}")))?;
        let (page, more) = self
            .store
            .list_page(&layout.bucket, &prefix, after, self.settings.list_page_size)
            .await?;
        let next = page.last().filter(|_| more).map(|k| k.key.clone());
        let entries = page
            .into_iter()
            .filter_map(|k| {
                let e = oa_contract::parse_index_key(&layout.prefix, &k.key)?;
                (e.station == station).then_some((k.key, e))
            })
            .collect();
        Ok((entries, next))
    }

    async fn poll_index(self: &Arc<Self>, station: &str) -> Result<usize, StoreError> {
        self.load_checkpoint(station).await?;
        let floor = self.station(station, |s| s.index.as_ref().and_then(|i| i.floor()));
        let mut entries = vec![];
        let mut keys = vec![];
        let mut after: Option<String> = None;
        let mut requests = 0;
        'pages: loop {
            requests += 1;
            self.metrics.list_request(station);
            let (page, next) = self.index_page(station, after.as_deref()).await?;
            for (key, e) in page {
                if floor.is_some_and(|f| e.unix_ms < f) {
                    break 'pages;
                }
                entries.push(e);
                keys.push(key);
            }
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let track_open = self.settings.orphan_after.is_some();
        let actions = self.station(station, |s| {
            s.index
                .as_mut()
                .map(|i| i.take(entries, &keys, track_open))
                .unwrap_or_default()
        });
        for Action::Look(order) in actions {
            self.orphans
                .lock()
                .unwrap()
                .forget(&(station.to_owned(), order.clone()));
            if let Ok(key) = oa_contract::marker_key(&self.settings.layout.prefix, station, &order)
            {
                self.found(station, &order, &key, None, true);
            }
        }
        Ok(requests)
    }

    /// The order's result is up to date.
    pub(super) fn resolved(&self, station: &str, order: &str) {
        self.station(station, |s| {
            if let Some(i) = s.index.as_mut() {
                i.resolved(order);
            }
        });
    }

    /// Writes the station's checkpoint when it moved, at most every
    /// [`CHECKPOINT_EVERY`] unless `now` (a stop).
    pub async fn save_checkpoint(&self, station: &str, now: bool) {
        let due = self.station(station, |s| {
            let at = s.index.as_ref()?.checkpoint()?;
            let recent = s.last_save.is_some_and(|t| t.elapsed() < CHECKPOINT_EVERY);
            (!s.full_scan && s.saved != Some(at) && (now || !recent)).then_some(at)
        });
        let Some(at) = due else { return };
        let layout = &self.settings.layout;
        let Ok(key) = oa_contract::checkpoint_key(&layout.results_prefix, station) else {
            return;
        };
        let body = Checkpoint {
            before_unix_ms: at,
            owner: self.settings.owner.clone(),
            written_unix_ms: super::now_ms(),
        };
        let body = serde_json::to_vec(&body).unwrap_or_default();
        match self
            .store
            .put(&layout.results_bucket, &key, body, "application/json")
            .await
        {
            Ok(()) => self.station(station, |s| {
                s.saved = Some(at);
                s.last_save = Some(Instant::now());
            }),
            Err(e) => {
                self.metrics.error("checkpoint");
                tracing::warn!(station, "writing the checkpoint {key}: {e}");
            }
        }
    }

    /// Orders due for another look (a failure that may pass, awaited expected items, a
    /// claim held by another replica) are looked at again.
    pub(super) fn look_again(self: &Arc<Self>) {
        let now = Instant::now();
        let due: Vec<OrderKey> = self
            .retries
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, r)| r.next <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for (station, order) in due {
            if let Ok(key) = oa_contract::marker_key(&self.settings.layout.prefix, &station, &order)
            {
                self.found(&station, &order, &key, None, true);
            }
        }
    }

    /// Runs the one full listing of every station that has no checkpoint, page by page
    /// (a marker stored before the index existed is still processed), then lets their
    /// checkpoints be written.
    pub(super) async fn full_scans(self: &Arc<Self>) {
        let mut scans = tokio::task::JoinSet::new();
        for station in self.stations() {
            let this = self.clone();
            scans.spawn(async move { this.full_scan(station).await });
        }
        while scans.join_next().await.is_some() {}
    }

    async fn full_scan(self: &Arc<Self>, station: String) {
        {
            while self.station(&station, |s| s.index.is_none()) {
                if self.load_checkpoint(&station).await.is_err() {
                    tokio::time::sleep(self.settings.poll_interval).await;
                }
            }
            if !self.station(&station, |s| s.full_scan) {
                return;
            }
            let t = Instant::now();
            let mut pages = 0u64;
            loop {
                match self.scan_page(&station).await {
                    Ok(true) => pages += 1,
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(station, "full listing: {e}; tried again");
                        tokio::time::sleep(self.settings.poll_interval).await;
                    }
                }
            }
            // What it found is not in the index: the checkpoint waits until it is done.
            while self.busy_at(&station) {
                tokio::time::sleep(self.settings.poll_interval).await;
            }
            // The scan found every marker stored before the index: what it handled need
            // not be remembered.
            self.handled
                .lock()
                .unwrap()
                .retain(|(s, _), _| *s != station);
            self.station(&station, |s| s.full_scan = false);
            tracing::info!(
                station,
                "full listing done in {:.1} s ({} pages); from now on only the index is listed",
                t.elapsed().as_secs_f64(),
                pages + 1
            );
        }
    }

    /// Whether an order of `station` is in flight or waits for another look.
    fn busy_at(&self, station: &str) -> bool {
        self.in_flight
            .lock()
            .unwrap()
            .iter()
            .any(|(s, _)| s == station)
            || self
                .retries
                .lock()
                .unwrap()
                .keys()
                .any(|(s, _)| s == station)
    }

    /// One LIST page of the whole station from its cursor; `true` when more pages follow.
    async fn scan_page(self: &Arc<Self>, station: &str) -> Result<bool, StoreError> {
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
        let markers = markers_of(&self.settings.layout.prefix, station, &keys);
        {
            let mut orphans = self.orphans.lock().unwrap();
            orphans.note_frames(&self.settings.layout.prefix, station, &keys);
            for m in &markers {
                orphans.forget(&(station.to_owned(), m.order.clone()));
            }
        }
        for m in markers {
            self.found(station, &m.order, &m.key, m.last_modified_ms, false);
        }
        Ok(next.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str, ms: i64) -> Listed {
        Listed {
            key: k.into(),
            last_modified_ms: Some(ms),
            size: 1,
        }
    }

    #[test]
    fn only_this_stations_markers_are_found() {
        let keys = [
            key("p/s1/384/frame_1_000000.jpg", 1),
            key("p/s1/384/__EOS__", 2),
            key("p/s1/385/__EOS__", 3),
            key("p/s10/9/__EOS__", 4),
            key("p/s1/bad id/__EOS__", 5),
        ];
        let found = markers_of("p/", "s1", &keys);
        let orders: Vec<&str> = found.iter().map(|m| m.order.as_str()).collect();
        assert_eq!(orders, ["384", "385"]);
        assert_eq!(found[0].last_modified_ms, Some(2));
    }

    #[test]
    fn marker_versions_compare_at_whole_seconds() {
        assert!(same_marker_version(Some(5_100), Some(5_900)));
        assert!(!same_marker_version(Some(5_900), Some(6_100)));
        assert!(!same_marker_version(None, Some(1)));
    }
}
