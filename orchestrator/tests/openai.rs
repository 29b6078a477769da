//! The `openai` backend against `FakeVlmServer`, a local OpenAI-compatible TEST DOUBLE
//! (hyper on 127.0.0.1:0, plain or behind rustls with a certificate made by `openssl`)
//! that answers from a script: good replies, fenced and prose-wrapped replies, malformed
//! JSON, slow replies, 500s; and through `LoopbackProxy`, a forward-proxy TEST DOUBLE,
//! named by `HTTP_PROXY` / `HTTPS_PROXY` in a child process.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use orchestrator::config::{Backend, OpenAiConfig, RecognitionConfig, StructuredOutput};
use orchestrator::orders::Inventory;
use orchestrator::recognize::openai::{MAX_QUANTITY, parse_reply};
use orchestrator::recognize::{Frame, build};
use orchestrator::result::Item;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the test double answers to one request.
#[derive(Clone)]
enum Reply {
    /// 200 with this assistant message content.
    Content(String),
    /// 200 with this raw body.
    Raw(String),
    /// This status with a short error body.
    Status(u16),
    /// Waits, then answers 200 with this content.
    Slow(Duration, String),
    /// As vLLM without guided decoding or an old llama.cpp server: 400 naming
    /// `response_format` when the request has one, else 200 with this content.
    RefuseSchema(String),
    /// This status, with these headers and this body.
    StatusWith(u16, Vec<(&'static str, String)>, String),
    /// 200 with `reasoning_content` beside this content (`None`: content null, as a
    /// reasoning model that ran out of tokens while thinking).
    Reasoning(String, Option<String>),
    /// 200 as server-sent events, one `chat.completion.chunk` per piece of content, this
    /// long apart, then `data: [DONE]`: a gateway that streams although `stream` is
    /// false, and a slow server that trickles its reply.
    Stream(Duration, Vec<String>),
}

/// The SSE reply of [`Reply::Stream`]: a role chunk, a reasoning chunk, the content
/// pieces, a usage chunk, `[DONE]`; each piece `every` after the last.
fn event_stream(
    every: Duration,
    pieces: Vec<String>,
) -> Response<BoxBody<Bytes, std::convert::Infallible>> {
    let chunk = |delta: Value, usage: Value| {
        let c = json!({"id": "x", "object": "chat.completion.chunk",
            "choices": if delta.is_null() { json!([]) } else { json!([{"index": 0, "delta": delta}]) },
            "usage": usage});
        format!("data: {c}\n\n")
    };
    let mut events = vec![
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(
            json!({"reasoning_content": "Two bananas {not json"}),
            Value::Null,
        ),
    ];
    events.extend(
        pieces
            .iter()
            .map(|p| chunk(json!({"content": p}), Value::Null)),
    );
    events.push(chunk(
        Value::Null,
        json!({"prompt_tokens": 900, "completion_tokens": 30, "total_tokens": 930}),
    ));
    events.push("data: [DONE]\n\n".into());
    let stream = futures_util::stream::unfold(
        (events.into_iter(), true),
        move |(mut it, first)| async move {
            let e = it.next()?;
            if !first {
                tokio::time::sleep(every).await;
            }
            Some((
                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(e))),
                (it, false),
            ))
        },
    );
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .body(StreamBody::new(stream).boxed())
        .unwrap()
}

/// Local OpenAI-compatible TEST DOUBLE for a VLM server.
struct FakeVlmServer {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    last_body: Arc<Mutex<Option<Value>>>,
    last_auth: Arc<Mutex<Option<String>>>,
}

impl FakeVlmServer {
    /// Answers from `script` in order, then `fallback` forever.
    async fn start(script: Vec<Reply>, fallback: Reply) -> FakeVlmServer {
        FakeVlmServer::start_with(script, fallback, None).await
    }

    /// [`FakeVlmServer::start`] behind TLS when `tls` is given.
    async fn start_with(
        script: Vec<Reply>,
        fallback: Reply,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> FakeVlmServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let requests = Arc::new(AtomicUsize::new(0));
        let last_body = Arc::new(Mutex::new(None));
        let last_auth = Arc::new(Mutex::new(None));
        let (r, lb, la) = (requests.clone(), last_body.clone(), last_auth.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (script, fallback, r, lb, la, tls) = (
                    script.clone(),
                    fallback.clone(),
                    r.clone(),
                    lb.clone(),
                    la.clone(),
                    tls.clone(),
                );
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (script, fallback, r, lb, la) = (
                            script.clone(),
                            fallback.clone(),
                            r.clone(),
                            lb.clone(),
                            la.clone(),
                        );
                        async move {
                            r.fetch_add(1, Ordering::SeqCst);
                            assert_eq!(req.uri().path(), "/v1/chat/completions");
                            *la.lock().unwrap() = req
                                .headers()
                                .get("authorization")
                                .map(|v| v.to_str().unwrap().to_owned());
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let parsed: Option<Value> = serde_json::from_slice(&body).ok();
                            let asked_schema = parsed
                                .as_ref()
                                .is_some_and(|b| b.get("response_format").is_some());
                            *lb.lock().unwrap() = parsed;
                            let reply = script.lock().unwrap().pop_front().unwrap_or(fallback);
                            let completion = |content: &str| {
                                json!({"id": "x", "object": "chat.completion",
                                  "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": content}}]})
                                .to_string()
                            };
                            if let Reply::Stream(every, pieces) = reply {
                                return Ok(event_stream(every, pieces));
                            }
                            let mut headers: Vec<(&'static str, String)> = Vec::new();
                            let (status, body) = match reply {
                                Reply::Stream(..) => unreachable!(),
                                Reply::StatusWith(s, h, b) => {
                                    headers = h;
                                    (s, b)
                                }
                                Reply::Content(c) => (200, completion(&c)),
                                Reply::Raw(b) => (200, b),
                                Reply::Status(s) => (s, "{\"error\":\"overloaded\"}".into()),
                                Reply::Slow(d, c) => {
                                    tokio::time::sleep(d).await;
                                    (200, completion(&c))
                                }
                                Reply::RefuseSchema(_) if asked_schema => (
                                    400,
                                    r#"{"object":"error","message":"response_format json_schema is not supported by this server","type":"BadRequestError","code":400}"#.into(),
                                ),
                                Reply::RefuseSchema(c) => (200, completion(&c)),
                                Reply::Reasoning(thought, content) => (
                                    200,
                                    json!({"id": "x", "object": "chat.completion",
                                      "choices": [{"index": 0, "finish_reason": if content.is_some() {"stop"} else {"length"},
                                        "message": {"role": "assistant", "content": content,
                                          "reasoning_content": thought}}]})
                                    .to_string(),
                                ),
                            };
                            let mut resp = Response::builder()
                                .status(StatusCode::from_u16(status).unwrap())
                                .header("content-type", "application/json");
                            for (k, v) in headers {
                                resp = resp.header(k, v);
                            }
                            Ok::<_, std::convert::Infallible>(
                                resp.body(Full::new(Bytes::from(body)).boxed()).unwrap(),
                            )
                        }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(acceptor) => {
                            // A client that rejects the certificate ends the handshake.
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                    }
                });
            }
        });
        FakeVlmServer {
            addr,
            requests,
            last_body,
            last_auth,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn inventory() -> Arc<Inventory> {
    Arc::new(
        Inventory::from_json(
            r#"{"items":[{"id":"1","name":"green apple","aliases":["apple"]},
                {"id":"2","name":"banana"},{"id":"3","name":"water bottle","aliases":["water"]}]}"#,
        )
        .unwrap(),
    )
}

fn config(addr: SocketAddr, timeout_ms: u64, retries: u32, breaker: u32) -> RecognitionConfig {
    let mut config = RecognitionConfig::with_backend(Backend::OpenAi);
    config.openai = OpenAiConfig {
        endpoint: format!("http://{addr}"),
        model: "fake-vlm".into(),
        api_key_env: None,
        timeout_ms,
        max_concurrent: 2,
        retries,
        breaker_failures: breaker,
        breaker_cooldown_ms: 60_000,
        ca_file: None,
        ..OpenAiConfig::default()
    };
    config
}

fn frames() -> Vec<Frame> {
    vec![
        Frame {
            key: "s/1/frame_1_000001.jpg".into(),
            jpeg: vec![0xFF, 0xD8, 1, 2, 3],
        },
        Frame {
            key: "s/1/frame_2_000002.jpg".into(),
            jpeg: vec![0xFF, 0xD8, 4, 5, 6],
        },
    ]
}

fn item(name: &str, quantity: u32) -> Item {
    Item {
        name: name.into(),
        quantity,
    }
}

const GOOD: &str =
    r#"{"items":[{"name":"green apple","quantity":2},{"name":"banana","quantity":1}]}"#;

#[tokio::test]
async fn good_reply_and_request_shape() {
    let server = FakeVlmServer::start(vec![], Reply::Content(GOOD.into())).await;
    let r = build(&config(server.addr, 5_000, 0, 5), inventory()).unwrap();
    assert_eq!(r.name(), "openai:fake-vlm");
    let items = r.recognize(&frames()).await.unwrap();
    assert_eq!(items, vec![item("green apple", 2), item("banana", 1)]);

    let body = server.last_body.lock().unwrap().clone().unwrap();
    assert_eq!(body["model"], "fake-vlm");
    let system = body["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("green apple") && system.contains("apple"),
        "{system}"
    );
    let parts = body["messages"][1]["content"].as_array().unwrap();
    let images: Vec<&str> = parts
        .iter()
        .filter(|p| p["type"] == "image_url")
        .map(|p| p["image_url"]["url"].as_str().unwrap())
        .collect();
    assert_eq!(images.len(), 2);
    assert_eq!(images[0], "data:image/jpeg;base64,/9gBAgM=");
    assert_eq!(*server.last_auth.lock().unwrap(), None);
}

#[tokio::test]
async fn api_key_comes_from_the_named_environment_variable() {
    let server = FakeVlmServer::start(vec![], Reply::Content(GOOD.into())).await;
    let mut cfg = config(server.addr, 5_000, 0, 5);
    cfg.openai.api_key_env = Some("OA_TEST_FAKE_VLM_KEY_UNSET".into());
    let e = build(&cfg, inventory()).err().unwrap();
    assert!(e.contains("OA_TEST_FAKE_VLM_KEY_UNSET"), "{e}");
    // SAFETY: this test is the only user of this variable.
    unsafe { std::env::set_var("OA_TEST_FAKE_VLM_KEY", "sekrit") };
    cfg.openai.api_key_env = Some("OA_TEST_FAKE_VLM_KEY".into());
    let r = build(&cfg, inventory()).unwrap();
    r.recognize(&frames()).await.unwrap();
    assert_eq!(
        server.last_auth.lock().unwrap().as_deref(),
        Some("Bearer sekrit")
    );
}

#[tokio::test]
async fn fenced_and_prose_wrapped_replies() {
    let fenced = format!("```json\n{GOOD}\n```");
    let prose =
        format!("Sure! Here is what I see in the bag:\n{GOOD}\nLet me know if you need more.");
    let server = FakeVlmServer::start(
        vec![Reply::Content(fenced), Reply::Content(prose)],
        Reply::Content(GOOD.into()),
    )
    .await;
    let r = build(&config(server.addr, 5_000, 0, 5), inventory()).unwrap();
    for _ in 0..2 {
        let items = r.recognize(&frames()).await.unwrap();
        assert_eq!(items, vec![item("green apple", 2), item("banana", 1)]);
    }
}

#[tokio::test]
async fn malformed_replies_fail_without_retry() {
    let server = FakeVlmServer::start(
        vec![
            Reply::Content("I think there are two apples".into()),
            Reply::Content("{\"items\": [ {\"name\": ".into()),
            Reply::Raw("<html>not json</html>".into()),
        ],
        Reply::Content(GOOD.into()),
    )
    .await;
    let r = build(&config(server.addr, 5_000, 2, 5), inventory()).unwrap();
    for want in ["no JSON items", "no JSON items", "not JSON"] {
        let e = r.recognize(&frames()).await.unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
    }
    assert_eq!(server.requests(), 3, "malformed replies are not retried");
    // ...and do not open the breaker.
    assert!(r.recognize(&frames()).await.is_ok());
}

#[tokio::test]
async fn slow_reply_times_out_then_retry_succeeds() {
    let server = FakeVlmServer::start(
        vec![Reply::Slow(Duration::from_secs(3), GOOD.into())],
        Reply::Content(GOOD.into()),
    )
    .await;
    let r = build(&config(server.addr, 300, 1, 5), inventory()).unwrap();
    let t = Instant::now();
    let items = r.recognize(&frames()).await.unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(server.requests(), 2);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[tokio::test]
async fn slow_reply_without_retries_is_a_timeout_error() {
    let server =
        FakeVlmServer::start(vec![], Reply::Slow(Duration::from_secs(3), GOOD.into())).await;
    let r = build(&config(server.addr, 200, 0, 5), inventory()).unwrap();
    let e = r.recognize(&frames()).await.unwrap_err();
    assert!(e.to_string().contains("no reply within 200 ms"), "{e}");
}

#[tokio::test]
async fn server_errors_are_retried() {
    let server = FakeVlmServer::start(
        vec![Reply::Status(500), Reply::Status(503)],
        Reply::Content(GOOD.into()),
    )
    .await;
    let r = build(&config(server.addr, 5_000, 2, 5), inventory()).unwrap();
    let items = r.recognize(&frames()).await.unwrap();
    assert_eq!(items, vec![item("green apple", 2), item("banana", 1)]);
    assert_eq!(server.requests(), 3);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = FakeVlmServer::start(vec![], Reply::Status(404)).await;
    let r = build(&config(server.addr, 5_000, 3, 5), inventory()).unwrap();
    let e = r.recognize(&frames()).await.unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn breaker_opens_after_consecutive_failures() {
    let server = FakeVlmServer::start(vec![], Reply::Status(500)).await;
    let r = build(&config(server.addr, 5_000, 0, 2), inventory()).unwrap();
    for _ in 0..2 {
        let e = r.recognize(&frames()).await.unwrap_err();
        assert!(e.to_string().contains("500"), "{e}");
    }
    assert_eq!(server.requests(), 2);
    let t = Instant::now();
    let e = r.recognize(&frames()).await.unwrap_err();
    assert!(e.to_string().contains("circuit breaker open"), "{e}");
    assert_eq!(server.requests(), 2, "an open breaker sends nothing");
    assert!(t.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn breaker_closes_after_cooldown_on_success() {
    let server = FakeVlmServer::start(vec![Reply::Status(500)], Reply::Content(GOOD.into())).await;
    let mut cfg = config(server.addr, 5_000, 0, 1);
    cfg.openai.breaker_cooldown_ms = 200;
    let r = build(&cfg, inventory()).unwrap();
    assert!(r.recognize(&frames()).await.is_err());
    let e = r.recognize(&frames()).await.unwrap_err();
    assert!(e.to_string().contains("circuit breaker open"), "{e}");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        r.recognize(&frames()).await.is_ok(),
        "half-open call goes through"
    );
    assert!(r.recognize(&frames()).await.is_ok());
}

#[tokio::test]
async fn unreachable_endpoint_is_an_error_not_a_panic() {
    // Bind and drop to get a port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let r = build(&config(port, 1_000, 1, 5), inventory()).unwrap();
    let e = r.recognize(&frames()).await.unwrap_err();
    assert!(e.to_string().contains("failed after 2 attempts"), "{e}");
}

/// A CA and a server certificate for 127.0.0.1 signed by it (`testing::test_pki`), in a
/// fresh folder: (folder, CA certificate path, TLS acceptor with the server certificate).
fn test_pki() -> (
    std::path::PathBuf,
    std::path::PathBuf,
    tokio_rustls::TlsAcceptor,
) {
    let dir = std::env::temp_dir().join(format!(
        "oa-openai-tls-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let pki = orchestrator::testing::test_pki(&dir);
    let acceptor = orchestrator::http::tls::acceptor(&pki.cert, &pki.key).unwrap();
    (dir, pki.ca, acceptor)
}

#[tokio::test]
async fn https_endpoint_trusted_through_ca_file() {
    let (dir, ca, acceptor) = test_pki();
    let server =
        FakeVlmServer::start_with(vec![], Reply::Content(GOOD.into()), Some(acceptor)).await;
    let mut cfg = config(server.addr, 5_000, 0, 5);
    cfg.openai.endpoint = format!("https://{}", server.addr);
    cfg.openai.ca_file = Some(ca);
    let r = build(&cfg, inventory()).unwrap();
    let items = r.recognize(&frames()).await.unwrap();
    assert_eq!(items, vec![item("green apple", 2), item("banana", 1)]);
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);

    // Without the CA the certificate is refused: an error naming it, no request served.
    cfg.openai.ca_file = None;
    let r = build(&cfg, inventory()).unwrap();
    let e = r.recognize(&frames()).await.unwrap_err().to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);

    // A ca_file without certificates is refused when the backend is built.
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    cfg.openai.ca_file = Some(empty);
    let Err(e) = build(&cfg, inventory()) else {
        panic!("a ca_file without certificates was accepted");
    };
    assert!(e.to_string().contains("recognition.ca_file"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Forward-proxy TEST DOUBLE on 127.0.0.1:0: records the first line of each connection,
/// then relays it to `upstream`, after answering `CONNECT` (an HTTPS tunnel) with 200.
struct LoopbackProxy {
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl LoopbackProxy {
    async fn start(upstream: SocketAddr) -> LoopbackProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = lines.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let end = loop {
                        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut buf = [0u8; 4096];
                        match client.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    };
                    let line = String::from_utf8_lossy(&head[..end]);
                    let line = line.lines().next().unwrap_or_default().to_owned();
                    let tunnel = line.starts_with("CONNECT ");
                    seen.lock().unwrap().push(line);
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let forward = if tunnel {
                        if client
                            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                            .await
                            .is_err()
                        {
                            return;
                        }
                        &head[end..]
                    } else {
                        // The fake server takes the absolute-form target as it comes.
                        &head[..]
                    };
                    if server.write_all(forward).await.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        LoopbackProxy { addr, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

/// Names the endpoints [`env_child`] calls, space-separated; set only in a child process.
const CHILD_ENDPOINTS: &str = "OA_TEST_OPENAI_CHILD_ENDPOINTS";
/// The `ca_file` [`env_child`] gives its https:// endpoints.
const CHILD_CA: &str = "OA_TEST_OPENAI_CHILD_CA";
const CHILD_DONE: &str = "env_child: all endpoints answered";

/// Runs [`env_child`] in a process of this test binary with `env` as its only proxy and
/// root-certificate settings. The client reads them when it is built, and setting them
/// in this process would reroute the other tests' clients, built on other threads.
async fn run_child(endpoints: &[String], ca: &std::path::Path, env: Vec<(&'static str, String)>) {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "env_child", "--nocapture", "--test-threads=1"]);
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUEST_METHOD",
    ] {
        cmd.env_remove(var);
    }
    cmd.env(CHILD_ENDPOINTS, endpoints.join(" "))
        .env(CHILD_CA, ca)
        .envs(env);
    // Blocking here would stall the servers on this test's runtime thread.
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(CHILD_DONE),
        "child: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The client half of the tests that need their own environment ([`run_child`]); in the
/// test run itself it returns at once.
#[tokio::test]
async fn env_child() {
    let Ok(endpoints) = std::env::var(CHILD_ENDPOINTS) else {
        return;
    };
    for endpoint in endpoints.split(' ') {
        let mut cfg = config("127.0.0.1:1".parse().unwrap(), 5_000, 0, 5);
        cfg.openai.endpoint = endpoint.to_owned();
        // Only https:// gets one: an http:// client must build without any root.
        cfg.openai.ca_file = endpoint
            .starts_with("https:")
            .then(|| std::env::var_os(CHILD_CA).map(Into::into))
            .flatten();
        let r = build(&cfg, inventory()).unwrap_or_else(|e| panic!("{endpoint}: {e}"));
        let items = r
            .recognize(&frames())
            .await
            .unwrap_or_else(|e| panic!("{endpoint}: {e}"));
        assert_eq!(items, vec![item("green apple", 2), item("banana", 1)]);
    }
    println!("{CHILD_DONE}");
}

#[tokio::test]
async fn requests_go_through_the_proxies_of_the_environment() {
    let (dir, ca, acceptor) = test_pki();
    let plain = FakeVlmServer::start(vec![], Reply::Content(GOOD.into())).await;
    let tls = FakeVlmServer::start_with(vec![], Reply::Content(GOOD.into()), Some(acceptor)).await;
    let http_proxy = LoopbackProxy::start(plain.addr).await;
    let https_proxy = LoopbackProxy::start(tls.addr).await;
    let endpoints = [
        format!("http://{}", plain.addr),
        format!("https://{}", tls.addr),
    ];
    let proxies = vec![
        ("HTTP_PROXY", format!("http://{}", http_proxy.addr)),
        ("HTTPS_PROXY", format!("http://{}", https_proxy.addr)),
    ];
    run_child(&endpoints, &ca, proxies.clone()).await;
    // http:// is forwarded in absolute form; https:// is tunnelled, TLS end to end with
    // the endpoint, its certificate checked against ca_file as without a proxy.
    assert_eq!(
        http_proxy.lines(),
        [format!(
            "POST http://{}/v1/chat/completions HTTP/1.1",
            plain.addr
        )]
    );
    assert_eq!(
        https_proxy.lines(),
        [format!("CONNECT {} HTTP/1.1", tls.addr)]
    );
    assert_eq!((plain.requests(), tls.requests()), (1, 1));

    // NO_PROXY hosts are called directly.
    let mut bypass = proxies;
    bypass.push(("NO_PROXY", "127.0.0.1".into()));
    run_child(&endpoints, &ca, bypass).await;
    assert_eq!(http_proxy.lines().len(), 1);
    assert_eq!(https_proxy.lines().len(), 1);
    assert_eq!((plain.requests(), tls.requests()), (2, 2));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn no_system_root_certificates_leave_http_and_ca_file_working() {
    let (dir, ca, acceptor) = test_pki();
    let plain = FakeVlmServer::start(vec![], Reply::Content(GOOD.into())).await;
    let tls = FakeVlmServer::start_with(vec![], Reply::Content(GOOD.into()), Some(acceptor)).await;
    let (empty_file, empty_dir) = (dir.join("no-roots.pem"), dir.join("no-roots"));
    std::fs::write(&empty_file, "").unwrap();
    std::fs::create_dir_all(&empty_dir).unwrap();
    let endpoints = [
        format!("http://{}", plain.addr),
        format!("https://{}", tls.addr),
    ];
    // rustls-native-certs reads only these when they are set.
    let no_roots = vec![
        ("SSL_CERT_FILE", empty_file.display().to_string()),
        ("SSL_CERT_DIR", empty_dir.display().to_string()),
    ];
    run_child(&endpoints, &ca, no_roots).await;
    assert_eq!((plain.requests(), tls.requests()), (1, 1));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn defensive_parsing() {
    let inv = inventory();
    let p = |s: &str| parse_reply(s, &inv);
    // aliases, fuzzy names, merged duplicates
    assert_eq!(
        p(r#"{"items":[{"name":"Apple","quantity":1},{"name":"grean apple","quantity":1},{"name":"water"}]}"#)
            .unwrap(),
        vec![item("green apple", 2), item("water bottle", 1)]
    );
    // unknown names are kept (normalised) so validation reports them as extras
    assert_eq!(
        p(r#"{"items":[{"name":"Cheese Burger","quantity":1}]}"#).unwrap(),
        vec![item("cheese burger", 1)]
    );
    // zero/negative quantities dropped, absurd ones clamped, strings and floats accepted
    assert_eq!(
        p(
            r#"{"items":[{"name":"banana","quantity":-2},{"name":"water bottle","quantity":0},
              {"name":"green apple","quantity":100000}]}"#
        )
        .unwrap(),
        vec![item("green apple", MAX_QUANTITY)]
    );
    assert_eq!(
        p(r#"{"items":[{"name":"banana","quantity":"3"},{"name":"apple","quantity":1.6}]}"#)
            .unwrap(),
        vec![item("banana", 3), item("green apple", 2)]
    );
    // entries without a name are dropped; a bare array and plain strings are accepted
    assert_eq!(
        p(r#"[{"quantity":2},{"name":"banana"},"apple"]"#).unwrap(),
        vec![item("banana", 1), item("green apple", 1)]
    );
    // prose with stray braces before the JSON
    assert_eq!(
        p("I looked at {the bag}. Result: {\"items\": [{\"name\": \"banana\", \"quantity\": 2}]} done")
            .unwrap(),
        vec![item("banana", 2)]
    );
    assert_eq!(p(r#"{"items":[]}"#).unwrap(), vec![]);
    assert!(p(r#"{"items":"banana"}"#).is_err());
    assert!(p("").is_err());
}

#[tokio::test]
async fn the_reply_is_constrained_to_the_inventory_by_a_json_schema() {
    let server = FakeVlmServer::start(vec![], Reply::Content(GOOD.into())).await;
    let r = build(&config(server.addr, 5_000, 0, 5), inventory()).unwrap();
    r.recognize(&frames()).await.unwrap();
    let body = server.last_body.lock().unwrap().clone().unwrap();
    let rf = &body["response_format"];
    assert_eq!(rf["type"], "json_schema", "{body}");
    let item = &rf["json_schema"]["schema"]["properties"]["items"]["items"];
    assert_eq!(
        item["properties"]["name"]["enum"],
        json!(["green apple", "banana", "water bottle"])
    );
    assert_eq!(item["properties"]["quantity"]["type"], "integer");
    assert_eq!(item["properties"]["quantity"]["minimum"], 1);
    assert_eq!(item["required"], json!(["name", "quantity"]));
    assert!(body.get("chat_template_kwargs").is_none());
    assert_eq!(body["max_tokens"], 512);
}

#[tokio::test]
async fn a_server_that_refuses_the_schema_is_asked_without_it_from_then_on() {
    let server = FakeVlmServer::start(vec![], Reply::RefuseSchema(GOOD.into())).await;
    // No retries: the refusal must not use one up.
    let r = build(&config(server.addr, 5_000, 0, 5), inventory()).unwrap();
    let items = r.recognize(&frames()).await.unwrap();
    assert_eq!(items, vec![item("green apple", 2), item("banana", 1)]);
    assert_eq!(server.requests(), 2, "one refused, one without the schema");
    r.recognize(&frames()).await.unwrap();
    assert_eq!(server.requests(), 3, "remembered: no second refusal");
    let body = server.last_body.lock().unwrap().clone().unwrap();
    assert!(body.get("response_format").is_none(), "{body}");

    // structured_output = "json_schema": a refusal is the error it is.
    let mut strict = config(server.addr, 5_000, 2, 5);
    strict.openai.structured_output = StructuredOutput::JsonSchema;
    let r = build(&strict, inventory()).unwrap();
    let before = server.requests();
    let e = r.recognize(&frames()).await.unwrap_err().to_string();
    assert!(e.contains("400") && e.contains("response_format"), "{e}");
    assert_eq!(server.requests(), before + 1, "a 400 is not retried");

    // "off": never sent.
    let mut off = config(server.addr, 5_000, 0, 5);
    off.openai.structured_output = StructuredOutput::Off;
    let r = build(&off, inventory()).unwrap();
    let before = server.requests();
    r.recognize(&frames()).await.unwrap();
    assert_eq!(server.requests(), before + 1);
}

#[tokio::test]
async fn chat_template_kwargs_and_max_tokens_reach_the_server() {
    let server = FakeVlmServer::start(vec![], Reply::Content(GOOD.into())).await;
    let mut c = config(server.addr, 5_000, 0, 5);
    let kw: toml::Table = toml::from_str("enable_thinking = false").unwrap();
    c.openai.chat_template_kwargs = Some(
        serde_json::to_value(kw)
            .unwrap()
            .as_object()
            .unwrap()
            .clone(),
    );
    c.openai.max_tokens = 1024;
    let r = build(&c, inventory()).unwrap();
    r.recognize(&frames()).await.unwrap();
    let body = server.last_body.lock().unwrap().clone().unwrap();
    assert_eq!(
        body["chat_template_kwargs"],
        json!({"enable_thinking": false})
    );
    assert_eq!(body["max_tokens"], 1024);
}

#[tokio::test]
async fn a_reasoning_models_thoughts_are_not_read_as_the_answer() {
    // The thought mentions an item that is not in the answer.
    let thinking = r#"<think>I see a banana... {"items":[{"name":"water bottle","quantity":9}]} no.</think>
{"items":[{"name":"banana","quantity":3}]}"#;
    let parts = json!({"id": "x", "object": "chat.completion", "choices": [{"index": 0,
        "message": {"role": "assistant", "content": [
            {"type": "reasoning", "text": "{\"items\":[{\"name\":\"water bottle\",\"quantity\":9}]}"},
            {"type": "text", "text": "{\"items\":[{\"name\":\"banana\",\"quantity\":3}]}"}]}}]})
    .to_string();
    let server = FakeVlmServer::start(
        vec![
            Reply::Content(thinking.into()),
            Reply::Reasoning(
                r#"{"items":[{"name":"water bottle","quantity":9}]}"#.into(),
                Some(r#"{"items":[{"name":"banana","quantity":3}]}"#.into()),
            ),
            Reply::Raw(parts),
            Reply::Reasoning("Let me count the apples one by one...".into(), None),
            Reply::Content("<think>Counting: one apple, two apples, three".into()),
        ],
        Reply::Content(GOOD.into()),
    )
    .await;
    let r = build(&config(server.addr, 5_000, 0, 5), inventory()).unwrap();
    for shape in ["<think> block", "reasoning_content", "reasoning part"] {
        let items = r.recognize(&frames()).await.unwrap();
        assert_eq!(items, vec![item("banana", 3)], "{shape}");
    }
    for shape in ["reasoning only", "cut inside <think>"] {
        let e = r.recognize(&frames()).await.unwrap_err().to_string();
        assert!(e.contains("enable_thinking"), "{shape}: {e}");
    }
}

/// A 1280x720 frame like the pipelines store: a lit gradient background, a few packed
/// items as flat boxes with dark label text bars, stored at jpegenc's quality 85, 4:2:0.
fn camera_frame(seed: u16) -> Vec<u8> {
    let (w, h) = (1280u16, 720u16);
    let mut px = Vec::with_capacity(usize::from(w) * usize::from(h) * 3);
    for y in 0..h {
        for x in 0..w {
            let base = 90 + (x / 10 + y / 12) as u32 % 60;
            let mut p = [base as u8, (base + 10) as u8, (base + 25) as u8];
            for k in 0..4u16 {
                let (bx, by) = (150 + k * 260 + seed * 7, 250 + (k % 2) * 120);
                if (bx..bx + 200).contains(&x) && (by..by + 160).contains(&y) {
                    p = [
                        (60 + k * 40) as u8,
                        (200 - k * 30) as u8,
                        (80 + k * 20) as u8,
                    ];
                    // A label: dark strokes on a light band.
                    if (by + 60..by + 90).contains(&y) {
                        p = if (x / 6 + y / 5) % 3 == 0 {
                            [20, 20, 20]
                        } else {
                            [235, 235, 235]
                        };
                    }
                }
            }
            px.extend_from_slice(&p);
        }
    }
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 85);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    enc.encode(&px, w, h, jpeg_encoder::ColorType::Rgb).unwrap();
    out
}

/// The images of a request body, decoded: `(width, height, jpeg bytes)`.
fn sent_images(body: &Value) -> Vec<(usize, usize, usize)> {
    use base64::Engine as _;
    body["messages"][1]["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "image_url")
        .map(|p| {
            let url = p["image_url"]["url"].as_str().unwrap();
            let b64 = url.strip_prefix("data:image/jpeg;base64,").unwrap();
            let jpeg = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            let d = orchestrator::jpeg::decode_bgr(&jpeg).unwrap();
            (d.width, d.height, jpeg.len())
        })
        .collect()
}

#[tokio::test]
async fn frames_are_scaled_to_the_configured_long_side_before_they_are_sent() {
    let server = FakeVlmServer::start(vec![], Reply::Content(GOOD.into())).await;
    let frames: Vec<Frame> = (0..4)
        .map(|i| Frame {
            key: format!("s/1/frame_{i}.jpg"),
            jpeg: camera_frame(i),
        })
        .collect();
    let stored: usize = frames.iter().map(|f| f.jpeg.len()).sum();
    let mut sizes = Vec::new();
    for (max_side, want) in [(0u32, (1280, 720)), (768, (768, 432)), (512, (512, 288))] {
        let mut c = config(server.addr, 5_000, 0, 5);
        c.openai.image_max_side = max_side;
        let r = build(&c, inventory()).unwrap();
        r.recognize(&frames).await.unwrap();
        let body = server.last_body.lock().unwrap().clone().unwrap();
        let images = sent_images(&body);
        assert_eq!(images.len(), 4);
        for (w, h, _) in &images {
            assert_eq!((*w, *h), want, "image_max_side {max_side}");
        }
        let request = serde_json::to_vec(&body).unwrap().len();
        sizes.push(format!(
            "image_max_side {max_side}: request {request} bytes"
        ));
        if max_side == 0 {
            assert_eq!(
                images.iter().map(|i| i.2).sum::<usize>(),
                stored,
                "as stored"
            );
        }
    }
    println!(
        "4 frames of 1280x720 ({stored} bytes stored): {}",
        sizes.join("; ")
    );
    let bytes = |s: &str| -> usize {
        s.split("request ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(
        bytes(&sizes[1]) * 2 < bytes(&sizes[0]),
        "768 px must at least halve the request: {sizes:?}"
    );
}

#[tokio::test]
async fn the_tokens_of_each_reply_are_reported() {
    let with_usage = json!({"id": "x", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": GOOD}}],
        "usage": {"prompt_tokens": 1843, "completion_tokens": 27, "total_tokens": 1870}})
    .to_string();
    let server =
        FakeVlmServer::start(vec![Reply::Raw(with_usage)], Reply::Content(GOOD.into())).await;
    let r = build(&config(server.addr, 5_000, 0, 5), inventory()).unwrap();
    let got = r.recognize_with_usage(&frames()).await.unwrap();
    assert_eq!(got.items, vec![item("green apple", 2), item("banana", 1)]);
    let u = got.usage.expect("usage read");
    assert_eq!((u.prompt, u.completion), (1843, 27));
    // A server that does not say: no usage, no error.
    let got = r.recognize_with_usage(&frames()).await.unwrap();
    assert_eq!(got.usage, None);
}

#[tokio::test]
async fn a_429_with_retry_after_is_tried_again_no_sooner_than_it_asks() {
    let busy = Reply::StatusWith(
        429,
        vec![("retry-after", "2".into())],
        r#"{"error":{"message":"rate limited"}}"#.into(),
    );
    let server = FakeVlmServer::start(vec![busy], Reply::Content(GOOD.into())).await;
    let r = build(&config(server.addr, 5_000, 1, 5), inventory()).unwrap();
    let t = Instant::now();
    let items = r.recognize(&frames()).await.unwrap();
    assert_eq!(items, vec![item("green apple", 2), item("banana", 1)]);
    assert_eq!(server.requests(), 2);
    // The backoff alone is 250 ms: the wait is the server's.
    assert!(
        t.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_body_too_large_or_too_many_images_says_which_setting_to_lower() {
    let server = FakeVlmServer::start(
        vec![
            Reply::StatusWith(413, vec![], "request entity too large".into()),
            Reply::StatusWith(
                400,
                vec![],
                r#"{"object":"error","message":"At most 1 image(s) may be provided in one request.","code":400}"#.into(),
            ),
        ],
        Reply::Content(GOOD.into()),
    )
    .await;
    let r = build(&config(server.addr, 5_000, 2, 5), inventory()).unwrap();
    let e = r.recognize(&frames()).await.unwrap_err().to_string();
    assert!(
        e.contains("413") && e.contains("image_max_side") && e.contains("bytes"),
        "{e}"
    );
    assert_eq!(server.requests(), 1, "a 413 is not retried");
    let e = r.recognize(&frames()).await.unwrap_err().to_string();
    assert!(
        e.contains("frames_per_order") && e.contains("At most 1 image"),
        "{e}"
    );
    assert_eq!(server.requests(), 2, "nor is a 400");
}

#[tokio::test]
async fn a_streamed_reply_is_read_as_the_whole_reply_it_adds_up_to() {
    let pieces: Vec<String> = [
        "```json\n{\"items\":[{\"name\":\"ban",
        "ana\",\"quantity\":2},",
        "{\"name\":\"water\",\"quantity\":1}]}\n```",
    ]
    .map(String::from)
    .to_vec();
    // Trickled over 5 x 150 ms: slow, but inside the 2 s for the whole reply.
    let server = FakeVlmServer::start(
        vec![],
        Reply::Stream(Duration::from_millis(150), pieces.clone()),
    )
    .await;
    let r = build(&config(server.addr, 2_000, 0, 5), inventory()).unwrap();
    let t = Instant::now();
    let got = r.recognize_with_usage(&frames()).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(700),
        "{:?}",
        t.elapsed()
    );
    // The reasoning delta ("Two bananas {not json") is not read as the answer.
    assert_eq!(got.items, vec![item("banana", 2), item("water bottle", 1)]);
    let u = got.usage.expect("usage of the last chunk");
    assert_eq!((u.prompt, u.completion), (900, 30));

    // Trickled past the timeout: the whole reply is bounded, not each chunk.
    let slow =
        FakeVlmServer::start(vec![], Reply::Stream(Duration::from_millis(400), pieces)).await;
    let r = build(&config(slow.addr, 1_000, 0, 5), inventory()).unwrap();
    let e = r.recognize(&frames()).await.unwrap_err();
    assert!(e.to_string().contains("no reply within 1000 ms"), "{e}");
    // Thoughts and no answer say so, as in a whole reply.
    let thinking = FakeVlmServer::start(vec![], Reply::Stream(Duration::ZERO, vec![])).await;
    let r = build(&config(thinking.addr, 2_000, 0, 5), inventory()).unwrap();
    let e = r.recognize(&frames()).await.unwrap_err();
    assert!(e.to_string().contains("enable_thinking"), "{e}");
}

#[tokio::test]
async fn the_stores_own_prompt_and_worked_examples_precede_every_order() {
    let dir = std::env::temp_dir().join(format!("oa-openai-prompt-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("examples")).unwrap();
    std::fs::write(
        dir.join("prompt.txt"),
        "You check bags at Store 12. Drinks stand in the cup holder.\n",
    )
    .unwrap();
    let example_jpeg = camera_frame(7);
    std::fs::write(dir.join("examples/one.jpg"), &example_jpeg).unwrap();
    std::fs::write(
        dir.join("examples.json"),
        r#"[{"images":["examples/one.jpg","examples/one.jpg"],"items":[{"name":"water","quantity":2}]},
            {"images":["examples/one.jpg"],"items":[]}]"#,
    )
    .unwrap();
    let server = FakeVlmServer::start(vec![], Reply::Content(GOOD.into())).await;
    let mut c = config(server.addr, 5_000, 0, 5);
    c.openai.prompt_file = Some(dir.join("prompt.txt"));
    c.openai.examples_file = Some(dir.join("examples.json"));
    let r = build(&c, inventory()).unwrap();
    let items = r.recognize(&frames()).await.unwrap();
    assert_eq!(items, vec![item("green apple", 2), item("banana", 1)]);
    let body = server.last_body.lock().unwrap().clone().unwrap();
    let m = body["messages"].as_array().unwrap();
    let roles: Vec<&str> = m.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "user", "assistant", "user"]
    );
    let system = m[0]["content"].as_str().unwrap();
    assert!(
        system.starts_with("You check bags at Store 12."),
        "{system}"
    );
    // The inventory, its aliases and the answer's form are always there.
    assert!(
        system.contains("- water bottle (also called: water)"),
        "{system}"
    );
    assert!(system.contains(r#"{"items":[{"name":"#), "{system}");
    // The examples: their photos scaled like an order's (1280x720 -> 768x432), the
    // answer in inventory names.
    let example = sent_images(&body);
    assert_eq!(
        example.iter().map(|&(w, h, _)| (w, h)).collect::<Vec<_>>(),
        [(768, 432); 2]
    );
    assert!(example.iter().all(|&(_, _, n)| n < example_jpeg.len()));
    assert_eq!(
        m[2]["content"],
        r#"{"items":[{"name":"water bottle","quantity":2}]}"#
    );
    assert_eq!(m[4]["content"], r#"{"items":[]}"#);
    assert_eq!(
        m[5]["content"].as_array().unwrap().len(),
        1 + frames().len()
    );

    // A name the inventory does not know is refused when the backend is built.
    std::fs::write(
        dir.join("examples.json"),
        r#"[{"images":["examples/one.jpg"],"items":[{"name":"pear","quantity":1}]}]"#,
    )
    .unwrap();
    let Err(e) = build(&c, inventory()) else {
        panic!("built")
    };
    assert!(
        e.contains("recognition.openai.examples_file") && e.contains("\"pear\""),
        "{e}"
    );
    std::fs::write(dir.join("prompt.txt"), "  \n").unwrap();
    let Err(e) = build(&c, inventory()) else {
        panic!("built")
    };
    assert!(
        e.contains("recognition.openai.prompt_file") && e.contains("empty"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
