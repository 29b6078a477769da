//! Bearer tokens on the real router over a real socket (127.0.0.1:0), with expected
//! orders kept in a real S3 server (oa_s3server, SigV4): refusals carry no data, a read
//! token reads and cannot write, a write token writes, the probes stay open, and with no
//! tokens the API is open as before.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use orchestrator::expected::ExpectedOrders;
use orchestrator::http::auth::Tokens;
use orchestrator::http::{self, AppState};
use orchestrator::orders::{Inventory, Orders};
use orchestrator::shutdown::Shutdown;
use orchestrator::testing::Scratch;

const ACCESS: &str = "auth-access";
const SECRET: &str = "auth-secret-0123456789";
const BUCKET: &str = "frames";
const READ: &str = "read-token-0123456789abcdef";
const WRITE: &str = "write-token-0123456789abcdef";
const ITEMS: &str = r#"{"items":[{"name":"banana","quantity":2}]}"#;

struct Served {
    addr: SocketAddr,
    _scratch: Scratch,
    shutdown: Shutdown,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// The API on 127.0.0.1:0 with expected orders (order `f1` in the orders file, 3 bananas)
/// and `auth`.
async fn serve(tag: &str, auth: Option<Arc<Tokens>>) -> Served {
    let scratch = Scratch::start(&format!("auth-{tag}"), ACCESS, SECRET, &[BUCKET]).await;
    let inventory =
        Arc::new(Inventory::from_json(r#"{"items":[{"id":"1","name":"banana"}]}"#).unwrap());
    let base = Orders::from_json(r#"{"f1":[{"name":"banana","quantity":3}]}"#).unwrap();
    let expected = ExpectedOrders::new(scratch.store.clone(), BUCKET, "", inventory, base);
    let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    tokio::spawn(http::serve(
        listener,
        Arc::new(AppState {
            expected: Some(expected),
            auth,
            ..AppState::empty()
        }),
        shutdown.listener(),
    ));
    Served {
        addr,
        _scratch: scratch,
        shutdown,
    }
}

fn tokens() -> Option<Arc<Tokens>> {
    Some(Arc::new(
        Tokens::from_env_lists(Some(READ), Some(WRITE)).unwrap(),
    ))
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    /// A refusal: `status`, the API's JSON error shape and nothing else.
    fn assert_refused(&self, status: u16, message_has: &str) {
        assert_eq!(self.status, status, "{}\n{}", self.head, self.body);
        let v: serde_json::Value = serde_json::from_str(&self.body).unwrap();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 1, "only the error: {}", self.body);
        let msg = obj["error"].as_str().unwrap();
        assert!(msg.contains(message_has), "{msg}");
        for data in ["banana", "f1", "items", READ, WRITE] {
            assert!(!self.body.contains(data), "{data} in {}", self.body);
        }
        if status == 401 {
            let challenge = self.header("www-authenticate").expect("WWW-Authenticate");
            assert!(challenge.starts_with("Bearer"), "{challenge}");
        }
    }
}

/// A blocking HTTP/1.1 request with an optional `Authorization` header value.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &str,
) -> Reply {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default(),
        body.len()
    );
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut raw = vec![];
        s.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        Reply {
            status,
            head,
            body: String::from_utf8_lossy(&raw[split + 4..]).into_owned(),
        }
    })
    .await
    .unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_every_api_route_is_401_and_shows_no_data() {
    let s = serve("none", tokens()).await;
    for (method, path) in [
        ("GET", "/api/stations"),
        ("GET", "/api/orders"),
        ("GET", "/api/orders/station_1/1"),
        ("GET", "/api/orders/station_1/1/frames/0"),
        ("GET", "/api/events"),
        ("GET", "/api/stats"),
        ("GET", "/api/expected-orders"),
        ("GET", "/api/expected-orders/f1"),
        ("PUT", "/api/expected-orders/f1"),
        ("DELETE", "/api/expected-orders/f1"),
        ("POST", "/api/expected-orders"),
        // Unknown paths too: no token, no map of the API.
        ("GET", "/nope"),
    ] {
        let r = call(s.addr, method, path, None, ITEMS).await;
        r.assert_refused(401, "Authorization: Bearer");
        assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));
    }
    // Malformed headers are the same 401.
    for header in [
        "Basic cmVhZDpyZWFk",
        "Bearer",
        "Bearer ",
        READ,
        &format!("Bearer {READ} extra"),
    ] {
        call(s.addr, "GET", "/api/expected-orders/f1", Some(header), "")
            .await
            .assert_refused(401, "Authorization: Bearer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_token_is_401() {
    let s = serve("unknown", tokens()).await;
    for token in [
        "read-token-0123456789abcdeX",
        "read-token-0123456789abcde",
        &format!("{READ}0"),
    ] {
        let r = call(
            s.addr,
            "GET",
            "/api/expected-orders/f1",
            Some(&bearer(token)),
            "",
        )
        .await;
        r.assert_refused(401, "unknown token");
        assert_eq!(
            r.header("www-authenticate").as_deref(),
            Some("Bearer error=\"invalid_token\"")
        );
        call(
            s.addr,
            "PUT",
            "/api/expected-orders/x",
            Some(&bearer(token)),
            ITEMS,
        )
        .await
        .assert_refused(401, "unknown token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_token_reads_and_cannot_write() {
    let s = serve("read", tokens()).await;
    let read = bearer(READ);
    let r = call(s.addr, "GET", "/api/stations", Some(&read), "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "[]\n"), "{}", r.head);
    // The scheme is case-insensitive.
    let r = call(
        s.addr,
        "GET",
        "/api/expected-orders/f1",
        Some(&format!("bearer {READ}")),
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("banana"), "{}", r.body);

    for (method, path) in [
        ("PUT", "/api/expected-orders/x"),
        ("DELETE", "/api/expected-orders/x"),
        ("POST", "/api/expected-orders"),
    ] {
        let r = call(s.addr, method, path, Some(&read), ITEMS).await;
        r.assert_refused(403, "needs the write scope");
    }
    // Nothing was stored.
    let r = call(s.addr, "GET", "/api/expected-orders/x", Some(&read), "").await;
    assert_eq!(r.status, 404, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_token_writes_and_reads() {
    let s = serve("write", tokens()).await;
    let write = bearer(WRITE);
    let r = call(s.addr, "PUT", "/api/expected-orders/x", Some(&write), ITEMS).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = call(s.addr, "GET", "/api/expected-orders/x", Some(&write), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"quantity\": 2"), "{}", r.body);
    // The read token sees what the write token stored.
    let r = call(
        s.addr,
        "GET",
        "/api/expected-orders/x",
        Some(&bearer(READ)),
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(s.addr, "DELETE", "/api/expected-orders/x", Some(&write), "").await;
    assert_eq!(r.status, 204, "{}", r.body);
    // An authorised request to a path that does not exist is the usual 404.
    let r = call(s.addr, "GET", "/nope", Some(&write), "").await;
    assert_eq!(r.status, 404, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_metrics_stay_open() {
    let s = serve("probes", tokens()).await;
    let r = call(s.addr, "GET", "/healthz", None, "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    assert_eq!(call(s.addr, "GET", "/readyz", None, "").await.status, 200);
    let r = call(s.addr, "GET", "/metrics", None, "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A bad token on an open path is ignored, not refused.
    let r = call(s.addr, "GET", "/healthz", Some("Bearer nope"), "").await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_the_api_is_open_as_before() {
    let s = serve("open", None).await;
    let r = call(s.addr, "GET", "/api/stations", None, "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "[]\n"));
    let r = call(s.addr, "PUT", "/api/expected-orders/x", None, ITEMS).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = call(s.addr, "GET", "/api/expected-orders/f1", None, "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A header is ignored when no tokens are configured.
    let r = call(s.addr, "GET", "/api/stations", Some("Bearer whatever"), "").await;
    assert_eq!(r.status, 200);
    assert_eq!(call(s.addr, "GET", "/nope", None, "").await.status, 404);
}
