//! The consumer against a real S3 server (oa_s3server on 127.0.0.1, SigV4): exactly once
//! across a restart and between two consumers, and per-order errors for missing or corrupt
//! frames while the next orders still flow. Recognition is a test double.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oa_contract::{CompletionReason, FrameEntry, IndexKind, Manifest, frame_key};
use orchestrator::consume::{Consumer, ConsumerDeps, Settings};
use orchestrator::metrics::Metrics;
use orchestrator::orders::{Inventory, Orders};
use orchestrator::recognize::Recognizer;
use orchestrator::result::{OrderResult, OrderStatus};
use orchestrator::testing::{RecognizerDouble, Scratch, consumer_settings, put_frames};
use tokio::sync::watch;

const ACCESS: &str = "consume-access";
const SECRET: &str = "consume-secret-0123456789";
const BUCKET: &str = "frames";

struct Env {
    scratch: Scratch,
    jpegs: Vec<Vec<u8>>,
}

async fn env(tag: &str) -> Env {
    let scratch = Scratch::start(&format!("consume-{tag}"), ACCESS, SECRET, &[BUCKET]).await;
    let jpegs = [0, 1, 18].iter().map(|p| scratch.jpeg(*p)).collect();
    Env { scratch, jpegs }
}

impl Env {
    /// Stores `bodies` as frames 1 ms apart and then the marker of `order`.
    async fn put_order(&self, station: &str, order: &str, bodies: &[Vec<u8>]) {
        let entries = put_frames(&self.scratch.store, BUCKET, station, order, 0, 1, bodies)
            .await
            .unwrap();
        self.put_marker(station, order, entries).await;
    }

    /// Stores `bodies` as frames `first_seq..` of `order` (one second apart) and returns
    /// their manifest entries.
    async fn put_frames(
        &self,
        station: &str,
        order: &str,
        first_seq: u32,
        bodies: &[Vec<u8>],
    ) -> Vec<FrameEntry> {
        put_frames(
            &self.scratch.store,
            BUCKET,
            station,
            order,
            first_seq,
            1000,
            bodies,
        )
        .await
        .unwrap()
    }

    async fn put_marker(&self, station: &str, order: &str, entries: Vec<FrameEntry>) {
        let m = Manifest::new(
            station,
            order,
            CompletionReason::NextOrder,
            entries,
            "test-1",
        );
        self.scratch.store.put_marker(BUCKET, "", &m).await.unwrap();
    }

    fn puts_of(&self, prefix: &str) -> Vec<String> {
        self.scratch
            .server
            .put_log()
            .into_iter()
            .filter(|k| k.starts_with(prefix))
            .collect()
    }

    fn result(&self, station: &str, order: &str) -> Option<OrderResult> {
        let body = self
            .scratch
            .server
            .read_object(BUCKET, &format!("results/{station}/{order}.json"))
            .ok()?;
        Some(serde_json::from_slice(&body).unwrap())
    }

    /// The status of the stored result of `order` (which must exist).
    fn status(&self, station: &str, order: &str) -> OrderStatus {
        self.result(station, order).unwrap().validation.status
    }

    /// Stores `body` at `key` as JSON.
    async fn put_json(&self, key: &str, body: impl Into<Vec<u8>>) {
        self.scratch
            .store
            .put(BUCKET, key, body.into(), "application/json")
            .await
            .unwrap();
    }

    /// Runs a fresh consumer (`host-a`, recognition by a new double) until it has
    /// processed `n` orders, stops it and returns the double.
    async fn process(&self, n: u64) -> Arc<RecognizerDouble> {
        let rec = double();
        let c = self.consumer("host-a", rec.clone());
        let r = run(&c);
        wait_processed(&c, n).await;
        r.stop().await;
        rec
    }

    fn consumer(&self, owner: &str, recognizer: Arc<RecognizerDouble>) -> Arc<Consumer> {
        self.consumer_with_ttl(owner, recognizer, Duration::from_secs(600))
    }

    fn consumer_with_ttl(
        &self,
        owner: &str,
        recognizer: Arc<RecognizerDouble>,
        claim_ttl: Duration,
    ) -> Arc<Consumer> {
        self.consumer_with(owner, recognizer, claim_ttl, Duration::from_secs(5), None)
    }

    fn consumer_with(
        &self,
        owner: &str,
        recognizer: Arc<dyn Recognizer>,
        claim_ttl: Duration,
        recognition_retry: Duration,
        orphan_after: Option<Duration>,
    ) -> Arc<Consumer> {
        Consumer::new(ConsumerDeps {
            store: self.scratch.store.clone(),
            settings: Settings {
                max_concurrent_orders: 3,
                frames_per_order: 2,
                claim_ttl,
                list_page_size: 7,
                owner: owner.into(),
                recognition_retry,
                retry_delay: Duration::from_millis(100),
                orphan_after,
                ..consumer_settings(&["station_1", "station_2"], BUCKET, "")
            },
            recognizer,
            orders: Arc::new(
                Orders::from_json(
                    r#"{"384":[{"name":"apple","quantity":1}],"1":[{"name":"apple","quantity":1}],
                        "2":[{"name":"apple","quantity":1}],"3":[{"name":"apple","quantity":1}]}"#,
                )
                .unwrap(),
            ),
            inventory: Arc::new(
                Inventory::from_json(r#"{"items":[{"id":"001","name":"apple","aliases":[]}]}"#)
                    .unwrap(),
            ),
            metrics: Arc::new(Metrics::new()),
            detector: None,
            expected: None,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_that_may_pass_are_retried_with_backoff_then_given_a_final_status() {
    // Down for 3 calls, then back: the orders wait, no result is written meanwhile.
    let (e, flaky) = recognise_with_a_flaky_vlm("retry", 3, Duration::from_secs(60), 2).await;
    let results = [
        e.result("station_1", "384").unwrap(),
        e.result("station_2", "1").unwrap(),
    ];
    assert!(
        results
            .iter()
            .all(|r| r.validation.status == OrderStatus::Validated),
        "{results:?}"
    );
    let attempts: usize = results
        .iter()
        .map(|r| r.recognition_attempts as usize)
        .sum();
    assert_eq!(
        attempts,
        3 + 2,
        "3 failed calls and 2 good ones, recorded per order"
    );
    assert_eq!(flaky.calls(), 5);

    // Down for good: after the retry window, a final recognition-failed with its attempts.
    let (e, down) =
        recognise_with_a_flaky_vlm("retry-final", usize::MAX, Duration::from_millis(500), 1).await;
    let res = e.result("station_1", "384").unwrap();
    assert_eq!(res.validation.status, OrderStatus::RecognitionFailed);
    assert!(res.recognition_attempts >= 2, "{res:?}");
    assert_eq!(res.recognition_attempts as usize, down.calls());
    assert!(res.error.unwrap().contains("connection refused"));
}

/// `orders` orders (384 at station_1, then 1 at station_2) recognised by a VLM double
/// that fails its first `failures` calls, retried for `window`; returns once every
/// order has a result.
async fn recognise_with_a_flaky_vlm(
    tag: &str,
    failures: usize,
    window: Duration,
    orders: u64,
) -> (Env, Arc<RecognizerDouble>) {
    let e = env(tag).await;
    for (station, order) in [("station_1", "384"), ("station_2", "1")]
        .iter()
        .take(orders as usize)
    {
        e.put_order(station, order, &e.jpegs).await;
    }
    let flaky = Arc::new(RecognizerDouble::sees(&[("apple", 1)]).failing_first(failures));
    let c = e.consumer_with(
        "host-a",
        flaky.clone(),
        Duration::from_secs(600),
        window,
        None,
    );
    let r = run(&c);
    wait_until(Duration::from_secs(30), "every result", || {
        c.processed_count() == orders
    })
    .await;
    r.stop().await;
    (e, flaky)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_result_does_not_count_as_done() {
    let e = env("corrupt-result").await;
    e.put_order("station_1", "384", &e.jpegs).await;
    e.put_json("results/station_1/384.json", b"{not json").await;
    let rec = e.process(1).await;
    assert_eq!(e.status("station_1", "384"), OrderStatus::Validated);
    assert_eq!(rec.calls(), 1);
}

/// A recogniser that sees an apple in every order.
fn double() -> Arc<RecognizerDouble> {
    Arc::new(RecognizerDouble::sees(&[("apple", 1)]))
}

/// Waits (20 s at most) until `c` has processed `n` orders.
async fn wait_processed(c: &Consumer, n: u64) {
    wait_until(Duration::from_secs(20), &format!("{n} results"), || {
        c.processed_count() == n
    })
    .await;
}

async fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn run(c: &Arc<Consumer>) -> Running {
    let (stop, rx) = watch::channel(false);
    Running {
        stop,
        task: tokio::spawn(c.clone().run(rx.into())),
    }
}

/// Runs two replicas until `done`, then `linger` more, then stops both.
async fn run_both(
    a: &Arc<Consumer>,
    b: &Arc<Consumer>,
    what: &str,
    linger: Duration,
    done: impl FnMut() -> bool,
) {
    let (run_a, run_b) = (run(a), run(b));
    wait_until(Duration::from_secs(30), what, done).await;
    tokio::time::sleep(linger).await;
    run_a.stop().await;
    run_b.stop().await;
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_order_is_processed_once_across_a_restart() {
    let e = env("restart").await;
    for o in ["384", "1", "2"] {
        e.put_order("station_1", o, &e.jpegs).await;
    }
    let rec = double();
    let c1 = e.consumer("host-a", rec.clone());
    let r1 = run(&c1);
    wait_processed(&c1, 3).await;
    // An order arriving while it runs is found by the next polls.
    e.put_order("station_2", "3", &e.jpegs).await;
    wait_processed(&c1, 4).await;
    // One LIST per station per poll, however many orders are done.
    let before = c1.results().len();
    r1.stop().await;
    assert_eq!(before, 4);

    let c2 = e.consumer("host-a", rec.clone());
    let r2 = run(&c2);
    wait_until(
        Duration::from_secs(20),
        "restart to see the old results",
        || c2.results().len() == 4,
    )
    .await;
    r2.stop().await;
    assert_eq!(c2.processed_count(), 0, "nothing processed twice");
    assert_eq!(rec.calls(), 4);
    let mut results = e.puts_of("results/");
    results.sort();
    assert_eq!(
        results,
        [
            "results/station_1/1.json",
            "results/station_1/2.json",
            "results/station_1/384.json",
            "results/station_2/3.json"
        ]
    );
    let r = e.result("station_1", "384").unwrap();
    assert_eq!(r.validation.status, OrderStatus::Validated);
    assert_eq!(r.validation.accuracy, 1.0);
    assert_eq!(r.recognizer, "test-double");
    assert_eq!(r.selected_frames.len(), 2);
    assert!(
        r.selected_frames
            .iter()
            .all(|k| k.starts_with("station_1/384/frame_"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_on_one_bucket_process_each_order_once() {
    let e = env("two").await;
    let orders: Vec<String> = (100..112).map(|n| n.to_string()).collect();
    for o in &orders {
        e.put_order("station_1", o, &e.jpegs[..1]).await;
    }
    let (ra, rb) = (double(), double());
    let a = e.consumer("host-a", ra.clone());
    let b = e.consumer("host-b", rb.clone());
    run_both(&a, &b, "every result", Duration::from_millis(300), || {
        orders.iter().all(|o| e.result("station_1", o).is_some())
    })
    .await;
    let results = e.puts_of("results/");
    assert_eq!(
        results.len(),
        orders.len(),
        "one result PUT per order: {results:?}"
    );
    let claims = e.puts_of("claims/");
    assert_eq!(
        claims.len(),
        orders.len(),
        "one claim per order: {claims:?}"
    );
    assert_eq!(
        a.processed_count() + b.processed_count(),
        orders.len() as u64
    );
    assert_eq!(ra.calls() + rb.calls(), orders.len());
    for o in &orders {
        assert_eq!(
            e.status("station_1", o),
            OrderStatus::UnknownOrder,
            "order {o} is not in orders.json"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_corrupt_frames_give_a_per_order_error_and_the_next_orders_flow() {
    let e = env("broken").await;
    // Order 1: the manifest names frames that were never stored.
    let ghost = (0..2)
        .map(|i| FrameEntry {
            key: frame_key("", "station_1", "1", 5 + i, i as u32).unwrap(),
            seq: i as u32,
            unix_ms: 5 + i,
            bytes: 10,
        })
        .collect();
    e.put_marker("station_1", "1", ghost).await;
    // Order 2: frames that are not JPEGs.
    e.put_order(
        "station_1",
        "2",
        &[b"not a jpeg".to_vec(), vec![0xff, 0xd8, 0, 1]],
    )
    .await;
    // Order 4: a marker that is not a manifest.
    e.put_json("station_1/4/__EOS__", b"{broken").await;
    // Order 3: fine.
    e.put_order("station_1", "3", &e.jpegs).await;

    let rec = e.process(4).await;

    let missing = e.result("station_1", "1").unwrap();
    assert_eq!(missing.validation.status, OrderStatus::NoFrames);
    let err = missing.error.unwrap();
    assert!(
        err.contains("none of the 2 frames") && err.contains("frame_"),
        "{err}"
    );

    let corrupt = e.result("station_1", "2").unwrap();
    assert_eq!(corrupt.validation.status, OrderStatus::RecognitionFailed);
    assert!(corrupt.error.unwrap().contains("corrupt"));

    let bad_manifest = e.result("station_1", "4").unwrap();
    assert_eq!(bad_manifest.validation.status, OrderStatus::NoFrames);
    assert!(bad_manifest.error.unwrap().contains("manifest"));

    let ok = e.result("station_1", "3").unwrap();
    assert_eq!(ok.validation.status, OrderStatus::Validated);
    assert!(ok.error.is_none());
    assert_eq!(rec.calls(), 1, "only order 3 reached recognition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_and_restarts_list_only_the_newest_index_entries_whatever_the_history() {
    let e = env("cost").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // History: 20 orders, one an hour apart, each announced in the index as a sink would.
    for o in 0..20u64 {
        let order = o.to_string();
        let entries = put_frames(
            &e.scratch.store,
            BUCKET,
            "station_1",
            &order,
            0,
            1,
            &e.jpegs[..1],
        )
        .await
        .unwrap();
        let m = Manifest::new(
            "station_1",
            &order,
            CompletionReason::NextOrder,
            entries,
            "t",
        );
        let at = now - (20 - o) * 3_600_000;
        let key = oa_contract::index_key("", "station_1", &order, IndexKind::Marker, at).unwrap();
        e.put_json(&key, "{}").await;
        e.put_json(&format!("station_1/{order}/__EOS__"), m.to_json())
            .await;
    }
    let c = e.consumer("host-a", double());
    // No checkpoint yet: the first poll lists the whole index (20 entries, pages of 7).
    assert_eq!(c.poll_station("station_1").await.unwrap(), 3);
    wait_processed(&c, 20).await;
    // The newest entry is an hour old: the next poll stops within the first page.
    assert_eq!(c.poll_station("station_1").await.unwrap(), 1);
    let checkpoint = "checkpoints/station_1.json";
    c.save_checkpoint("station_1", true).await;
    assert!(
        e.scratch.server.read_object(BUCKET, checkpoint).is_err(),
        "no checkpoint before the station was listed once in full"
    );
    // Running lists it in full once (every marker is done already), then saves it.
    let r = run(&c);
    wait_until(Duration::from_secs(20), "a checkpoint", || {
        e.scratch.server.read_object(BUCKET, checkpoint).is_ok()
    })
    .await;
    r.stop().await;
    assert_eq!(
        c.processed_count(),
        20,
        "the full listing processed nothing again"
    );
    let saved = e.scratch.server.read_object(BUCKET, checkpoint).unwrap();
    let saved: serde_json::Value = serde_json::from_slice(&saved).unwrap();
    assert_eq!(saved["before_unix_ms"], now - 3_600_000 + 1, "{saved}");

    // A restart reads the checkpoint and lists one page, whatever lies below it; a new
    // order is found at once.
    let c = e.consumer("host-a", double());
    assert_eq!(c.poll_station("station_1").await.unwrap(), 1);
    e.put_order("station_1", "new", &e.jpegs[..1]).await;
    assert_eq!(c.poll_station("station_1").await.unwrap(), 1);
    wait_processed(&c, 1).await;
    assert!(c.result("station_1", "new").is_some());
    assert!(c.result("station_1", "3").is_none(), "history was not read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_claim_of_a_dead_orchestrator_is_taken_over_once() {
    let e = env("takeover").await;
    e.put_order("station_1", "1", &e.jpegs).await;
    e.put_order("station_1", "2", &e.jpegs).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Order 1: claimed an hour ago by a replica that died. Order 2: claimed just now by a
    // live one, which must be left alone.
    for (order, age_ms) in [("1", 3_600_000), ("2", 0)] {
        let body = serde_json::json!({"owner": "ghost", "claimed_unix_ms": now - age_ms});
        e.put_json(&format!("claims/station_1/{order}"), body.to_string())
            .await;
    }
    // Order 3: claimed an hour ago, and taken over 50 minutes ago by a replica that died
    // too: the takeover itself is taken over.
    e.put_order("station_1", "3", &e.jpegs).await;
    let claimed = now - 3_600_000;
    for (key, owner, at) in [
        ("claims/station_1/3".to_owned(), "ghost", claimed),
        (
            format!("claims/station_1/3.takeover-{claimed}"),
            "ghost-2",
            now - 3_000_000,
        ),
    ] {
        let body = serde_json::json!({"owner": owner, "claimed_unix_ms": at});
        e.put_json(&key, body.to_string()).await;
    }
    let (ra, rb) = (double(), double());
    let a = e.consumer_with_ttl("host-a", ra.clone(), Duration::from_secs(60));
    let b = e.consumer_with_ttl("host-b", rb.clone(), Duration::from_secs(60));
    // Several passes over order 2 while its claim is fresh.
    run_both(
        &a,
        &b,
        "the stale orders' results",
        Duration::from_millis(600),
        || e.result("station_1", "1").is_some() && e.result("station_1", "3").is_some(),
    )
    .await;
    assert_eq!(e.puts_of("results/station_1/1.json").len(), 1);
    assert_eq!(
        e.puts_of("claims/station_1/1.takeover-").len(),
        1,
        "exactly one takeover"
    );
    assert_eq!(e.puts_of("results/station_1/3.json").len(), 1);
    assert_eq!(
        e.puts_of(&format!("claims/station_1/3.takeover-{claimed}.takeover-"))
            .len(),
        1,
        "exactly one second takeover"
    );
    assert_eq!(
        ra.calls() + rb.calls(),
        2,
        "only the stale orders were recognised"
    );
    assert!(
        e.result("station_1", "2").is_none(),
        "a fresh claim is respected"
    );
}

/// The sink writes a superset marker when an order ID comes back after its marker was
/// written: the order is processed again, exactly once per new marker, by one replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marker_replaced_by_a_superset_is_processed_once_more() {
    let e = env("superset").await;
    let (station, order) = ("station_1", "384");
    let mut frames = e.put_frames(station, order, 0, &e.jpegs[..2]).await;
    e.put_marker(station, order, frames.clone()).await;
    let rec = double();
    let c = e.consumer("host-a", rec.clone());
    let r = run(&c);
    wait_processed(&c, 1).await;
    let first = e.result(station, order).unwrap();
    assert_eq!(first.revision, 1);
    assert_eq!(first.manifest_frame_count, Some(2));
    assert_eq!(first.manifest_last_unix_ms, Some(1_700_000_001_000));
    assert!(first.marker_last_modified_ms.is_some());

    // LastModified is compared at whole seconds; a real second marker comes seconds later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    frames.extend(e.put_frames(station, order, 2, &e.jpegs).await);
    e.put_marker(station, order, frames.clone()).await;
    wait_processed(&c, 2).await;
    // Many more polls (each a whole cycle of this station), and a hint for the unchanged
    // marker: nothing is processed again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.hint(station, order);
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.stop().await;
    assert_eq!(c.processed_count(), 2);
    assert_eq!(rec.calls(), 2);
    assert_eq!(e.puts_of("results/").len(), 2);
    let second = e.result(station, order).unwrap();
    assert_eq!(second.revision, 2);
    assert_eq!(second.manifest_frame_count, Some(5));
    assert_eq!(second.manifest_last_unix_ms, Some(1_700_000_004_000));
    assert_eq!(second.validation.status, OrderStatus::Validated);
    assert_eq!(c.result(station, order).unwrap(), second);
    assert_eq!(
        e.puts_of("claims/"),
        ["claims/station_1/384", "claims/station_1/384.rev2"]
    );

    // A restart with nothing new processes nothing.
    let c2 = e.consumer("host-a", rec.clone());
    let r2 = run(&c2);
    wait_until(Duration::from_secs(20), "the old result", || {
        c2.results().len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    r2.stop().await;
    assert_eq!(c2.processed_count(), 0);

    // The ID comes back once more while no orchestrator runs; two replicas start and find
    // the marker newer than the result: exactly one of them processes it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    frames.extend(e.put_frames(station, order, 5, &e.jpegs[..1]).await);
    e.put_marker(station, order, frames.clone()).await;
    let (rb, rc) = (double(), double());
    let b = e.consumer("host-b", rb.clone());
    let cc = e.consumer("host-c", rc.clone());
    run_both(
        &b,
        &cc,
        "the third result",
        Duration::from_millis(500),
        || e.result(station, order).is_some_and(|r| r.revision == 3),
    )
    .await;
    assert_eq!(b.processed_count() + cc.processed_count(), 1);
    assert_eq!(rb.calls() + rc.calls(), 1);
    assert_eq!(e.puts_of("results/").len(), 3);
    assert_eq!(e.puts_of("claims/station_1/384.rev3").len(), 1);
    let third = e.result(station, order).unwrap();
    assert_eq!(third.manifest_frame_count, Some(6));
    assert_eq!(third.manifest_last_unix_ms, Some(1_700_000_005_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_is_checked_for_conditional_puts_and_the_probe_removed() {
    use orchestrator::consume::claim::ConditionalPut;
    let e = env("probe").await;
    let c = e.consumer("host-a", double());
    assert_eq!(
        c.check_conditional_put().await.unwrap(),
        ConditionalPut::Honoured
    );
    let left: Vec<String> = e
        .puts_of("claims/")
        .into_iter()
        .filter(|k| e.scratch.server.read_object(BUCKET, k).is_ok())
        .collect();
    assert!(left.is_empty(), "probe left behind: {left:?}");
    // A store that cannot be reached is an error to report, not a verdict.
    e.scratch.server.stop().await;
    assert!(c.check_conditional_put().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_left_without_a_marker_is_recovered_once_with_every_frame() {
    let e = env("recovered").await;
    // A pipeline died mid-order: 3 frames stored, no marker (their capture time is long
    // past). Order 384 next to it finished normally.
    let frames = e.put_frames("station_1", "2", 0, &e.jpegs).await;
    e.put_order("station_1", "384", &e.jpegs).await;
    let (ra, rb) = (double(), double());
    // Orders without a marker are recovered after 1 s.
    let recovering = |owner: &str, rec: &Arc<RecognizerDouble>| {
        let after = Some(Duration::from_secs(1));
        e.consumer_with(
            owner,
            rec.clone(),
            Duration::from_secs(600),
            Duration::ZERO,
            after,
        )
    };
    let (a, b) = (recovering("host-a", &ra), recovering("host-b", &rb));
    run_both(&a, &b, "both results", Duration::from_millis(500), || {
        e.result("station_1", "2").is_some() && e.result("station_1", "384").is_some()
    })
    .await;
    assert_eq!(
        a.recovered_count() + b.recovered_count(),
        1,
        "one replica wrote it"
    );
    assert_eq!(e.puts_of("station_1/2/__EOS__").len(), 1);
    let marker = e
        .scratch
        .server
        .read_object(BUCKET, "station_1/2/__EOS__")
        .unwrap();
    let m = Manifest::from_json(&marker).unwrap();
    assert_eq!(m.reason, CompletionReason::Recovered);
    assert_eq!(m.frames, frames, "every stored frame, in capture order");
    assert_eq!(e.status("station_1", "2"), OrderStatus::Validated);
    assert_eq!(
        e.puts_of("station_1/384/__EOS__").len(),
        1,
        "a real marker is never replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_renewed_at_every_retry_is_not_taken_over() {
    // host-a retries for 3.1 s (0.1 + 0.2 + 0.4 + 0.8 + 1.6) with claims that go stale
    // after 2.5 s: only its renewal at every attempt keeps host-b off the order.
    let e = env("renew").await;
    e.put_order("station_1", "384", &e.jpegs).await;
    let ttl = Duration::from_millis(2500);
    let flaky = Arc::new(RecognizerDouble::sees(&[("apple", 1)]).failing_first(5));
    let a = e.consumer_with("host-a", flaky.clone(), ttl, Duration::from_secs(60), None);
    let run_a = run(&a);
    wait_until(Duration::from_secs(10), "host-a's first attempt", || {
        flaky.calls() >= 1
    })
    .await;
    let healthy = double();
    let b = e.consumer_with(
        "host-b",
        healthy.clone(),
        ttl,
        Duration::from_secs(60),
        None,
    );
    let run_b = run(&b);
    wait_until(Duration::from_secs(30), "the result", || {
        e.result("station_1", "384").is_some()
    })
    .await;
    run_a.stop().await;
    run_b.stop().await;
    assert_eq!(
        healthy.calls(),
        0,
        "host-b took over a claim host-a renewed"
    );
    let r = e.result("station_1", "384").unwrap();
    assert_eq!(r.validation.status, OrderStatus::Validated);
    assert_eq!(r.recognition_attempts, 6, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tokens_a_vlm_counted_are_stored_with_the_result() {
    let e = env("tokens").await;
    e.put_order("station_1", "384", &e.jpegs).await;
    e.put_order("station_1", "385", &e.jpegs).await;
    let rec = Arc::new(RecognizerDouble::sees(&[("apple", 1)]).using(1500, 42));
    let c = e.consumer("host-a", rec);
    let r = run(&c);
    wait_processed(&c, 2).await;
    r.stop().await;
    let res = e.result("station_1", "384").unwrap();
    assert_eq!(
        res.tokens,
        Some(orchestrator::result::TokenUsage {
            prompt: 1500,
            completion: 42
        })
    );
    let stored: serde_json::Value = serde_json::from_slice(
        &e.scratch
            .store
            .get(BUCKET, "results/station_1/385.json")
            .await
            .unwrap()
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(
        stored["tokens"],
        serde_json::json!({"prompt": 1500, "completion": 42}),
        "{stored}"
    );
    // A backend that cannot tell writes no tokens field.
    let e = env("no-tokens").await;
    e.put_order("station_1", "384", &e.jpegs).await;
    e.process(1).await;
    assert_eq!(e.result("station_1", "384").unwrap().tokens, None);
}
