//! `GET /api/stats`: per-station counts of the final results, and the mismatch rate.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::result::{OrderResult, OrderStatus};

#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Counts {
    /// Final results (every status below but `awaiting`).
    pub orders: u64,
    pub validated: u64,
    pub mismatch: u64,
    pub unknown_order: u64,
    /// `no-frames` and `recognition-failed`: bags nobody could check.
    pub unchecked: u64,
    /// Recognised, expected items not known yet (not a final result).
    pub awaiting: u64,
    /// `mismatch / (validated + mismatch)`: wrong bags among those checked; `null` before
    /// the first.
    pub mismatch_rate: Option<f64>,
}

impl Counts {
    fn add(&mut self, status: OrderStatus) {
        match status {
            OrderStatus::Validated => self.validated += 1,
            OrderStatus::Mismatch => self.mismatch += 1,
            OrderStatus::UnknownOrder => self.unknown_order += 1,
            OrderStatus::NoFrames | OrderStatus::RecognitionFailed => self.unchecked += 1,
            OrderStatus::AwaitingOrder => {
                self.awaiting += 1;
                return;
            }
        }
        self.orders += 1;
    }

    fn finish(&mut self) {
        let checked = self.validated + self.mismatch;
        self.mismatch_rate = (checked > 0).then(|| self.mismatch as f64 / checked as f64);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StationCounts {
    pub station_id: String,
    #[serde(flatten)]
    pub counts: Counts,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Stats {
    /// The start of the window in Unix ms; `null`: every result this process knows.
    pub since_unix_ms: Option<u64>,
    pub total: Counts,
    pub stations: Vec<StationCounts>,
}

/// When the order's bag was complete: its marker's time, else its last frame's.
pub fn completed_ms(r: &OrderResult) -> Option<u64> {
    r.marker_last_modified_ms
        .and_then(|m| u64::try_from(m).ok())
        .or(r.manifest_last_unix_ms)
}

/// Counts `results` completed at or after `since` (all when `None`; results of unknown
/// time only then), over `stations` (listed even when they have no result) and every
/// station a result names.
pub fn compute(results: &[OrderResult], stations: &[String], since: Option<u64>) -> Stats {
    let mut per: BTreeMap<&str, Counts> = stations
        .iter()
        .map(|s| (s.as_str(), Counts::default()))
        .collect();
    let mut total = Counts::default();
    for r in results {
        if let Some(since) = since
            && completed_ms(r).is_none_or(|t| t < since)
        {
            continue;
        }
        per.entry(&r.station_id)
            .or_default()
            .add(r.validation.status);
        total.add(r.validation.status);
    }
    total.finish();
    // Configuration order first, then the others by name.
    let mut out: Vec<StationCounts> = Vec::with_capacity(per.len());
    for s in stations {
        if let Some(mut c) = per.remove(s.as_str()) {
            c.finish();
            out.push(StationCounts {
                station_id: s.clone(),
                counts: c,
            });
        }
    }
    for (s, mut c) in per {
        c.finish();
        out.push(StationCounts {
            station_id: s.to_owned(),
            counts: c,
        });
    }
    Stats {
        since_unix_ms: since,
        total,
        stations: out,
    }
}

/// `since`: Unix ms (`1700000000000`) or a span back from `now_ms` (`90s`, `15m`, `8h`,
/// `7d`).
pub fn parse_since(s: &str, now_ms: u64) -> Result<u64, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let unit = match s.chars().last() {
        Some('s') => 1_000,
        Some('m') => 60_000,
        Some('h') => 3_600_000,
        Some('d') => 86_400_000,
        _ => 0,
    };
    match s[..s.len().saturating_sub(1)].parse::<u64>() {
        Ok(n) if unit > 0 => Ok(now_ms.saturating_sub(n.saturating_mul(unit))),
        _ => Err(format!(
            "since: {s:?} is neither Unix milliseconds nor a span such as 15m, 8h or 7d"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(station: &str, status: OrderStatus, at: Option<i64>) -> OrderResult {
        OrderResult::example(station, "1", status, at)
    }

    #[test]
    fn counts_and_rates_per_station_in_a_window() {
        use OrderStatus::*;
        let results = [
            result("b", Validated, Some(1000)),
            result("b", Mismatch, Some(2000)),
            result("b", Validated, Some(3000)),
            result("b", Mismatch, Some(500)),
            result("x", UnknownOrder, None),
            result("b", AwaitingOrder, Some(2500)),
        ];
        let stations = ["a".to_owned(), "b".to_owned()];
        let all = compute(&results, &stations, None);
        let names: Vec<&str> = all.stations.iter().map(|s| s.station_id.as_str()).collect();
        assert_eq!(names, ["a", "b", "x"]);
        assert_eq!(all.stations[0].counts.mismatch_rate, None);
        let b = &all.stations[1].counts;
        assert_eq!(
            (b.orders, b.validated, b.mismatch, b.awaiting),
            (4, 2, 2, 1)
        );
        assert_eq!(b.mismatch_rate, Some(0.5));
        assert_eq!(all.total.orders, 5);
        let window = compute(&results, &stations, Some(1000));
        let b = &window.stations[1].counts;
        assert_eq!((b.orders, b.mismatch), (3, 1));
        assert!((b.mismatch_rate.unwrap() - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(window.stations.len(), 2, "x has no result of a known time");
    }

    #[test]
    fn since_takes_milliseconds_or_a_span() {
        assert_eq!(parse_since("1700000000000", 0).unwrap(), 1_700_000_000_000);
        assert_eq!(parse_since("15m", 1_000_000).unwrap(), 100_000);
        assert_eq!(parse_since("2d", 1_000).unwrap(), 0);
        assert!(
            parse_since("yesterday", 0)
                .unwrap_err()
                .starts_with("since:")
        );
        assert!(parse_since("h", 0).is_err());
    }
}
