//! Logging (one timestamped line per event on stderr) and Prometheus metrics in the text
//! exposition format, without a metrics crate.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::supervise::{State, StationStatus};

/// `2026-11-28T16:23:00.123Z`, UTC.
pub fn timestamp() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Writes one log line to stderr.
pub fn log(args: fmt::Arguments<'_>) {
    eprintln!("{} {args}", timestamp());
}

const LATENCY_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

#[derive(Default)]
struct Inner {
    orders: BTreeMap<(String, String), u64>,
    order_latency: BTreeMap<String, Histogram>,
    queue_latency: BTreeMap<String, Histogram>,
    recognition_latency: BTreeMap<String, Histogram>,
    frames_uploaded: BTreeMap<String, u64>,
    orders_by_instance: BTreeMap<(String, String), u64>,
    markers_seen: BTreeMap<String, u64>,
    list_requests: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

/// Counters and histograms updated by the consumer; pipeline gauges come from the
/// supervisor when rendered.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// What one processed order contributes.
pub struct OrderObservation<'a> {
    pub station: &'a str,
    pub status: &'a str,
    pub pipeline_instance: &'a str,
    pub frames: u64,
    /// Marker stored -> result written.
    pub latency_s: Option<f64>,
    /// Marker stored -> processing started.
    pub queue_s: Option<f64>,
    pub recognition_s: Option<f64>,
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "NaN".into()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    pub fn order(&self, o: &OrderObservation<'_>) {
        let mut m = self.inner.lock().unwrap();
        *m.orders
            .entry((o.station.to_owned(), o.status.to_owned()))
            .or_default() += 1;
        *m.frames_uploaded.entry(o.station.to_owned()).or_default() += o.frames;
        *m.orders_by_instance
            .entry((o.station.to_owned(), o.pipeline_instance.to_owned()))
            .or_default() += 1;
        if let Some(v) = o.latency_s {
            m.order_latency
                .entry(o.station.to_owned())
                .or_default()
                .observe(v);
        }
        if let Some(v) = o.queue_s {
            m.queue_latency
                .entry(o.station.to_owned())
                .or_default()
                .observe(v);
        }
        if let Some(v) = o.recognition_s {
            m.recognition_latency
                .entry(o.station.to_owned())
                .or_default()
                .observe(v);
        }
    }

    pub fn marker_seen(&self, station: &str) {
        *self
            .inner
            .lock()
            .unwrap()
            .markers_seen
            .entry(station.to_owned())
            .or_default() += 1;
    }

    pub fn list_request(&self, station: &str) {
        *self
            .inner
            .lock()
            .unwrap()
            .list_requests
            .entry(station.to_owned())
            .or_default() += 1;
    }

    /// A storage or processing error, by kind.
    pub fn error(&self, kind: &str) {
        *self
            .inner
            .lock()
            .unwrap()
            .errors
            .entry(kind.to_owned())
            .or_default() += 1;
    }

    /// Number of LIST requests made for `station` so far.
    pub fn list_requests(&self, station: &str) -> u64 {
        self.inner
            .lock()
            .unwrap()
            .list_requests
            .get(station)
            .copied()
            .unwrap_or(0)
    }

    /// The Prometheus text exposition.
    pub fn render(&self, stations: &[StationStatus]) -> String {
        let m = self.inner.lock().unwrap();
        let mut out = String::new();
        let header = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };

        header(
            &mut out,
            "oa_orders_total",
            "counter",
            "Orders processed, by station and result status.",
        );
        for ((station, status), v) in &m.orders {
            let _ = writeln!(
                out,
                "oa_orders_total{{station=\"{}\",status=\"{}\"}} {v}",
                esc(station),
                esc(status)
            );
        }
        for (name, help, hists) in [
            (
                "oa_order_latency_seconds",
                "Time from the order's __EOS__ marker being stored to its result being stored.",
                &m.order_latency,
            ),
            (
                "oa_order_queue_seconds",
                "Time from the order's __EOS__ marker being stored to processing starting.",
                &m.queue_latency,
            ),
            (
                "oa_recognition_seconds",
                "Time spent in the recognition backend per order.",
                &m.recognition_latency,
            ),
        ] {
            header(&mut out, name, "histogram", help);
            for (station, h) in hists {
                let st = esc(station);
                for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{station=\"{st}\",le=\"{b}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{{station=\"{st}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(out, "{name}_sum{{station=\"{st}\"}} {}", num(h.sum));
                let _ = writeln!(out, "{name}_count{{station=\"{st}\"}} {}", h.count);
            }
        }
        header(
            &mut out,
            "oa_frames_uploaded_total",
            "counter",
            "Frames stored by the station pipelines, from the manifests of processed orders.",
        );
        for (station, v) in &m.frames_uploaded {
            let _ = writeln!(
                out,
                "oa_frames_uploaded_total{{station=\"{}\"}} {v}",
                esc(station)
            );
        }
        header(
            &mut out,
            "oa_orders_by_pipeline_instance_total",
            "counter",
            "Orders processed, by the pipeline instance that stored them.",
        );
        for ((station, inst), v) in &m.orders_by_instance {
            let _ = writeln!(
                out,
                "oa_orders_by_pipeline_instance_total{{station=\"{}\",pipeline_instance=\"{}\"}} {v}",
                esc(station),
                esc(inst)
            );
        }
        header(
            &mut out,
            "oa_markers_discovered_total",
            "counter",
            "New __EOS__ markers discovered.",
        );
        for (station, v) in &m.markers_seen {
            let _ = writeln!(
                out,
                "oa_markers_discovered_total{{station=\"{}\"}} {v}",
                esc(station)
            );
        }
        header(
            &mut out,
            "oa_list_requests_total",
            "counter",
            "ListObjectsV2 requests made for marker discovery.",
        );
        for (station, v) in &m.list_requests {
            let _ = writeln!(
                out,
                "oa_list_requests_total{{station=\"{}\"}} {v}",
                esc(station)
            );
        }
        header(
            &mut out,
            "oa_errors_total",
            "counter",
            "Storage and processing errors, by kind.",
        );
        for (kind, v) in &m.errors {
            let _ = writeln!(out, "oa_errors_total{{kind=\"{}\"}} {v}", esc(kind));
        }
        drop(m);

        header(
            &mut out,
            "oa_pipeline_up",
            "gauge",
            "1 while the station's pipeline is PLAYING.",
        );
        for s in stations {
            let _ = writeln!(
                out,
                "oa_pipeline_up{{station=\"{}\"}} {}",
                esc(&s.station_id),
                u8::from(s.state == State::Running)
            );
        }
        header(
            &mut out,
            "oa_pipeline_failed",
            "gauge",
            "1 once the station's pipeline gave up after too many failed restarts.",
        );
        for s in stations {
            let _ = writeln!(
                out,
                "oa_pipeline_failed{{station=\"{}\"}} {}",
                esc(&s.station_id),
                u8::from(s.state == State::Failed)
            );
        }
        header(
            &mut out,
            "oa_pipeline_restarts_total",
            "counter",
            "Pipeline restarts since the orchestrator started.",
        );
        for s in stations {
            let _ = writeln!(
                out,
                "oa_pipeline_restarts_total{{station=\"{}\"}} {}",
                esc(&s.station_id),
                s.restarts
            );
        }
        header(
            &mut out,
            "oa_pipeline_uptime_seconds",
            "gauge",
            "Seconds since the current pipeline reached PLAYING.",
        );
        for s in stations {
            let _ = writeln!(
                out,
                "oa_pipeline_uptime_seconds{{station=\"{}\"}} {}",
                esc(&s.station_id),
                num(s.uptime_s)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamp_shape() {
        let t = super::timestamp();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T');
    }
}
