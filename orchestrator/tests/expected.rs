//! Expected orders at run time, against a real S3 server (oa_s3server on 127.0.0.1,
//! SigV4) and the real axum router on a socket: the API's round trip and its 400s, an
//! order that is done before its expected items arrive (`awaiting-order`, then validated
//! without recognising it again, or `unknown-order` after the wait), and the orders file
//! reloaded when it changes or on SIGHUP; and `/api/orders` a page at a time. Recognition is
//! a test double.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use orchestrator::consume::{Consumer, ConsumerDeps, Settings};
use orchestrator::expected::{ExpectedOrders, ORDERS_FILE_CHECK, Source};
use orchestrator::http::{self, AppState};
use orchestrator::metrics::Metrics;
use orchestrator::orders::{Inventory, Orders};
use orchestrator::result::{Item, OrderResult, OrderStatus};
use orchestrator::shutdown::{Hangups, Shutdown};
use orchestrator::testing::{RecognizerDouble, Scratch, consumer_settings};
use serde_json::{Value, json};

const ACCESS: &str = "expected-access";
const SECRET: &str = "expected-secret-0123456789";
const BUCKET: &str = "frames";
/// Results (and expected orders) live under this prefix, to check the key contract.
const RESULTS_PREFIX: &str = "r/";

/// Sees one green apple and one banana in every order; counts its calls.
fn double() -> Arc<RecognizerDouble> {
    Arc::new(RecognizerDouble::sees(&[("apple", 1), ("banana", 1)]))
}

fn item(name: &str, quantity: u32) -> Item {
    Item {
        name: name.into(),
        quantity,
    }
}

fn inventory() -> Arc<Inventory> {
    Arc::new(
        Inventory::from_json(
            r#"{"items":[{"id":"1","name":"green apple","aliases":["apple"]},{"id":"2","name":"banana"}]}"#,
        )
        .unwrap(),
    )
}

struct Env {
    scratch: Scratch,
    shutdown: Shutdown,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

async fn env(tag: &str) -> Env {
    Env {
        scratch: Scratch::start(&format!("expected-{tag}"), ACCESS, SECRET, &[BUCKET]).await,
        shutdown: Shutdown::new(),
    }
}

impl Env {
    fn service(&self, base: Orders) -> Arc<ExpectedOrders> {
        ExpectedOrders::new(
            self.scratch.store.clone(),
            BUCKET,
            RESULTS_PREFIX,
            inventory(),
            base,
        )
    }

    /// Serves the API on 127.0.0.1:0 with `expected` (and `consumer`); returns its base URL.
    async fn serve(
        &self,
        expected: Arc<ExpectedOrders>,
        consumer: Option<Arc<Consumer>>,
    ) -> String {
        let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(http::serve(
            listener,
            Arc::new(AppState {
                supervisor: None,
                consumer,
                metrics: Arc::new(Metrics::new()),
                expected: Some(expected),
                auth: None,
                events: None,
                videos: None,
                reload: None,
            }),
            self.shutdown.listener(),
        ));
        format!("http://{addr}")
    }

    fn consumer(
        &self,
        expected: Arc<ExpectedOrders>,
        recognizer: Arc<RecognizerDouble>,
        expected_wait: Duration,
        retry_delay: Duration,
    ) -> Arc<Consumer> {
        Consumer::new(ConsumerDeps {
            store: self.scratch.store.clone(),
            settings: Settings {
                retry_delay,
                expected_wait,
                ..consumer_settings(&["station_1"], BUCKET, RESULTS_PREFIX)
            },
            recognizer,
            orders: Arc::new(Orders::default()),
            inventory: inventory(),
            metrics: Arc::new(Metrics::new()),
            detector: None,
            expected: Some(expected),
        })
    }

    /// Stores one frame and the marker of `order` at station_1.
    async fn put_order(&self, order: &str) {
        self.scratch.put_order(BUCKET, "station_1", order).await;
    }

    fn stored_result(&self, order: &str) -> Option<OrderResult> {
        let body = self
            .scratch
            .server
            .read_object(
                BUCKET,
                &format!("{RESULTS_PREFIX}results/station_1/{order}.json"),
            )
            .ok()?;
        Some(serde_json::from_slice(&body).unwrap())
    }
}

/// One request; status and body as JSON (`Value::Null` for an empty body).
async fn call(method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), url);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let ctype = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = res.text().await.unwrap();
    if text.is_empty() {
        return (status, Value::Null);
    }
    assert_eq!(
        ctype.as_deref(),
        Some("application/json"),
        "{method} {url}: {text}"
    );
    (status, serde_json::from_str(&text).unwrap())
}

/// The `error` of a 400, which must be one.
async fn bad_request(method: &str, url: &str, body: &str) -> String {
    let (status, v) = call(method, url, Some(body)).await;
    assert_eq!(status, 400, "{method} {url} {body}: {v}");
    v["error"].as_str().unwrap().to_owned()
}

async fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_orders_round_trip_through_the_api_and_the_bucket() {
    let e = env("api").await;
    let base = Orders::from_json(r#"{"f1":[{"name":"banana","quantity":3}]}"#).unwrap();
    let svc = e.service(base);
    let api = e.serve(svc.clone(), None).await;
    let one = |id: &str| format!("{api}/api/expected-orders/{id}");

    let body = r#"{"items":[{"name":"Apple","quantity":2},{"name":"banana"}]}"#;
    let (status, created) = call("PUT", &one("384"), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["order_id"], "384");
    assert_eq!(
        created["items"],
        json!([{"name":"green apple","quantity":2},{"name":"banana","quantity":1}]),
        "names are the inventory's, a missing quantity is 1"
    );
    assert!(created["updated_unix_ms"].as_i64().unwrap() > 1_700_000_000_000);
    // Stored where the contract says, with the body the API answered.
    let stored: Value = serde_json::from_slice(
        &e.scratch
            .server
            .read_object(BUCKET, "r/expected/384.json")
            .expect("stored at {results_prefix}expected/{order_id}.json"),
    )
    .unwrap();
    assert_eq!(stored, created);

    let (status, replaced) = call(
        "PUT",
        &one("384"),
        Some(r#"{"items":[{"name":"green apple","quantity":1}]}"#),
    )
    .await;
    assert_eq!(status, 200, "a second PUT replaces: {replaced}");
    let (status, got) = call("GET", &one("384"), None).await;
    assert_eq!((status, &got), (200, &replaced));
    assert_eq!(got["items"], json!([{"name":"green apple","quantity":1}]));

    // The orders file is the base layer; the API wins for the same ID.
    let (status, file) = call("GET", &one("f1"), None).await;
    assert_eq!(status, 200);
    assert_eq!(file["source"], "orders_file");
    assert_eq!(file["items"], json!([{"name":"banana","quantity":3}]));
    assert_eq!(call("GET", &one("nope"), None).await.0, 404);

    // A batch: all stored, created and replaced told apart.
    let (status, batch) = call(
        "POST",
        &format!("{api}/api/expected-orders"),
        Some(
            r#"{"orders":[{"order_id":"a1","items":[{"name":"apple"}]},
                {"order_id":"b2","items":[{"name":"banana","quantity":4}]},
                {"order_id":"f1","items":[{"name":"apple","quantity":5}]},
                {"order_id":"384","items":[{"name":"banana"}]}]}"#,
        ),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(
        batch,
        json!({"created":["a1","b2","f1"],"replaced":["384"]})
    );
    let (_, f1) = call("GET", &one("f1"), None).await;
    assert_eq!(f1["items"], json!([{"name":"green apple","quantity":5}]));
    assert!(f1.get("source").is_none(), "the API's now: {f1}");

    // Newest first; LastModified has whole seconds, so the newest comes a second later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = call(
        "PUT",
        &one("newest"),
        Some(r#"{"items":[{"name":"banana"}]}"#),
    )
    .await;
    assert_eq!(status, 201);
    let (status, listed) = call("GET", &format!("{api}/api/expected-orders?limit=2"), None).await;
    assert_eq!(status, 200);
    let listed = listed.as_array().unwrap().clone();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["order_id"], "newest");
    let (_, all) = call("GET", &format!("{api}/api/expected-orders"), None).await;
    let mut ids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[0], "newest");
    ids.sort();
    assert_eq!(ids, ["384", "a1", "b2", "f1", "newest"]);
    for limit in ["0", "501", "x"] {
        let msg = bad_request(
            "GET",
            &format!("{api}/api/expected-orders?limit={limit}"),
            "",
        )
        .await;
        assert!(msg.starts_with("limit:"), "{msg}");
    }

    // Another replica (an empty cache) sees what this one stored.
    let other = e.service(Orders::default());
    assert_eq!(
        other.lookup("b2").await.unwrap(),
        Some((Source::Api, vec![item("banana", 4)]))
    );

    // DELETE: 204, then gone (the file's entry applies again), then 404.
    assert_eq!(call("DELETE", &one("384"), None).await, (204, Value::Null));
    assert_eq!(call("GET", &one("384"), None).await.0, 404);
    assert_eq!(call("DELETE", &one("384"), None).await.0, 404);
    assert!(
        e.scratch
            .server
            .read_object(BUCKET, "r/expected/384.json")
            .is_err()
    );
    assert_eq!(call("DELETE", &one("f1"), None).await.0, 204);
    let (_, f1) = call("GET", &one("f1"), None).await;
    assert_eq!(f1["source"], "orders_file");
    assert_eq!(call("PATCH", &one("f1"), None).await.0, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_400_naming_the_field_and_a_bad_batch_stores_nothing() {
    let e = env("bad").await;
    let svc = e.service(Orders::default());
    let api = e.serve(svc.clone(), None).await;
    let url = format!("{api}/api/expected-orders/7");

    let msg = bad_request(
        "PUT",
        &url,
        r#"{"items":[{"name":"apple"},{"name":"banana"},{"name":"bananna"}]}"#,
    )
    .await;
    assert_eq!(
        msg,
        r#"items[2].name: unknown item "bananna"; known: green apple, banana"#
    );
    let msg = bad_request("PUT", &url, r#"{"items":[{"name":"apple","quantity":0}]}"#).await;
    assert!(msg.starts_with("items[0].quantity: 0 is not"), "{msg}");
    let msg = bad_request(
        "PUT",
        &url,
        r#"{"items":[{"name":"apple","quantity":100}]}"#,
    )
    .await;
    assert!(msg.starts_with("items[0].quantity:"), "{msg}");
    assert_eq!(bad_request("PUT", &url, r#"{}"#).await, "items: missing");
    let msg = bad_request("PUT", &url, r#"{"items":[{"quantity":1}]}"#).await;
    assert_eq!(msg, "items[0].name: missing");
    let msg = bad_request("PUT", &url, r#"{"items":[{"name":"apple"}"#).await;
    assert!(msg.starts_with("body: invalid JSON"), "{msg}");
    let msg = bad_request(
        "PUT",
        &format!("{api}/api/expected-orders/a.b"),
        r#"{"items":[{"name":"apple"}]}"#,
    )
    .await;
    assert!(msg.starts_with("order_id:"), "{msg}");
    let msg = bad_request("GET", &format!("{api}/api/expected-orders/a.b"), "").await;
    assert!(msg.starts_with("order_id:"), "{msg}");

    // All or nothing: the good first order of a bad batch is not stored.
    let msg = bad_request(
        "POST",
        &format!("{api}/api/expected-orders"),
        r#"{"orders":[{"order_id":"ok1","items":[{"name":"apple"}]},
            {"order_id":"bad2","items":[{"name":"kiwi"}]}]}"#,
    )
    .await;
    assert!(
        msg.starts_with(r#"orders[1].items[0].name: unknown item "kiwi""#),
        "{msg}"
    );
    let msg = bad_request(
        "POST",
        &format!("{api}/api/expected-orders"),
        r#"{"orders":[{"order_id":"ok1","items":[{"name":"apple"}]},{"items":[]}]}"#,
    )
    .await;
    assert_eq!(msg, "orders[1].order_id: missing");
    assert_eq!(
        call("GET", &format!("{api}/api/expected-orders/ok1"), None)
            .await
            .0,
        404
    );
    assert_eq!(
        call("GET", &format!("{api}/api/expected-orders/7"), None)
            .await
            .0,
        404
    );
    assert!(
        e.scratch
            .server
            .put_log()
            .iter()
            .all(|k| !k.contains("expected/"))
    );

    // Bodies are bounded.
    let big = format!(
        r#"{{"items":[{{"name":"{}"}}]}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    assert_eq!(call("PUT", &url, Some(&big)).await.0, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_done_before_its_items_awaits_them_and_is_validated_when_they_arrive() {
    let e = env("late").await;
    let svc = e.service(Orders::default());
    let rec = double();
    // Looks at it again only after 30 s: what validates it sooner is the PUT's wake.
    let c = e.consumer(
        svc.clone(),
        rec.clone(),
        Duration::from_secs(120),
        Duration::from_secs(30),
    );
    let api = e.serve(svc.clone(), Some(c.clone())).await;
    let task = tokio::spawn(c.clone().run(e.shutdown.listener()));
    e.put_order("500").await;
    wait_until(Duration::from_secs(20), "awaiting-order", || {
        c.result("station_1", "500")
            .is_some_and(|r| r.validation.status == OrderStatus::AwaitingOrder)
    })
    .await;
    assert_eq!(rec.calls(), 1);
    assert_eq!(c.awaiting_count(), 1);
    assert!(
        e.stored_result("500").is_none(),
        "nothing stored while it waits"
    );
    let (status, shown) = call("GET", &format!("{api}/api/orders/station_1/500"), None).await;
    assert_eq!(status, 200);
    assert_eq!(shown["status"], "awaiting-order");
    assert_eq!(shown["detected"].as_array().unwrap().len(), 2);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = call(
        "PUT",
        &format!("{api}/api/expected-orders/500"),
        Some(r#"{"items":[{"name":"green apple"},{"name":"banana"}]}"#),
    )
    .await;
    assert_eq!(status, 201);
    let put_at = Instant::now();
    wait_until(
        Duration::from_secs(2),
        "validated within 2 s of the PUT",
        || e.stored_result("500").is_some(),
    )
    .await;
    let r = e.stored_result("500").unwrap();
    assert_eq!(r.validation.status, OrderStatus::Validated, "{r:?}");
    assert_eq!(r.validation.accuracy, 1.0);
    assert_eq!(r.revision, 1);
    assert!(put_at.elapsed() < Duration::from_secs(2));
    assert_eq!(
        rec.calls(),
        1,
        "validated from the held recognition, not recognised again"
    );
    assert_eq!(
        c.result("station_1", "500").unwrap().validation.status,
        OrderStatus::Validated
    );
    wait_until(Duration::from_secs(2), "the awaiting set emptied", || {
        c.awaiting_count() == 0 && c.processed_count() == 1
    })
    .await;
    e.shutdown.trigger();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_whose_items_never_come_is_unknown_after_the_wait() {
    let e = env("never").await;
    let svc = e.service(Orders::default());
    let rec = double();
    let wait = Duration::from_millis(1500);
    let c = e.consumer(svc, rec.clone(), wait, Duration::from_millis(100));
    let task = tokio::spawn(c.clone().run(e.shutdown.listener()));
    e.put_order("600").await;
    wait_until(Duration::from_secs(20), "awaiting-order", || {
        c.result("station_1", "600")
            .is_some_and(|r| r.validation.status == OrderStatus::AwaitingOrder)
    })
    .await;
    let awaiting_from = Instant::now();
    wait_until(Duration::from_secs(10), "the final result", || {
        e.stored_result("600").is_some()
    })
    .await;
    let waited = awaiting_from.elapsed();
    let r = e.stored_result("600").unwrap();
    assert_eq!(r.validation.status, OrderStatus::UnknownOrder, "{r:?}");
    assert_eq!(r.validation.detected.len(), 2);
    assert!(
        waited >= wait - Duration::from_millis(300) && waited < wait + Duration::from_secs(2),
        "unknown-order after about expected_wait: {waited:?}"
    );
    assert_eq!(rec.calls(), 1, "recognised once");
    // The order leaves the awaiting set once its final result is stored.
    wait_until(Duration::from_secs(2), "the awaiting set emptied", || {
        c.awaiting_count() == 0
    })
    .await;
    e.shutdown.trigger();
    task.await.unwrap();
    assert_eq!(
        serde_json::to_value(OrderStatus::AwaitingOrder).unwrap(),
        "awaiting-order"
    );
}

fn write_orders(path: &Path, body: &str, mtime: SystemTime) {
    std::fs::write(path, body).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orders_file_is_reloaded_when_it_changes_and_a_bad_edit_keeps_the_old() {
    let e = env("reload").await;
    let path = e.scratch.dir.join("orders.json");
    let t0 = SystemTime::now() - Duration::from_secs(60);
    write_orders(&path, r#"{"1":[{"name":"apple"}]}"#, t0);
    let svc = e.service(Orders::load(&path).unwrap());
    let (_reload, reloads) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(svc.clone().watch_orders_file(
        path.clone(),
        ORDERS_FILE_CHECK,
        reloads,
        e.shutdown.listener(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;

    write_orders(
        &path,
        r#"{"1":[{"name":"apple"}],"2":[{"name":"banana","quantity":2}]}"#,
        t0 + Duration::from_secs(10),
    );
    let written = Instant::now();
    let mut known = false;
    while written.elapsed() < Duration::from_secs(6) && !known {
        known = svc.lookup("2").await.unwrap().is_some();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(known, "order 2 known within 6 s of the edit");
    assert_eq!(
        svc.lookup("2").await.unwrap(),
        Some((Source::OrdersFile, vec![item("banana", 2)]))
    );

    // A bad edit (a zero quantity, then broken JSON) keeps the previous orders.
    write_orders(
        &path,
        r#"{"3":[{"name":"apple","quantity":0}]}"#,
        t0 + Duration::from_secs(20),
    );
    assert!(!svc.reload_orders_file(&path), "refused");
    write_orders(
        &path,
        r#"{"3":[{"name":"apple"}"#,
        t0 + Duration::from_secs(30),
    );
    tokio::time::sleep(Duration::from_millis(6000)).await;
    assert!(svc.lookup("2").await.unwrap().is_some(), "old orders kept");
    assert!(svc.lookup("3").await.unwrap().is_none());
    assert_eq!(svc.base().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_orders_file() {
    let e = env("sighup").await;
    let path = e.scratch.dir.join("orders.json");
    let t0 = SystemTime::now() - Duration::from_secs(60);
    write_orders(&path, r#"{"1":[{"name":"apple"}]}"#, t0);
    let svc = e.service(Orders::load(&path).unwrap());
    // Wired as the binary does: SIGHUP -> a reload, whatever the file's time says.
    let mut hangups = Hangups::new().unwrap();
    let (reload, reloads) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            if reload.send(()).is_err() {
                break;
            }
        }
    });
    tokio::spawn(svc.clone().watch_orders_file(
        path.clone(),
        Duration::from_secs(3600),
        reloads,
        e.shutdown.listener(),
    ));
    // Same size and modification time: only the signal can tell.
    write_orders(&path, r#"{"9":[{"name":"apple"}]}"#, t0);
    assert!(svc.lookup("9").await.unwrap().is_none());
    unsafe { libc::raise(libc::SIGHUP) };
    wait_until(Duration::from_secs(2), "the reload", || {
        svc.base().get("9").is_some()
    })
    .await;
    assert!(svc.base().get("1").is_none());
}

/// `GET url`: the JSON array and the `Link` header's next page, if any.
async fn get_page(url: &str) -> (Vec<Value>, Option<String>) {
    let res = reqwest::get(url).await.unwrap();
    assert_eq!(res.status().as_u16(), 200, "{url}");
    let next = res.headers().get("link").map(|v| {
        let v = v.to_str().unwrap();
        let path = v
            .strip_prefix('<')
            .and_then(|v| v.strip_suffix(">; rel=\"next\""))
            .unwrap_or_else(|| panic!("Link {v:?}"));
        path.to_owned()
    });
    let body = res.text().await.unwrap();
    (serde_json::from_str(&body).unwrap(), next)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_come_a_page_at_a_time_newest_first() {
    let e = env("page").await;
    let svc = e.service(Orders::default());
    let c = e.consumer(
        svc.clone(),
        double(),
        Duration::ZERO,
        Duration::from_secs(30),
    );
    let api = e.serve(svc.clone(), Some(c.clone())).await;
    let task = tokio::spawn(c.clone().run(e.shutdown.listener()));
    let orders = ["11", "12", "13", "14", "15"];
    for o in orders {
        e.put_order(o).await;
    }
    wait_until(Duration::from_secs(30), "5 results", || {
        orders.iter().all(|o| e.stored_result(o).is_some())
    })
    .await;

    let mut url = format!("{api}/api/orders?limit=2&status=unknown-order");
    let (mut seen, mut pages) = (Vec::new(), 0);
    loop {
        let (page, next) = get_page(&url).await;
        pages += 1;
        assert!(page.len() <= 2, "{page:?}");
        seen.extend(page);
        match next {
            Some(path) => {
                assert!(path.contains("status=unknown-order"), "{path}");
                url = format!("{api}{path}");
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let ids: Vec<&str> = seen
        .iter()
        .map(|r| r["order_id"].as_str().unwrap())
        .collect();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(want, orders, "every order once");
    let times: Vec<i64> = seen
        .iter()
        .map(|r| r["marker_last_modified_ms"].as_i64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );

    let (all, next) = get_page(&format!("{api}/api/orders")).await;
    assert_eq!(
        (all.len(), next),
        (5, None),
        "everything without a limit, as before"
    );
    let (first, next) = get_page(&format!("{api}/api/orders?limit=4")).await;
    assert_eq!(first.len(), 4);
    let next = next.expect("a Link to the rest");
    assert!(next.contains("limit=4&cursor="), "{next}");
    let (rest, none) = get_page(&format!("{api}{}", next.replace("limit=4&", ""))).await;
    assert_eq!((rest.len(), none), (1, None), "a cursor alone pages by 500");
    let (none, _) = get_page(&format!("{api}/api/orders?status=mismatch")).await;
    assert!(none.is_empty());
    for (query, field) in [
        ("limit=0", "limit:"),
        ("limit=501", "limit:"),
        ("limit=ten", "limit:"),
        ("cursor=nope", "cursor:"),
        ("status=wrong", "status:"),
        ("station=a%2Fb", "station:"),
    ] {
        let error = bad_request("GET", &format!("{api}/api/orders?{query}"), "").await;
        assert!(error.starts_with(field), "{query}: {error}");
    }
    e.shutdown.trigger();
    task.await.unwrap();
}

/// A reused number (`600.2`) is not validated against what the till stored for the
/// previous order with that number (stored before that order's frames, so more than
/// `reuse_after` before this one's): it awaits its own items, while `600` itself still
/// takes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_number_awaits_its_own_expected_items() {
    use orchestrator::testing::FIRST_FRAME_UNIX_MS;
    let e = env("reused").await;
    let svc = e.service(Orders::default());
    let rec = double();
    let c = e.consumer(
        svc.clone(),
        rec.clone(),
        Duration::from_secs(120),
        Duration::from_secs(30),
    );
    let api = e.serve(svc.clone(), Some(c.clone())).await;
    // What the till stored for the first 600, two hours before the frames.
    let stale = json!({
        "order_id": "600",
        "items": [{"name": "green apple", "quantity": 1}, {"name": "banana", "quantity": 1}],
        "updated_unix_ms": FIRST_FRAME_UNIX_MS as i64 - 7_200_000,
    });
    e.scratch
        .store
        .put(
            BUCKET,
            &format!("{RESULTS_PREFIX}expected/600.json"),
            serde_json::to_vec(&stale).unwrap(),
            "application/json",
        )
        .await
        .unwrap();
    let task = tokio::spawn(c.clone().run(e.shutdown.listener()));
    e.put_order("600").await;
    e.put_order("600.2").await;
    wait_until(
        Duration::from_secs(20),
        "600 validated, 600.2 awaiting",
        || {
            e.stored_result("600")
                .is_some_and(|r| r.validation.status == OrderStatus::Validated)
                && c.result("station_1", "600.2")
                    .is_some_and(|r| r.validation.status == OrderStatus::AwaitingOrder)
        },
    )
    .await;
    assert!(e.stored_result("600.2").is_none(), "nothing final yet");
    let (status, _) = call(
        "PUT",
        &format!("{api}/api/expected-orders/600"),
        Some(r#"{"items":[{"name":"green apple"},{"name":"banana"}]}"#),
    )
    .await;
    assert_eq!(status, 200, "replaces the stale one");
    wait_until(Duration::from_secs(5), "600.2 validated", || {
        e.stored_result("600.2").is_some()
    })
    .await;
    let r = e.stored_result("600.2").unwrap();
    assert_eq!(r.validation.status, OrderStatus::Validated, "{r:?}");
    assert_eq!(r.occurrence, Some(2));
    assert_eq!(e.stored_result("600").unwrap().revision, 1, "600 untouched");
    e.shutdown.trigger();
    task.await.unwrap();
}
