//! deploy/grafana/order-accuracy.json parses, has the panels docs/deploy.md names, and
//! every metric and label its queries use is one `/metrics` exports.

use std::collections::BTreeSet;

use orchestrator::metrics::{Metrics, OrderObservation};
use orchestrator::status::StationStatus;

fn dashboard() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/order-accuracy.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every PromQL expression of the dashboard (panels and template variables).
fn exprs(d: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            out.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["definition"].as_str() {
            out.push(q.to_owned());
        }
    }
    out
}

/// `oa_*` identifiers in `expr`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("oa_") {
        let start = i + at;
        let before_ok =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        if before_ok {
            out.push(expr[start..end].to_owned());
        }
        i = end;
    }
    out
}

/// What /metrics serves with one station running and one order of each status recorded.
fn exposition() -> String {
    let m = Metrics::new();
    for status in ["validated", "mismatch"] {
        m.order(&OrderObservation {
            station: "station_1",
            status,
            pipeline_instance: "p1",
            frames: 4,
            latency_s: Some(1.5),
            queue_s: Some(0.1),
            recognition_s: Some(0.5),
        });
    }
    m.error("storage");
    m.render(&[StationStatus::new("station_1")])
}

#[test]
fn the_dashboard_queries_only_what_metrics_exports() {
    let d = dashboard();
    let text = exposition();
    // Sample names as served (counters with _total, histograms with _bucket...).
    let served: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    let mut used = BTreeSet::new();
    for e in exprs(&d) {
        for name in metric_names(&e) {
            assert!(
                served.contains(name.as_str()),
                "the dashboard queries {name}, which /metrics does not export (it has: {served:?})"
            );
            used.insert(name);
        }
        for label in ["station", "status", "kind", "le"] {
            if e.contains(&format!("by ({label})")) || e.contains(&format!("{label}=")) {
                assert!(
                    text.contains(&format!("{label}=\"")),
                    "the dashboard groups by {label}, which no series carries"
                );
            }
        }
    }
    for needed in [
        "oa_pipeline_up",
        "oa_pipeline_restarts_total",
        "oa_orders_total",
        "oa_order_latency_seconds_bucket",
    ] {
        assert!(used.contains(needed), "no panel uses {needed}");
    }
}

#[test]
fn the_dashboard_has_the_panels_the_deploy_guide_names() {
    let d = dashboard();
    let titles: Vec<String> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_lowercase())
        .collect();
    for want in [
        "stations up",
        "restarts",
        "orders per minute",
        "mismatch rate",
        "latency histogram",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(want)),
            "no panel for {want}: {titles:?}"
        );
    }
    let ids: BTreeSet<u64> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), titles.len(), "panel ids must be unique");
}

#[test]
fn the_checker_sees_a_metric_that_does_not_exist() {
    assert_eq!(
        metric_names("rate(oa_orders_total[5m]) / foo_oa_x + oa_nope"),
        ["oa_orders_total", "oa_nope"]
    );
    let text = exposition();
    assert!(!text.lines().any(|l| l.starts_with("oa_nope")));
}
