//! Fixtures shared by the orchestrator's tests and benchmarks; not part of its API.

use oa_contract::{FrameEntry, frame_key};

use crate::store::{Store, StoreError};

/// Capture time of frame 0 in the fixtures (Unix ms).
pub const FIRST_FRAME_UNIX_MS: u64 = 1_700_000_000_000;

/// Stores `bodies` as JPEG frames `first_seq..` of `order` (no key prefix), captured
/// `step_ms` apart from [`FIRST_FRAME_UNIX_MS`] at seq 0, and returns their manifest
/// entries.
pub async fn put_frames(
    store: &Store,
    bucket: &str,
    station: &str,
    order: &str,
    first_seq: u32,
    step_ms: u64,
    bodies: &[Vec<u8>],
) -> Result<Vec<FrameEntry>, StoreError> {
    let mut entries = vec![];
    for (seq, b) in (first_seq..).zip(bodies) {
        let unix_ms = FIRST_FRAME_UNIX_MS + u64::from(seq) * step_ms;
        let key =
            frame_key("", station, order, unix_ms, seq).map_err(|e| StoreError(e.to_string()))?;
        store.put(bucket, &key, b.clone(), "image/jpeg").await?;
        entries.push(FrameEntry {
            key,
            seq,
            unix_ms,
            bytes: b.len() as u64,
        });
    }
    Ok(entries)
}
