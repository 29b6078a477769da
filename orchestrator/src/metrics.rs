//! Prometheus metrics through `prometheus-client`: counters and histograms the consumer
//! updates, and per-station pipeline series read from the supervisor at each scrape.

use std::collections::HashSet;
use std::fmt::Write as _;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
    MetricEncoder, text,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Metric, Registry};

use crate::status::{State, StationStatus};

/// The media type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const LATENCY_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// A label value escaped as the exposition formats require: prometheus-client writes
/// values verbatim, and a pipeline instance is read from a manifest in the store.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Value(String);

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value(v.to_owned())
    }
}

impl EncodeLabelValue for Value {
    fn encode(&self, out: &mut LabelValueEncoder) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => out.write_str("\\\\")?,
                '"' => out.write_str("\\\"")?,
                '\n' => out.write_str("\\n")?,
                c => out.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StationLabel {
    station: Value,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    station: Value,
    status: Value,
}

/// `oa_pipeline_info`: the pipeline instance is a new value at every restart, so it is
/// never a label of a counter (months of restarts would be months of series); one series
/// per station names the current one and is replaced at the next start.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    station: Value,
    pipeline_instance: Value,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: Value,
}

/// Any registered family, so that one table lists them all.
#[derive(Debug)]
struct Registered(Box<dyn Metric>);

impl EncodeMetric for Registered {
    fn encode(&self, out: MetricEncoder) -> std::fmt::Result {
        self.0.encode(out)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

type Latency = Family<StationLabel, Histogram, fn() -> Histogram>;

fn latency() -> Latency {
    Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS))
}

fn inc(family: &Family<StationLabel, Counter>, station: &str) {
    family
        .get_or_create(&StationLabel {
            station: station.into(),
        })
        .inc();
}

/// Counters and histograms updated by the consumer; pipeline series come from the
/// supervisor when rendered.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    orders: Family<StatusLabels, Counter>,
    order_latency: Latency,
    queue_latency: Latency,
    recognition_latency: Latency,
    frames_uploaded: Family<StationLabel, Counter>,
    /// `oa_orders_by_pipeline_instance_total`, kept for dashboards: by station only now.
    orders_by_instance: Family<StationLabel, Counter>,
    markers_seen: Family<StationLabel, Counter>,
    list_requests: Family<StationLabel, Counter>,
    orders_recovered: Family<StationLabel, Counter>,
    recognition_retries: Family<StationLabel, Counter>,
    errors: Family<KindLabel, Counter>,
    recognition_tokens: Family<KindLabel, Counter>,
    retention_deleted: Family<KindLabel, Counter>,
    retention_passes: Counter,
    retention_last_pass: Gauge<f64, std::sync::atomic::AtomicU64>,
}

/// What one processed order contributes.
pub struct OrderObservation<'a> {
    pub station: &'a str,
    pub status: &'a str,
    /// The child that stored the order (from its manifest): not a metric label, see
    /// `oa_pipeline_info`.
    pub pipeline_instance: &'a str,
    pub frames: u64,
    /// Marker stored -> result written.
    pub latency_s: Option<f64>,
    /// Marker stored -> processing started.
    pub queue_s: Option<f64>,
    pub recognition_s: Option<f64>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            orders: Family::default(),
            order_latency: latency(),
            queue_latency: latency(),
            recognition_latency: latency(),
            frames_uploaded: Family::default(),
            orders_by_instance: Family::default(),
            markers_seen: Family::default(),
            list_requests: Family::default(),
            orders_recovered: Family::default(),
            recognition_retries: Family::default(),
            errors: Family::default(),
            recognition_tokens: Family::default(),
            retention_deleted: Family::default(),
            retention_passes: Counter::default(),
            retention_last_pass: Gauge::default(),
        };
        // The registry adds the closing period to each help text, and `_total` to each
        // counter's name.
        let families: [(&str, &str, Box<dyn Metric>); 15] = [
            (
                "oa_orders",
                "Orders processed, by station and result status",
                Box::new(m.orders.clone()),
            ),
            (
                "oa_order_latency_seconds",
                "Time from the order's __EOS__ marker being stored to its result being stored",
                Box::new(m.order_latency.clone()),
            ),
            (
                "oa_order_queue_seconds",
                "Time from the order's __EOS__ marker being stored to processing starting",
                Box::new(m.queue_latency.clone()),
            ),
            (
                "oa_recognition_seconds",
                "Time spent in the recognition backend per order",
                Box::new(m.recognition_latency.clone()),
            ),
            (
                "oa_frames_uploaded",
                "Frames stored by the station pipelines, from the manifests of processed orders",
                Box::new(m.frames_uploaded.clone()),
            ),
            (
                "oa_orders_by_pipeline_instance",
                "Orders processed, by station (the same count as oa_orders_total summed over status; the pipeline instance, a new value at every restart, is no longer a label: see oa_pipeline_info)",
                Box::new(m.orders_by_instance.clone()),
            ),
            (
                "oa_markers_discovered",
                "New __EOS__ markers discovered",
                Box::new(m.markers_seen.clone()),
            ),
            (
                "oa_list_requests",
                "ListObjectsV2 requests made for marker discovery",
                Box::new(m.list_requests.clone()),
            ),
            (
                "oa_orders_recovered",
                "Markers written by the orchestrator for orders whose pipeline died before writing one (reason recovered)",
                Box::new(m.orders_recovered.clone()),
            ),
            (
                "oa_recognition_retries",
                "Recognition attempts that failed in a way that may pass and were tried again later",
                Box::new(m.recognition_retries.clone()),
            ),
            (
                "oa_errors",
                "Storage and processing errors, by kind",
                Box::new(m.errors.clone()),
            ),
            (
                "oa_recognition_tokens",
                "Tokens the VLM server counted, by kind (prompt, completion)",
                Box::new(m.recognition_tokens.clone()),
            ),
            (
                "oa_retention_deleted",
                "Objects deleted by retention, by kind (frames, markers, results, claims)",
                Box::new(m.retention_deleted.clone()),
            ),
            (
                "oa_retention_passes",
                "Retention passes completed",
                Box::new(m.retention_passes.clone()),
            ),
            (
                "oa_retention_last_pass_timestamp_seconds",
                "Unix time at which the last retention pass completed",
                Box::new(m.retention_last_pass.clone()),
            ),
        ];
        for (name, help, metric) in families {
            m.registry.register(name, help, Registered(metric));
        }
        m
    }

    pub fn order(&self, o: &OrderObservation<'_>) {
        let station = StationLabel {
            station: o.station.into(),
        };
        self.orders
            .get_or_create(&StatusLabels {
                station: o.station.into(),
                status: o.status.into(),
            })
            .inc();
        self.frames_uploaded
            .get_or_create(&station)
            .inc_by(o.frames);
        self.orders_by_instance.get_or_create(&station).inc();
        for (hist, v) in [
            (&self.order_latency, o.latency_s),
            (&self.queue_latency, o.queue_s),
            (&self.recognition_latency, o.recognition_s),
        ] {
            if let Some(v) = v {
                hist.get_or_create(&station).observe(v);
            }
        }
    }

    pub fn marker_seen(&self, station: &str) {
        inc(&self.markers_seen, station);
    }

    pub fn list_request(&self, station: &str) {
        inc(&self.list_requests, station);
    }

    /// The orchestrator wrote a `recovered` marker for an order of `station`.
    pub fn order_recovered(&self, station: &str) {
        inc(&self.orders_recovered, station);
    }

    /// An order of `station` will be recognised again after a failure that may pass.
    pub fn recognition_retry(&self, station: &str) {
        inc(&self.recognition_retries, station);
    }

    /// Tokens of one recognition (`usage` of the VLM's reply).
    pub fn recognition_tokens(&self, t: &crate::result::TokenUsage) {
        for (kind, n) in [("prompt", t.prompt), ("completion", t.completion)] {
            self.recognition_tokens
                .get_or_create(&KindLabel { kind: kind.into() })
                .inc_by(n);
        }
    }

    /// A storage or processing error, by kind.
    pub fn error(&self, kind: &str) {
        self.errors
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    /// Retention deleted `n` objects of `kind` (frames, markers, results, claims).
    pub fn retention_deleted(&self, kind: &str, n: u64) {
        self.retention_deleted
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc_by(n);
    }

    /// A retention pass completed at `unix_s`.
    pub fn retention_pass(&self, unix_s: f64) {
        self.retention_passes.inc();
        self.retention_last_pass.set(unix_s);
    }

    /// Number of LIST requests made for `station` so far.
    pub fn list_requests(&self, station: &str) -> u64 {
        self.list_requests
            .get(&StationLabel {
                station: station.into(),
            })
            .map_or(0, |c| c.get())
    }

    /// The Prometheus text exposition ([`CONTENT_TYPE`]).
    pub fn render(&self, stations: &[StationStatus]) -> String {
        self.render_with(stations, &SinkCounts::default())
    }

    /// [`Metrics::render`] with the event sinks' counters.
    pub fn render_with(&self, stations: &[StationStatus], sinks: &SinkCounts) -> String {
        let mut scrape = Registry::default();
        scrape.register_collector(Box::new(Pipelines(stations.to_vec())));
        scrape.register_collector(Box::new(sinks.clone()));
        let mut out = String::new();
        text::encode_registry(&mut out, &self.registry)
            .and_then(|()| text::encode_registry(&mut out, &scrape))
            .expect("writing to a String does not fail");
        prometheus_text(&out)
    }
}

/// The supervisor's view at scrape time, so a station's series never outlive it.
#[derive(Debug)]
struct Pipelines(Vec<StationStatus>);

impl Collector for Pipelines {
    fn encode(&self, mut out: DescriptorEncoder) -> std::fmt::Result {
        let flag = |on: bool| ConstGauge::new(i64::from(on));
        self.family(
            &mut out,
            "oa_pipeline_up",
            "1 while the station's pipeline is PLAYING.",
            |s| flag(s.state == State::Running),
        )?;
        self.family(
            &mut out,
            "oa_pipeline_failed",
            "1 while the station's pipeline is failing: more than max_failed_restarts restarts in a row failed (it is still retried).",
            |s| flag(s.state == State::Failing),
        )?;
        self.family(
            &mut out,
            "oa_pipeline_restarts",
            "Pipeline restarts since the orchestrator started.",
            |s| ConstCounter::new(u64::from(s.restarts)),
        )?;
        self.family(
            &mut out,
            "oa_station_config_revision",
            "The configuration revision the station runs with: 1 from the start, then the reload that added it or changed its settings.",
            |s| ConstGauge::new(s.config_revision as i64),
        )?;
        self.family(
            &mut out,
            "oa_station_configured_timestamp_seconds",
            "When the station was started with its current settings (Unix seconds).",
            |s| ConstGauge::new(s.configured_unix_ms as f64 / 1000.0),
        )?;
        self.family(
            &mut out,
            "oa_pipeline_frames_stored",
            "Frames the station's sink stored, over every pipeline run since the orchestrator started.",
            |s| ConstCounter::new(s.frames.stored),
        )?;
        self.family(
            &mut out,
            "oa_pipeline_frames_dropped",
            "Frames the station's sink did not store: frames of no order (between orders, normal), held frames no order took, frames with an invalid order ID; over every pipeline run since the orchestrator started.",
            |s| ConstCounter::new(s.frames.dropped),
        )?;
        {
            let mut metric = out.encode_descriptor(
                "oa_pipeline_info",
                "1 for the station's current (or last) pipeline instance, named by the label; replaced at every restart.",
                None,
                MetricType::Gauge,
            )?;
            for s in &self.0 {
                if let Some(instance) = &s.pipeline_instance {
                    let labels = InstanceLabels {
                        station: s.station_id.as_str().into(),
                        pipeline_instance: instance.as_str().into(),
                    };
                    ConstGauge::new(1).encode(metric.encode_family(&labels)?)?;
                }
            }
        }
        self.family(
            &mut out,
            "oa_pipeline_uptime_seconds",
            "Seconds since the current pipeline reached PLAYING.",
            // The text formats spell infinity `+Inf`, which the encoder does not.
            |s| {
                ConstGauge::new(if s.uptime_s.is_finite() {
                    s.uptime_s
                } else {
                    f64::NAN
                })
            },
        )
    }
}

/// The event sinks' counters at scrape time (filled by `crate::events`).
#[derive(Debug, Clone, Default)]
pub struct SinkCounts {
    /// Events handed to the subscribers since start.
    pub published: u64,
    pub webhooks: Vec<WebhookCounts>,
    pub mqtt: Option<MqttCounts>,
}

#[derive(Debug, Clone, Default)]
pub struct WebhookCounts {
    pub name: String,
    pub pending: u64,
    pub delivered: u64,
    pub failed_attempts: u64,
    pub refused: u64,
}

#[derive(Debug, Clone, Default)]
pub struct MqttCounts {
    pub queued: u64,
    pub dropped: u64,
    pub acknowledged: u64,
    pub connection_failures: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabel {
    webhook: Value,
}

/// Name, help, type and value of one per-webhook family.
type WebhookFamily = (
    &'static str,
    &'static str,
    MetricType,
    fn(&WebhookCounts) -> u64,
);

impl Collector for SinkCounts {
    fn encode(&self, mut out: DescriptorEncoder) -> std::fmt::Result {
        let total = |out: &mut DescriptorEncoder, name: &str, help: &str, v: u64| {
            let m = out.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(v).encode(m)
        };
        total(
            &mut out,
            "oa_events_published",
            "Events (order results, station changes) handed to the subscribers.",
            self.published,
        )?;
        let hooks: [WebhookFamily; 4] = [
            (
                "oa_webhook_pending",
                "Events waiting for the webhook's receiver (in the outbox).",
                MetricType::Gauge,
                |w| w.pending,
            ),
            (
                "oa_webhook_delivered",
                "Events the webhook's receiver accepted.",
                MetricType::Counter,
                |w| w.delivered,
            ),
            (
                "oa_webhook_failed_attempts",
                "Deliveries that failed and were tried again later.",
                MetricType::Counter,
                |w| w.failed_attempts,
            ),
            (
                "oa_webhook_refused",
                "Events the receiver refused for good (400, 410, 413, 422), dropped.",
                MetricType::Counter,
                |w| w.refused,
            ),
        ];
        if !self.webhooks.is_empty() {
            for (name, help, kind, value) in hooks {
                let mut m = out.encode_descriptor(name, help, None, kind)?;
                for w in &self.webhooks {
                    let labels = WebhookLabel {
                        webhook: w.name.as_str().into(),
                    };
                    let f = m.encode_family(&labels)?;
                    match kind {
                        MetricType::Gauge => ConstGauge::new(value(w) as i64).encode(f)?,
                        _ => ConstCounter::new(value(w)).encode(f)?,
                    }
                }
            }
        }
        if let Some(q) = &self.mqtt {
            total(
                &mut out,
                "oa_mqtt_queued",
                "Events queued for the MQTT broker.",
                q.queued,
            )?;
            total(
                &mut out,
                "oa_mqtt_dropped",
                "Events not published: the queue was full while the broker was unreachable.",
                q.dropped,
            )?;
            total(
                &mut out,
                "oa_mqtt_acknowledged",
                "Publications the broker acknowledged (QoS 1 and 2).",
                q.acknowledged,
            )?;
            total(
                &mut out,
                "oa_mqtt_connection_failures",
                "Connection attempts to the MQTT broker that failed, and connections that broke.",
                q.connection_failures,
            )?;
        }
        Ok(())
    }
}

impl Pipelines {
    /// One series per station. Unlike [`Registry::register`], the descriptor encoder
    /// takes the help text as written, closing period included.
    fn family<M: EncodeMetric + TypedMetric>(
        &self,
        out: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: impl Fn(&StationStatus) -> M,
    ) -> std::fmt::Result {
        let mut metric = out.encode_descriptor(name, help, None, M::TYPE)?;
        for s in &self.0 {
            let labels = StationLabel {
                station: s.station_id.as_str().into(),
            };
            value(s).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// prometheus-client writes OpenMetrics, whose counter descriptors omit the samples'
/// `_total` and which ends in `# EOF`; the Prometheus text format that promtool lints
/// and plain scrapers read names a counter's HELP and TYPE after its samples.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 12 * counters.len());
    for line in openmetrics.lines().filter(|l| *l != "# EOF") {
        let descriptor = ["# HELP ", "# TYPE "].into_iter().find_map(|p| {
            let (name, rest) = line.strip_prefix(p)?.split_once(' ')?;
            counters.contains(name).then_some((p, name, rest))
        });
        match descriptor {
            Some((p, name, rest)) => {
                let _ = writeln!(out, "{p}{name}_total {rest}");
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn station(id: &str, state: State, restarts: u32) -> StationStatus {
        StationStatus {
            state,
            restarts,
            uptime_s: 1.5,
            frames: crate::status::FrameCounts {
                received: 10 + u64::from(restarts),
                stored: 8,
                dropped: u64::from(restarts),
            },
            ..StationStatus::new(id)
        }
    }

    #[test]
    fn exposition_names_types_and_escapes_as_before() {
        let m = Metrics::new();
        m.order(&OrderObservation {
            station: "s1",
            status: "validated",
            pipeline_instance: "s1-\"1\"\\\n",
            frames: 3,
            latency_s: Some(0.3),
            queue_s: None,
            recognition_s: Some(400.0),
        });
        m.list_request("s1");
        m.list_request("s1");
        m.retention_deleted("frames", 5);
        m.retention_deleted("frames", 2);
        m.retention_deleted("claims", 0);
        m.retention_pass(1_700_000_000.5);
        assert_eq!((m.list_requests("s1"), m.list_requests("s2")), (2, 0));
        let text = m.render(&[
            StationStatus {
                pipeline_instance: Some("s1-\"1\"\\\n".into()),
                ..station("s1", State::Running, 0)
            },
            station("s2", State::Failing, 7),
        ]);
        for want in [
            "# HELP oa_orders_total Orders processed, by station and result status.\n",
            "# TYPE oa_orders_total counter\n",
            "oa_orders_total{station=\"s1\",status=\"validated\"} 1\n",
            "oa_frames_uploaded_total{station=\"s1\"} 3\n",
            "oa_orders_by_pipeline_instance_total{station=\"s1\"} 1\n",
            "# TYPE oa_pipeline_info gauge\n",
            "oa_pipeline_info{station=\"s1\",pipeline_instance=\"s1-\\\"1\\\"\\\\\\n\"} 1\n",
            "# TYPE oa_order_latency_seconds histogram\n",
            "oa_order_latency_seconds_count{station=\"s1\"} 1\n",
            "oa_recognition_seconds_bucket{le=\"+Inf\",station=\"s1\"} 1\n",
            "oa_recognition_seconds_bucket{le=\"300.0\",station=\"s1\"} 0\n",
            "oa_list_requests_total{station=\"s1\"} 2\n",
            "# TYPE oa_pipeline_up gauge\n",
            "oa_pipeline_up{station=\"s1\"} 1\n",
            "oa_pipeline_failed{station=\"s2\"} 1\n",
            "# TYPE oa_pipeline_restarts_total counter\n",
            "oa_pipeline_restarts_total{station=\"s2\"} 7\n",
            "oa_pipeline_uptime_seconds{station=\"s1\"} 1.5\n",
            "oa_pipeline_frames_stored_total{station=\"s1\"} 8\n",
            "oa_pipeline_frames_dropped_total{station=\"s2\"} 7\n",
            "# TYPE oa_station_config_revision gauge\n",
            "oa_station_config_revision{station=\"s1\"} 1\n",
            "# TYPE oa_retention_deleted_total counter\n",
            "oa_retention_deleted_total{kind=\"frames\"} 7\n",
            "oa_retention_deleted_total{kind=\"claims\"} 0\n",
            "oa_retention_passes_total 1\n",
            "# TYPE oa_retention_last_pass_timestamp_seconds gauge\n",
            "oa_retention_last_pass_timestamp_seconds 1700000000.5\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        assert!(!text.contains("# EOF"), "{text}");
        assert!(!text.contains("oa_webhook"), "no webhook, no series");
        assert!(
            !text.contains("oa_pipeline_info{station=\"s2\""),
            "a station never started has no instance"
        );
        // However often a station restarts, its series stay the same: the instance is in
        // no counter's labels, and oa_pipeline_info names only the current one.
        for n in 0..10 {
            m.order(&OrderObservation {
                station: "s9",
                status: "validated",
                pipeline_instance: &format!("s9-{n}"),
                frames: 1,
                latency_s: None,
                queue_s: None,
                recognition_s: None,
            });
        }
        let text = m.render(&[StationStatus {
            pipeline_instance: Some("s9-9".into()),
            ..station("s9", State::Running, 9)
        }]);
        let s9: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("station=\"s9\"") && l.contains("s9-"))
            .collect();
        assert_eq!(
            s9,
            vec!["oa_pipeline_info{station=\"s9\",pipeline_instance=\"s9-9\"} 1"],
            "{text}"
        );
        assert!(text.contains("oa_orders_by_pipeline_instance_total{station=\"s9\"} 10\n"));
        assert!(text.contains("oa_orders_total{station=\"s9\",status=\"validated\"} 10\n"));
        let text = m.render_with(
            &[],
            &SinkCounts {
                published: 5,
                webhooks: vec![WebhookCounts {
                    name: "pos".into(),
                    pending: 2,
                    delivered: 3,
                    ..WebhookCounts::default()
                }],
                mqtt: Some(MqttCounts {
                    dropped: 4,
                    ..MqttCounts::default()
                }),
            },
        );
        for want in [
            "oa_events_published_total 5\n",
            "# TYPE oa_webhook_pending gauge\n",
            "oa_webhook_pending{webhook=\"pos\"} 2\n",
            "oa_webhook_delivered_total{webhook=\"pos\"} 3\n",
            "oa_mqtt_dropped_total 4\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        assert!(
            !text.contains("oa_order_queue_seconds"),
            "no observation, no series"
        );
    }

    #[test]
    fn vlm_tokens_add_up_by_kind() {
        let m = Metrics::new();
        for (p, c) in [(1000, 20), (1500, 22)] {
            m.recognition_tokens(&crate::result::TokenUsage {
                prompt: p,
                completion: c,
            });
        }
        let text = m.render(&[]);
        assert!(
            text.contains("oa_recognition_tokens_total{kind=\"prompt\"} 2500\n"),
            "{text}"
        );
        assert!(
            text.contains("oa_recognition_tokens_total{kind=\"completion\"} 42\n"),
            "{text}"
        );
    }
}
