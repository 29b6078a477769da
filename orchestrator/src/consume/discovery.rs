//! Finding markers: one `ListObjectsV2` page per station per poll from a cursor, wrapping
//! at the end of the listing (see the module documentation of [`super`]).

use std::sync::Arc;

use oa_contract::{MARKER_NAME, ParsedKey, parse_key};

use super::Consumer;
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

impl Consumer {
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
