//! Retention against a real S3 server (oa_s3server on 127.0.0.1, SigV4, objects as files
//! under a scratch folder): objects are made old by setting their files' mtime, which the
//! server reports as LastModified. Frames, markers, results and claims share one bucket
//! and the empty prefix, so the frames listing also sees `results/`, `claims/`,
//! `expected/` and `outbox/`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use orchestrator::metrics::Metrics;
use orchestrator::retention::{PassReport, Retention, Settings};
use orchestrator::shutdown::Shutdown;
use orchestrator::store::Layout;
use orchestrator::testing::Scratch;

const ACCESS: &str = "retention-access";
const SECRET: &str = "retention-secret-0123456789";
const BUCKET: &str = "frames";
const DAY: Duration = Duration::from_secs(86_400);

fn settings(frames_days: u64, results_days: u64, batch: usize) -> Settings {
    Settings {
        layout: Layout {
            bucket: BUCKET.into(),
            prefix: String::new(),
            results_bucket: BUCKET.into(),
            results_prefix: String::new(),
        },
        frames_days,
        results_days,
        interval: Duration::from_secs(3600),
        first_pass_after: Duration::ZERO,
        batch,
        pause: Duration::from_millis(1),
        claim_ttl: Duration::from_secs(600),
        list_page_size: 3,
    }
}

/// Sets the LastModified of `key` to `age` ago.
fn backdate(s: &Scratch, key: &str, age: Duration) {
    let path = s.dir.join("s3").join(BUCKET).join(key);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .set_modified(SystemTime::now() - age)
        .expect("mtime set");
}

async fn keys(s: &Scratch) -> Vec<String> {
    let mut out = vec![];
    let mut after: Option<String> = None;
    loop {
        let (page, more) = s
            .store
            .list_page(BUCKET, "", after.as_deref(), 1000)
            .await
            .expect("LIST");
        out.extend(page.iter().map(|l| l.key.clone()));
        after = out.last().cloned();
        if !more || page.is_empty() {
            return out;
        }
    }
}

async fn put(s: &Scratch, key: &str, body: &str, age: Duration) {
    s.store
        .put(BUCKET, key, body.as_bytes().to_vec(), "application/json")
        .await
        .expect("PUT");
    backdate(s, key, age);
}

/// An order of three frames and its marker, every object `age` old.
async fn old_order(s: &Scratch, station: &str, order: &str, age: Duration) -> Vec<String> {
    let bodies = vec![s.jpeg(18); 3];
    let entries =
        orchestrator::testing::put_frames(&s.store, BUCKET, station, order, 0, 1, &bodies)
            .await
            .expect("frames");
    let m = oa_contract::Manifest::new(
        station,
        order,
        oa_contract::CompletionReason::NextOrder,
        entries.clone(),
        "test-1",
    );
    s.store.put_marker(BUCKET, "", &m).await.expect("marker");
    let mut all: Vec<String> = entries.into_iter().map(|e| e.key).collect();
    all.push(oa_contract::marker_key("", station, order).unwrap());
    for k in &all {
        backdate(s, k, age);
    }
    all
}

async fn pass(s: &Scratch, settings: Settings, metrics: &Arc<Metrics>) -> PassReport {
    let shutdown = Shutdown::new();
    Retention::new(s.store.clone(), settings, metrics.clone())
        .pass(&shutdown.listener())
        .await
        .expect("retention pass")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backdated_files_show_as_last_modified() {
    let s = Scratch::start("retention-mtime", ACCESS, SECRET, &[BUCKET]).await;
    put(&s, "a/b", "{}", 10 * DAY).await;
    let (page, _) = s.store.list_page(BUCKET, "", None, 10).await.unwrap();
    let lm = page[0].last_modified_ms.expect("a date");
    let age = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - lm;
    assert!((age - 10 * 86_400_000).abs() < 60_000, "age {age} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_orders_results_and_claims_go_and_the_rest_stays() {
    let s = Scratch::start("retention-pass", ACCESS, SECRET, &[BUCKET]).await;
    let metrics = Arc::new(Metrics::new());
    // Old orders: frames gone; the marker too once as old as results are kept (30 days),
    // else kept so that a reused number is still seen as one.
    let old_a = old_order(&s, "s1", "100", 8 * DAY).await;
    let (gone_a, kept_marker) = (&old_a[..3], &old_a[3]);
    let gone_b = old_order(&s, "s1", "101.2", 40 * DAY).await;
    // An old order with one recent frame: kept whole.
    let kept = old_order(&s, "s1", "102", 8 * DAY).await;
    backdate(&s, &kept[1], Duration::from_secs(3600));
    // A young order.
    let young = old_order(&s, "s2", "7", DAY).await;
    // Results: 40 days old goes, 20 days old stays (results_days = 30).
    put(&s, "results/s1/100.json", r#"{"revision":1}"#, 40 * DAY).await;
    put(&s, "results/s1/102.json", r#"{"revision":1}"#, 20 * DAY).await;
    put(&s, "results/s2/7.json", r#"{"revision":2}"#, 2 * DAY).await;
    // Claims: with a result and old: go; without a result, or fresh, or of a later
    // revision than the result: stay.
    let old = 2 * DAY;
    put(&s, "claims/s1/102", "{}", old).await;
    put(&s, "claims/s1/102.takeover-5", "{}", old).await;
    put(&s, "claims/s2/7", "{}", old).await;
    put(&s, "claims/s2/7.rev2", "{}", old).await;
    put(&s, "claims/s2/7.rev3", "{}", old).await; // result is revision 2
    put(&s, "claims/s2/8", "{}", old).await; // no result
    put(&s, "claims/s1/102.rev2", "{}", Duration::from_secs(60)).await; // fresh
    // Station index entries: gone once they announce a time older than frames_days and
    // are as old; a young one, or one announcing a recent time, stays.
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let day_ms = 86_400_000;
    let entry = |order: &str, days: u64| {
        oa_contract::index_key(
            "",
            "s1",
            order,
            oa_contract::IndexKind::Marker,
            now_ms - days * day_ms,
        )
        .unwrap()
    };
    let (index_old, index_young, index_recent_time) =
        (entry("100", 8), entry("7", 1), entry("9", 0));
    put(&s, &index_old, "{}", 8 * DAY).await;
    put(&s, &index_young, "{}", DAY).await;
    put(&s, &index_recent_time, "{}", 8 * DAY).await;
    put(&s, "checkpoints/s1.json", "{}", 90 * DAY).await;
    // Never touched, however old.
    put(&s, "expected/100.json", "{}", 90 * DAY).await;
    put(
        &s,
        "outbox/pos/0001700000000000_00000001_000000.json",
        "{}",
        90 * DAY,
    )
    .await;

    let report = pass(&s, settings(7, 30, 4), &metrics).await;
    let left = keys(&s).await;
    for k in gone_a.iter().chain(&gone_b) {
        assert!(!left.contains(k), "{k} kept: {left:?}");
    }
    assert!(
        left.contains(kept_marker),
        "{kept_marker} deleted: {left:?}"
    );
    for k in kept.iter().chain(&young) {
        assert!(left.contains(k), "{k} deleted: {left:?}");
    }
    assert!(!left.contains(&index_old), "{index_old} kept: {left:?}");
    for k in [&index_young, &index_recent_time] {
        assert!(left.contains(k), "{k} deleted: {left:?}");
    }
    for k in [
        "checkpoints/s1.json",
        "results/s1/102.json",
        "results/s2/7.json",
        "claims/s2/7.rev3",
        "claims/s2/8",
        "claims/s1/102.rev2",
        "expected/100.json",
        "outbox/pos/0001700000000000_00000001_000000.json",
    ] {
        assert!(left.iter().any(|l| l == k), "{k} deleted: {left:?}");
    }
    for k in [
        "results/s1/100.json",
        "claims/s1/102",
        "claims/s1/102.takeover-5",
        "claims/s2/7",
        "claims/s2/7.rev2",
    ] {
        assert!(!left.iter().any(|l| l == k), "{k} kept: {left:?}");
    }
    assert_eq!(
        (
            report.frames,
            report.markers,
            report.results,
            report.claims,
            report.index,
            report.refused
        ),
        (6, 1, 1, 4, 1, 0),
        "{report:?}"
    );
    let text = metrics.render(&[]);
    for want in [
        "oa_retention_deleted_total{kind=\"frames\"} 6\n",
        "oa_retention_deleted_total{kind=\"markers\"} 1\n",
        "oa_retention_deleted_total{kind=\"results\"} 1\n",
        "oa_retention_deleted_total{kind=\"claims\"} 4\n",
        "oa_retention_deleted_total{kind=\"index\"} 1\n",
        "oa_retention_passes_total 1\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("oa_retention_last_pass_timestamp_seconds 1")),
        "{text}"
    );
    // A second pass finds nothing more to delete.
    let again = pass(&s, settings(7, 30, 4), &metrics).await;
    assert_eq!(
        (
            again.frames,
            again.markers,
            again.results,
            again.claims,
            again.index
        ),
        (0, 0, 0, 0, 0)
    );
    assert_eq!(keys(&s).await, left);
    assert!(
        metrics
            .render(&[])
            .contains("oa_retention_passes_total 2\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_days_deletes_no_frames_nor_results() {
    let s = Scratch::start("retention-zero", ACCESS, SECRET, &[BUCKET]).await;
    let metrics = Arc::new(Metrics::new());
    let order = old_order(&s, "s1", "100", 400 * DAY).await;
    put(&s, "results/s1/100.json", r#"{"revision":1}"#, 400 * DAY).await;
    let report = pass(&s, settings(0, 0, 500), &metrics).await;
    let left = keys(&s).await;
    for k in &order {
        assert!(left.contains(k), "{k} deleted");
    }
    assert!(left.iter().any(|k| k == "results/s1/100.json"));
    assert_eq!((report.frames, report.markers, report.results), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_pass_sends_nothing_more() {
    let s = Scratch::start("retention-stop", ACCESS, SECRET, &[BUCKET]).await;
    let metrics = Arc::new(Metrics::new());
    let order = old_order(&s, "s1", "100", 8 * DAY).await;
    let shutdown = Shutdown::new();
    // (A trigger reaches the listeners that exist.)
    let stopping = shutdown.listener();
    shutdown.trigger();
    let report = Retention::new(s.store.clone(), settings(7, 0, 1), metrics)
        .pass(&stopping)
        .await
        .expect("pass");
    assert!(report.stopped);
    assert_eq!(report.frames + report.markers, 0);
    let left = keys(&s).await;
    assert!(order.iter().all(|k| left.contains(k)), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_many_deletes_and_absent_keys_are_fine() {
    let s = Scratch::start("retention-many", ACCESS, SECRET, &[BUCKET]).await;
    put(&s, "x/1", "1", Duration::ZERO).await;
    put(&s, "x/2", "2", Duration::ZERO).await;
    put(&s, "x/3", "3", Duration::ZERO).await;
    let refused = s
        .store
        .delete_many(BUCKET, &["x/1".into(), "x/3".into(), "x/absent".into()])
        .await
        .expect("DeleteObjects");
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(keys(&s).await, vec!["x/2".to_owned()]);
}
