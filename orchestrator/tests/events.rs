//! Events out, on real parts: a real S3 server (oa_s3server, SigV4) for results and the
//! webhook outbox, a webhook receiver on 127.0.0.1 that is down and then up, the real
//! axum router for Server-Sent Events, and Debian's mosquitto broker and mosquitto_sub.
//! Recognition is a test double (`testing::RecognizerDouble`: one apple and one banana in
//! every bag).

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use oa_contract::events::{
    Event, IDEMPOTENCY_HEADER, ORDER_COMPLETED, ORDER_MISMATCH, SIGNATURE_HEADER, STATION_STATE,
};
use orchestrator::config::{EventsConfig, MqttConfig, WebhookConfig};
use orchestrator::consume::{Consumer, ConsumerDeps};
use orchestrator::events::setup::{self, Secrets};
use orchestrator::events::{Events, OutboxPlace};
use orchestrator::http::{self, AppState};
use orchestrator::metrics::Metrics;
use orchestrator::orders::{Inventory, Orders};
use orchestrator::shutdown::Shutdown;
use orchestrator::testing::{RecognizerDouble, Scratch, consumer_settings};
use sha2::Sha256;

const ACCESS: &str = "events-access";
const SECRET: &str = "events-secret-0123456789";
const BUCKET: &str = "frames";
const RESULTS_PREFIX: &str = "r/";
const HOOK_SECRET: &[u8] = b"hook-secret-for-tests";
const STATION: &str = "station_1";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// What a `station.state` event holds, `n` as its PID.
fn state_data(n: u32) -> serde_json::Value {
    serde_json::json!({"state": "running", "previous": "backoff", "pid": n, "restarts": n, "last_exit": "exit 1"})
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn consumer(s: &Scratch) -> Arc<Consumer> {
    Consumer::new(ConsumerDeps {
        store: s.store.clone(),
        settings: consumer_settings(&[STATION], BUCKET, RESULTS_PREFIX),
        recognizer: Arc::new(RecognizerDouble::sees(&[("apple", 1), ("banana", 1)])),
        // 1 is what the bag holds, 2 is not (a banana too many), 3 is not known.
        orders: Arc::new(
            Orders::from_json(
                r#"{"1":[{"name":"apple","quantity":1},{"name":"banana","quantity":1}],
                    "2":[{"name":"apple","quantity":1}]}"#,
            )
            .unwrap(),
        ),
        inventory: Arc::new(
            Inventory::from_json(
                r#"{"items":[{"id":"1","name":"apple"},{"id":"2","name":"banana"}]}"#,
            )
            .unwrap(),
        ),
        metrics: Arc::new(Metrics::new()),
        detector: None,
        expected: None,
    })
}

fn events(
    s: &Scratch,
    config: &EventsConfig,
    secrets: Secrets,
    shutdown: &Shutdown,
) -> Arc<Events> {
    let events = setup::build(
        config,
        secrets,
        OutboxPlace {
            store: s.store.clone(),
            bucket: BUCKET.into(),
            prefix: RESULTS_PREFIX.into(),
        },
        "test-host",
        shutdown.listener(),
    )
    .unwrap();
    events.start_delivery(&shutdown.listener());
    events
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Hit {
    key: String,
    signature: String,
    body: Vec<u8>,
    at_ms: u64,
}

#[derive(Default)]
struct Receiver {
    hits: Vec<Hit>,
    /// Answered 503 before any is accepted.
    refuse_first: usize,
}

async fn hook(
    State(r): State<Arc<Mutex<Receiver>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let mut r = r.lock().unwrap();
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    if r.refuse_first > 0 {
        r.refuse_first -= 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    r.hits.push(Hit {
        key: header(IDEMPOTENCY_HEADER),
        signature: header(SIGNATURE_HEADER),
        body: body.to_vec(),
        at_ms: now_ms(),
    });
    StatusCode::NO_CONTENT
}

async fn serve_receiver(port: u16, r: Arc<Mutex<Receiver>>, shutdown: &Shutdown) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(r);
    let mut stopping = shutdown.listener();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopping.wait().await })
            .await
            .unwrap();
    });
}

fn verify(hit: &Hit) -> Event {
    let mut mac = Hmac::<Sha256>::new_from_slice(HOOK_SECRET).unwrap();
    mac.update(&hit.body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hit.signature,
        format!("sha256={hex}"),
        "signature of {}",
        hit.key
    );
    let e: Event = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(e.id, hit.key, "Idempotency-Key is the event ID");
    e
}

async fn outbox_len(s: &Scratch) -> usize {
    let prefix = oa_contract::outbox_prefix(RESULTS_PREFIX, "pos").unwrap();
    s.store
        .list_page(BUCKET, &prefix, None, 1000)
        .await
        .unwrap()
        .0
        .len()
}

/// Every event must pass `docs/events.schema.json` (checked by Python's jsonschema, which
/// scripts/setup.sh installs).
fn check_schema(dir: &std::path::Path, events: &[Event]) {
    let file = dir.join("events.json");
    std::fs::write(&file, serde_json::to_vec(events).unwrap()).unwrap();
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/events.schema.json");
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import json, sys, jsonschema\n\
             v = jsonschema.Draft202012Validator(json.load(open(sys.argv[1])))\n\
             for e in json.load(open(sys.argv[2])): v.validate(e)\n",
        )
        .arg(schema)
        .arg(&file)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "events do not match docs/events.schema.json: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_down_then_up_gets_every_event_signed_once_per_key_across_a_restart() {
    let s = Scratch::start("events-hook", ACCESS, SECRET, &[BUCKET]).await;
    let port = free_port();
    let config = EventsConfig {
        webhooks: vec![WebhookConfig {
            name: "pos".into(),
            url: format!("http://127.0.0.1:{port}/hook"),
            types: vec![ORDER_COMPLETED.into(), ORDER_MISMATCH.into()],
            max_backoff_s: 1,
            ..WebhookConfig::default()
        }],
        ..EventsConfig::default()
    };
    let secrets = || Secrets {
        webhooks: vec![HOOK_SECRET.to_vec()],
        mqtt: None,
    };
    let c = consumer(&s);
    let stop_consumer = Shutdown::new();
    tokio::spawn(c.clone().run(stop_consumer.listener()));

    // The first orchestrator: its receiver is down the whole time, and it stops with both
    // events in the outbox.
    let first = Shutdown::new();
    let events1 = events(&s, &config, secrets(), &first);
    c.set_events(events1.clone());
    s.put_order(BUCKET, STATION, "1").await;
    s.put_order(BUCKET, STATION, "2").await;
    wait_for("two results", Duration::from_secs(30), || {
        c.results().len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(events1.webhooks()[0].pending(), 2);
    assert!(
        events1.webhooks()[0]
            .counts
            .failed_attempts
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1,
        "the dead receiver was tried"
    );
    first.trigger();
    assert_eq!(
        outbox_len(&s).await,
        2,
        "both events wait in the store's outbox"
    );

    // The next one starts while the receiver comes up, refusing its first two requests.
    let receiver = Arc::new(Mutex::new(Receiver {
        refuse_first: 2,
        ..Receiver::default()
    }));
    let up = Shutdown::new();
    serve_receiver(port, receiver.clone(), &up).await;
    let second = Shutdown::new();
    let events2 = events(&s, &config, secrets(), &second);
    c.set_events(events2.clone());
    s.put_order(BUCKET, STATION, "3").await;
    let distinct = |r: &Receiver| r.hits.iter().map(|h| h.key.clone()).collect::<HashSet<_>>();
    wait_for("three events", Duration::from_secs(30), || {
        distinct(&receiver.lock().unwrap()).len() == 3
    })
    .await;
    // A retry of order 3 announces it again: same key, recognised as a duplicate.
    let r3 = c.result(STATION, "3").unwrap();
    let again = events2
        .stage(orchestrator::events::order_event(&r3))
        .await
        .unwrap();
    events2.publish(again);
    wait_for("the duplicate", Duration::from_secs(10), || {
        receiver.lock().unwrap().hits.len() == 4
    })
    .await;
    let mut left = outbox_len(&s).await;
    for _ in 0..100 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = outbox_len(&s).await;
    }
    assert_eq!(left, 0, "delivered events leave the outbox");

    let hits = receiver.lock().unwrap().hits.clone();
    let events: Vec<Event> = hits.iter().map(verify).collect();
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    // Orders 1 and 2 were processed side by side: either may have been recorded first,
    // and both before order 3 (the outbox of the first run goes first).
    let mut first_two = ids[..2].to_vec();
    first_two.sort_unstable();
    assert_eq!(first_two, ["order:station_1:1:1", "order:station_1:2:1"]);
    assert_eq!(ids[2..], ["order:station_1:3:1", "order:station_1:3:1"]);
    let of = |id: &str| events.iter().find(|e| e.id == id).unwrap();
    let (one, two, three) = (
        of("order:station_1:1:1"),
        of("order:station_1:2:1"),
        of("order:station_1:3:1"),
    );
    assert_eq!(
        [one.kind.as_str(), two.kind.as_str(), three.kind.as_str()],
        [ORDER_COMPLETED, ORDER_MISMATCH, ORDER_COMPLETED]
    );
    assert_eq!(
        [
            &one.data["status"],
            &two.data["status"],
            &three.data["status"]
        ],
        ["validated", "mismatch", "unknown-order"]
    );
    assert_eq!(two.data["extra"][0]["name"], "banana");
    check_schema(&s.dir, &events);
    let by_key: BTreeMap<&str, usize> = hits.iter().fold(BTreeMap::new(), |mut m, h| {
        *m.entry(h.key.as_str()).or_insert(0) += 1;
        m
    });
    assert_eq!(by_key.len(), 3, "duplicates share their key: {by_key:?}");
    // What /metrics shows of it.
    let counts = events2.counts();
    let hook = &counts.webhooks[0];
    assert_eq!(
        (hook.name.as_str(), hook.delivered, hook.pending),
        ("pos", 4, 0)
    );
    assert!(hook.failed_attempts >= 2, "two 503s: {hook:?}");
    let latency = hits[2].at_ms.saturating_sub(events[2].time_unix_ms);
    println!("order 3: result computed -> webhook received in {latency} ms");
    second.trigger();
    up.trigger();
    stop_consumer.trigger();
}

/// Reads the SSE stream until `n` events came; returns their (id, type).
async fn read_sse(
    res: &mut reqwest::Response,
    buf: &mut String,
    n: usize,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_owned())
            };
            if let (Some(id), Some(kind)) = (field("id:"), field("event:")) {
                let data: Event = serde_json::from_str(&field("data:").unwrap()).unwrap();
                assert_eq!(
                    (data.id.as_str(), data.kind.as_str()),
                    (id.as_str(), kind.as_str())
                );
                out.push((id, kind));
            }
        }
        if out.len() >= n {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, res.chunk())
            .await
            .unwrap_or_else(|_| panic!("{n} events did not come; got {out:?}"))
            .unwrap()
            .expect("the stream stays open");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_resume_after_the_last_event_id_and_lose_nothing() {
    let s = Scratch::start("events-sse", ACCESS, SECRET, &[BUCKET]).await;
    let shutdown = Shutdown::new();
    let events = events(&s, &EventsConfig::default(), Secrets::default(), &shutdown);
    let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(http::serve(
        listener,
        Arc::new(AppState {
            events: Some(events.clone()),
            ..AppState::empty()
        }),
        shutdown.listener(),
    ));
    let client = reqwest::Client::new();
    let emit = |n: u32| {
        let events = events.clone();
        async move {
            let e = events.station_event(&format!("s{n}"), serde_json::json!({"n": n}));
            let id = e.id.clone();
            events.emit(e).await;
            id
        }
    };
    let mut a = client
        .get(format!("{base}/api/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 200);
    assert_eq!(a.headers()["content-type"], "text/event-stream");
    let mut ids = vec![emit(1).await, emit(2).await];
    let mut buf = String::new();
    let got = read_sse(&mut a, &mut buf, 2).await;
    assert_eq!(
        got.iter().map(|g| &g.0).collect::<Vec<_>>(),
        [&ids[0], &ids[1]]
    );
    assert!(got.iter().all(|g| g.1 == STATION_STATE));
    drop(a);
    // While no one listens.
    ids.push(emit(3).await);
    ids.push(emit(4).await);
    let mut b = client
        .get(format!("{base}/api/events"))
        .header("Last-Event-ID", &ids[1])
        .send()
        .await
        .unwrap();
    ids.push(emit(5).await);
    let mut buf = String::new();
    let got: Vec<String> = read_sse(&mut b, &mut buf, 3)
        .await
        .into_iter()
        .map(|g| g.0)
        .collect();
    assert_eq!(
        got,
        ids[2..5],
        "resumed after the last one seen, nothing lost"
    );
    // An ID no longer retained (another process's): everything retained.
    let mut c = client
        .get(format!("{base}/api/events?last_event_id=station:gone:1-1"))
        .send()
        .await
        .unwrap();
    let mut buf = String::new();
    let got: Vec<String> = read_sse(&mut c, &mut buf, 5)
        .await
        .into_iter()
        .map(|g| g.0)
        .collect();
    assert_eq!(got, ids);
    // Filters.
    let mut f = client
        .get(format!("{base}/api/events?station=s2&last_event_id=x"))
        .send()
        .await
        .unwrap();
    let mut buf = String::new();
    assert_eq!(read_sse(&mut f, &mut buf, 1).await[0].0, ids[1]);
    let bad = client
        .get(format!("{base}/api/events?types=order.done"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("types: \\\"order.done\\\" is not an event type")
    );
    // /api/stats beside it: no consumer here, so zero counts; a bad window is a 400.
    let stats: serde_json::Value = serde_json::from_str(
        &client
            .get(format!("{base}/api/stats?since=8h"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stats["total"]["orders"], 0, "{stats}");
    assert!(stats["since_unix_ms"].as_u64().unwrap() < now_ms());
    let bad = client
        .get(format!("{base}/api/stats?since=yesterday"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // A stop ends the open streams, so that it is not held up by them.
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops with SSE clients connected")
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), b.chunk())
        .await
        .unwrap();
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command, what: &str) -> Killed {
    Killed(cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start {what} ({e}): scripts/setup.sh installs mosquitto and mosquitto-clients"
        )
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mosquitto_subscriber_receives_every_event_queued_while_the_broker_was_down() {
    let s = Scratch::start("events-mqtt", ACCESS, SECRET, &[BUCKET]).await;
    let port = free_port();
    let shutdown = Shutdown::new();
    // Connected while the broker is still down: what it publishes waits in the queue.
    let events = events(
        &s,
        &EventsConfig {
            mqtt: Some(MqttConfig {
                host: "127.0.0.1".into(),
                port,
                topic: "oa-test".into(),
                ..MqttConfig::default()
            }),
            ..EventsConfig::default()
        },
        Secrets::default(),
        &shutdown,
    );
    let mut sent = Vec::new();
    for n in 0..2 {
        let e = events.station_event(STATION, state_data(n));
        sent.push(e.id.clone());
        events.emit(e).await;
    }
    let client = events.mqtt().unwrap();
    wait_for("a failed connection", Duration::from_secs(10), || {
        client
            .counts
            .connection_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    })
    .await;
    let conf = s.dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .unwrap();
    let _broker = spawn(
        Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stderr(Stdio::null()),
        "mosquitto",
    );
    wait_for("mosquitto to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    let mut sub = spawn(
        // Line-buffered, so that SUBACK is seen as it comes.
        Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args([
                "-t",
                "oa-test/#",
                "-v",
                "-q",
                "1",
                "-d",
                "-i",
                "oa-test-sub",
            ])
            .stdout(Stdio::piped()),
        "mosquitto_sub",
    );
    let (tx, rx) = std::sync::mpsc::channel::<(u64, String)>();
    let out = sub.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send((now_ms(), line)).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut subscribed = false;
    let mut messages: Vec<(u64, String, Event)> = Vec::new();
    let mut more_sent = false;
    let mut lines: Vec<String> = Vec::new();
    while messages.len() < 12 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "MQTT messages missing: got {} of 12 (client: {:?}; subscriber said: {lines:?})",
            messages.len(),
            events.mqtt().unwrap().counts
        );
        let Ok((at, line)) = rx.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        if lines.len() < 20 {
            lines.push(line.clone());
        }
        if line.contains("SUBACK") {
            subscribed = true;
            // The client reconnects 1 s after its failure: the subscriber must be first.
            assert!(messages.is_empty(), "messages came before the subscription");
        }
        if let Some((topic, payload)) = line.split_once(' ')
            && topic.starts_with("oa-test/")
        {
            let e: Event = serde_json::from_str(payload).unwrap();
            assert_eq!(topic, format!("oa-test/{}/{}", e.station_id, e.kind));
            messages.push((at, topic.to_owned(), e));
        }
        // Ten more once the first two came through the reconnection.
        if subscribed && messages.len() == 2 && !more_sent {
            more_sent = true;
            for n in 2..12 {
                let e = events.station_event(STATION, state_data(n));
                sent.push(e.id.clone());
                events.emit(e).await;
            }
        }
    }
    let got: Vec<String> = messages.iter().map(|m| m.2.id.clone()).collect();
    assert_eq!(got, sent, "every event, in order");
    let mqtt = events.counts().mqtt.unwrap();
    assert_eq!((mqtt.queued, mqtt.dropped), (12, 0));
    assert!(
        mqtt.connection_failures >= 1 && mqtt.acknowledged >= 2,
        "{mqtt:?}"
    );
    let station_events: Vec<Event> = messages.iter().map(|m| m.2.clone()).collect();
    check_schema(&s.dir, &station_events);
    let mut latencies: Vec<u64> = messages[2..]
        .iter()
        .map(|(at, _, e)| at.saturating_sub(e.time_unix_ms))
        .collect();
    latencies.sort_unstable();
    println!(
        "MQTT: event created -> mosquitto_sub printed it: p50 {} ms, p95 {} ms over {} events",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        latencies.len()
    );
    shutdown.trigger();
}
