//! The `__EOS__` manifest: written last, it names every frame of the order so that a
//! consumer never needs to LIST the order's prefix.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::ids::{IdError, IdKind, split_order_key, validate_id, validate_order_key};

/// The only manifest version this crate writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// Why an order was completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompletionReason {
    /// A different order ID was confirmed on the camera.
    NextOrder,
    /// No frame of the order was seen for the idle timeout.
    IdleTimeout,
    /// The order's frames spanned `max-order-duration` (on their own timestamps) while its
    /// slip stayed in view: this segment is stored, and later frames of the order continue
    /// it in the next segment, each marker a superset of the one before.
    MaxDuration,
    /// The pipeline ended (end of file, or `gst-launch-1.0 -e` interrupted).
    EndOfStream,
    /// Written by the orchestrator for an order whose pipeline died before its marker:
    /// the frames that reached the store, found by listing.
    Recovered,
}

impl CompletionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CompletionReason::NextOrder => "next-order",
            CompletionReason::IdleTimeout => "idle-timeout",
            CompletionReason::MaxDuration => "max-duration",
            CompletionReason::EndOfStream => "end-of-stream",
            CompletionReason::Recovered => "recovered",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::NextOrder,
            Self::IdleTimeout,
            Self::MaxDuration,
            Self::EndOfStream,
            Self::Recovered,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for CompletionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stored frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameEntry {
    pub key: String,
    pub seq: u32,
    pub unix_ms: u64,
    pub bytes: u64,
}

/// Body of `{prefix}{station}/{order}/__EOS__`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub station_id: String,
    /// The order key: the slip's order ID, or `{id}.{n}` when the number came back.
    pub order_id: String,
    /// Which use of the slip's number this order is, from 2 up; absent for the first (as in
    /// every manifest written before numbers could come back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrence: Option<u32>,
    pub reason: CompletionReason,
    pub frame_count: u32,
    pub frames: Vec<FrameEntry>,
    pub first_unix_ms: Option<u64>,
    pub last_unix_ms: Option<u64>,
    pub pipeline_instance: String,
}

/// Why a manifest body was refused.
#[derive(Debug)]
pub enum ManifestError {
    Json(serde_json::Error),
    Version(u32),
    Id(IdError),
    FrameCount {
        declared: u32,
        listed: usize,
    },
    /// `occurrence` does not match the order key's `.{n}`.
    Occurrence {
        order_key: String,
        declared: Option<u32>,
    },
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestError::Json(e) => write!(f, "manifest is not valid JSON: {e}"),
            ManifestError::Version(v) => write!(
                f,
                "manifest version {v} is not supported (this build reads version {MANIFEST_VERSION})"
            ),
            ManifestError::Id(e) => write!(f, "manifest holds an invalid ID: {e}"),
            ManifestError::FrameCount { declared, listed } => {
                write!(f, "manifest declares {declared} frames but lists {listed}")
            }
            ManifestError::Occurrence {
                order_key,
                declared,
            } => write!(
                f,
                "manifest of order {order_key} declares occurrence {declared:?}, which its \
                 order key does not name"
            ),
        }
    }
}

impl std::error::Error for ManifestError {}

impl Manifest {
    /// Builds a manifest from the frames stored for an order (`order_id` is its order key),
    /// in capture order.
    pub fn new(
        station_id: &str,
        order_id: &str,
        reason: CompletionReason,
        mut frames: Vec<FrameEntry>,
        pipeline_instance: &str,
    ) -> Self {
        frames.sort_by_key(|f| f.seq);
        Manifest {
            version: MANIFEST_VERSION,
            station_id: station_id.to_owned(),
            order_id: order_id.to_owned(),
            occurrence: Some(split_order_key(order_id).1).filter(|&n| n > 1),
            reason,
            frame_count: frames.len() as u32,
            first_unix_ms: frames.iter().map(|f| f.unix_ms).min(),
            last_unix_ms: frames.iter().map(|f| f.unix_ms).max(),
            frames,
            pipeline_instance: pipeline_instance.to_owned(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("manifest serialises")
    }

    /// Parses and checks a marker body.
    pub fn from_json(body: &[u8]) -> Result<Self, ManifestError> {
        let m: Manifest = serde_json::from_slice(body).map_err(ManifestError::Json)?;
        if m.version != MANIFEST_VERSION {
            return Err(ManifestError::Version(m.version));
        }
        validate_id(IdKind::Station, &m.station_id).map_err(ManifestError::Id)?;
        validate_order_key(&m.order_id).map_err(ManifestError::Id)?;
        let occurrence = split_order_key(&m.order_id).1;
        if m.occurrence.unwrap_or(1) != occurrence {
            return Err(ManifestError::Occurrence {
                order_key: m.order_id,
                declared: m.occurrence,
            });
        }
        if m.frame_count as usize != m.frames.len() {
            return Err(ManifestError::FrameCount {
                declared: m.frame_count,
                listed: m.frames.len(),
            });
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u32, ms: u64) -> FrameEntry {
        FrameEntry {
            key: crate::frame_key("", "s1", "384", ms, seq).unwrap(),
            seq,
            unix_ms: ms,
            bytes: 100,
        }
    }

    #[test]
    fn round_trips_and_sorts_frames() {
        let m = Manifest::new(
            "s1",
            "384",
            CompletionReason::IdleTimeout,
            vec![frame(1, 2000), frame(0, 1000)],
            "host-1",
        );
        assert_eq!(m.frames[0].seq, 0);
        assert_eq!((m.first_unix_ms, m.last_unix_ms), (Some(1000), Some(2000)));
        let json = m.to_json();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["reason"], "idle-timeout");
        assert_eq!(v["version"], 1);
        assert_eq!(v["frame_count"], 2);
        assert_eq!(Manifest::from_json(&json).unwrap(), m);
    }

    #[test]
    fn refuses_bad_bodies() {
        assert!(matches!(
            Manifest::from_json(b"{not json"),
            Err(ManifestError::Json(_))
        ));
        let mut m = Manifest::new("s1", "384", CompletionReason::NextOrder, vec![], "i");
        m.version = 2;
        assert!(matches!(
            Manifest::from_json(&m.to_json()),
            Err(ManifestError::Version(2))
        ));
        let mut m = Manifest::new("s1", "384", CompletionReason::NextOrder, vec![], "i");
        m.frame_count = 3;
        assert!(matches!(
            Manifest::from_json(&m.to_json()),
            Err(ManifestError::FrameCount { .. })
        ));
        let mut m = Manifest::new("s1", "384", CompletionReason::NextOrder, vec![], "i");
        m.order_id = "../x".into();
        assert!(matches!(
            Manifest::from_json(&m.to_json()),
            Err(ManifestError::Id(_))
        ));
    }

    #[test]
    fn occurrences_are_declared_and_checked() {
        let first = Manifest::new("s1", "384", CompletionReason::NextOrder, vec![], "i");
        assert_eq!(first.occurrence, None);
        let v: serde_json::Value = serde_json::from_slice(&first.to_json()).unwrap();
        assert!(
            v.get("occurrence").is_none(),
            "first occurrences look as before"
        );
        let again = Manifest::new("s1", "384.3", CompletionReason::NextOrder, vec![], "i");
        assert_eq!(again.occurrence, Some(3));
        let v: serde_json::Value = serde_json::from_slice(&again.to_json()).unwrap();
        assert_eq!(v["occurrence"], 3);
        assert_eq!(Manifest::from_json(&again.to_json()).unwrap(), again);
        let mut wrong = again.clone();
        wrong.occurrence = Some(2);
        assert!(matches!(
            Manifest::from_json(&wrong.to_json()),
            Err(ManifestError::Occurrence { .. })
        ));
        let mut wrong = first;
        wrong.occurrence = Some(2);
        assert!(Manifest::from_json(&wrong.to_json()).is_err());
    }

    #[test]
    fn reasons_parse_from_their_names() {
        for r in [
            CompletionReason::NextOrder,
            CompletionReason::IdleTimeout,
            CompletionReason::MaxDuration,
            CompletionReason::EndOfStream,
            CompletionReason::Recovered,
        ] {
            assert_eq!(CompletionReason::parse(r.as_str()), Some(r));
            // serde writes the same name as `as_str`.
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert_eq!(CompletionReason::MaxDuration.as_str(), "max-duration");
        assert_eq!(CompletionReason::parse("eos"), None);
        assert_eq!(CompletionReason::parse("max_duration"), None);
    }

    #[test]
    fn a_max_duration_marker_round_trips() {
        let m = Manifest::new(
            "s1",
            "384",
            CompletionReason::MaxDuration,
            vec![frame(0, 1000)],
            "host-1",
        );
        let json = m.to_json();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["reason"], "max-duration");
        assert_eq!(
            Manifest::from_json(&json).unwrap().reason,
            CompletionReason::MaxDuration
        );
    }
}
