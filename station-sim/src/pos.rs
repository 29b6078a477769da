//! The point of sale's side of an end-to-end run ([`crate::run::run_with_pos`]): a
//! webhook receiver, a Server-Sent Events reader, a mosquitto broker and subscriber, and a
//! small HTTP/1.1 client for `PUT /api/expected-orders/{id}` and `GET /api/orders`.
//!
//! Everything here records what it received and when (Unix ms); checking it (signatures,
//! duplicates, completeness) is the caller's business.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Now, in Unix ms.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A port of 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `ok` holds or `within` has passed; whether it held.
pub fn wait_until(within: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ok()
}

/// Reads a response's status line and headers (lowercased names).
fn read_head(r: &mut impl BufRead) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            break;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Ok((status, headers))
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
}

/// The next chunk of a chunked body; `None` at its end.
fn read_chunk(r: &mut impl BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
        .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
    if size == 0 {
        return Ok(None);
    }
    let mut buf = vec![0; size];
    r.read_exact(&mut buf)?;
    line.clear();
    r.read_line(&mut line)?;
    Ok(Some(buf))
}

/// One HTTP/1.1 request to `addr` (`host:port`), the connection closed after it: the
/// status and the body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> std::io::Result<(u16, Vec<u8>)> {
    http_with_token(addr, method, path, body, None)
}

/// [`http`] with `Authorization: Bearer {token}` when there is one.
pub fn http_with_token(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    token: Option<&str>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    if let Some(b) = body {
        s.write_all(b)?;
    }
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r)?;
    let mut out = Vec::new();
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    if is_chunked(&headers) {
        while let Some(c) = read_chunk(&mut r)? {
            out.extend_from_slice(&c);
        }
    } else if let Some(n) = length {
        // Some servers (chromedriver) keep the connection open despite `close`.
        out.resize(n, 0);
        r.read_exact(&mut out)?;
    } else {
        r.read_to_end(&mut out)?;
    }
    Ok((status, out))
}

/// `PUT /api/expected-orders/{order_id}` of `items` (`name`, `quantity` pairs).
pub fn put_expected(addr: &str, order_id: &str, items: &[(String, u32)]) -> std::io::Result<u16> {
    let items: Vec<serde_json::Value> = items
        .iter()
        .map(|(n, q)| serde_json::json!({ "name": n, "quantity": q }))
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({ "items": items })).unwrap();
    let (status, reply) = http(
        addr,
        "PUT",
        &format!("/api/expected-orders/{order_id}"),
        Some(&body),
    )?;
    if !(200..300).contains(&status) {
        return Err(std::io::Error::other(format!(
            "PUT {order_id}: {status} {}",
            String::from_utf8_lossy(&reply)
        )));
    }
    Ok(status)
}

/// `GET /api/orders`: `(station, order, status)` of every result the orchestrator shows,
/// `awaiting-order` included.
pub fn list_orders(addr: &str) -> std::io::Result<Vec<(String, String, String)>> {
    let (status, body) = http(addr, "GET", "/api/orders", None)?;
    if status != 200 {
        return Err(std::io::Error::other(format!("GET /api/orders: {status}")));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
                    (s("station_id"), s("order_id"), s("status"))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// One Server-Sent Event as received.
#[derive(Debug, Clone)]
pub struct SseMessage {
    pub received_ms: u64,
    pub id: String,
    pub event: String,
    pub data: String,
}

/// Reads `GET path` of `addr` as Server-Sent Events on a thread of its own until the
/// stream ends.
pub struct SseReader {
    pub messages: Arc<Mutex<Vec<SseMessage>>>,
    /// Why the stream ended, once it has (`None` while it is open).
    pub ended: Arc<Mutex<Option<String>>>,
}

impl SseReader {
    pub fn connect(addr: &str, path: &str) -> std::io::Result<SseReader> {
        let mut s = TcpStream::connect(addr)?;
        s.write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )?;
        let mut r = BufReader::new(s);
        let (status, headers) = read_head(&mut r)?;
        if status != 200 {
            return Err(std::io::Error::other(format!("GET {path}: {status}")));
        }
        let chunked = is_chunked(&headers);
        let messages = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(Mutex::new(None));
        let (m, e) = (messages.clone(), ended.clone());
        std::thread::spawn(move || {
            let why = read_sse(&mut r, chunked, &m);
            *e.lock().unwrap() = Some(why);
        });
        Ok(SseReader { messages, ended })
    }

    pub fn snapshot(&self) -> Vec<SseMessage> {
        self.messages.lock().unwrap().clone()
    }
}

fn read_sse(r: &mut impl BufRead, chunked: bool, out: &Mutex<Vec<SseMessage>>) -> String {
    let mut pending: Vec<u8> = Vec::new();
    let (mut id, mut event, mut data) = (String::new(), String::new(), Vec::<String>::new());
    loop {
        let bytes = if chunked {
            match read_chunk(r) {
                Ok(Some(c)) => c,
                Ok(None) => return "end of stream".into(),
                Err(e) => return e.to_string(),
            }
        } else {
            let mut buf = [0u8; 8192];
            match r.read(&mut buf) {
                Ok(0) => return "end of stream".into(),
                Ok(n) => buf[..n].to_vec(),
                Err(e) => return e.to_string(),
            }
        };
        pending.extend_from_slice(&bytes);
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !data.is_empty() {
                    out.lock().unwrap().push(SseMessage {
                        received_ms: now_ms(),
                        id: std::mem::take(&mut id),
                        event: std::mem::take(&mut event),
                        data: data.join("\n"),
                    });
                }
                data.clear();
                id.clear();
                event.clear();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_string();
            match field {
                "id" => id = value,
                "event" => event = value,
                "data" => data.push(value),
                _ => {}
            }
        }
    }
}

/// One webhook POST as received.
#[derive(Debug, Clone)]
pub struct WebhookDelivery {
    pub received_ms: u64,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl WebhookDelivery {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Accepts (200) every POST to `/hook` on 127.0.0.1 and records it.
pub struct WebhookReceiver {
    pub addr: std::net::SocketAddr,
    pub deliveries: Arc<Mutex<Vec<WebhookDelivery>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    /// Serves on the runtime `rt`.
    pub fn start(rt: &tokio::runtime::Handle) -> WebhookReceiver {
        use axum::routing::post;
        let deliveries: Arc<Mutex<Vec<WebhookDelivery>>> = Arc::new(Mutex::new(Vec::new()));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let d = deliveries.clone();
        let app = axum::Router::new().route(
            "/hook",
            post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let d = d.clone();
                    async move {
                        let headers = headers
                            .iter()
                            .map(|(k, v)| {
                                (
                                    k.as_str().to_ascii_lowercase(),
                                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                )
                            })
                            .collect();
                        d.lock().unwrap().push(WebhookDelivery {
                            received_ms: now_ms(),
                            headers,
                            body: body.to_vec(),
                        });
                        axum::http::StatusCode::OK
                    }
                },
            ),
        );
        let task = rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        WebhookReceiver {
            addr,
            deliveries,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn snapshot(&self) -> Vec<WebhookDelivery> {
        self.deliveries.lock().unwrap().clone()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A child process killed on drop.
pub struct Killed(pub Child);

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

/// Debian's `mosquitto` on a free port of 127.0.0.1, anonymous, without persistence.
pub struct Broker {
    pub port: u16,
    _child: Killed,
}

impl Broker {
    /// Writes its configuration into `dir` and waits until it listens.
    pub fn start(dir: &Path) -> Broker {
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .unwrap();
        let child = spawn(
            Command::new("mosquitto")
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "mosquitto",
        );
        assert!(
            wait_until(Duration::from_secs(10), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "mosquitto does not listen on {port}"
        );
        Broker {
            port,
            _child: child,
        }
    }
}

/// One MQTT message as `mosquitto_sub -v` printed it.
#[derive(Debug, Clone)]
pub struct MqttMessage {
    pub received_ms: u64,
    pub topic: String,
    pub payload: String,
}

/// `mosquitto_sub -v -q 1 -t '{topic}/#'`, line-buffered, read on a thread of its own.
pub struct Subscriber {
    pub messages: Arc<Mutex<Vec<MqttMessage>>>,
    _child: Killed,
}

impl Subscriber {
    /// Returns once the broker acknowledged the subscription.
    pub fn start(port: u16, topic: &str) -> Subscriber {
        let mut child = spawn(
            Command::new("stdbuf")
                .args(["-oL", "mosquitto_sub"])
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .args(["-t", &format!("{topic}/#"), "-v", "-q", "1", "-d"])
                .args(["-i", "oa-pos-sub"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
            "mosquitto_sub",
        );
        let out = child.0.stdout.take().unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let subscribed = Arc::new(Mutex::new(false));
        let (m, s) = (messages.clone(), subscribed.clone());
        let prefix = format!("{topic}/");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let at = now_ms();
                if line.contains("received SUBACK") {
                    *s.lock().unwrap() = true;
                }
                if line.starts_with(&prefix)
                    && let Some((topic, payload)) = line.split_once(' ')
                {
                    m.lock().unwrap().push(MqttMessage {
                        received_ms: at,
                        topic: topic.to_string(),
                        payload: payload.to_string(),
                    });
                }
            }
        });
        assert!(
            wait_until(Duration::from_secs(10), || *subscribed.lock().unwrap()),
            "mosquitto_sub got no SUBACK"
        );
        Subscriber {
            messages,
            _child: child,
        }
    }

    pub fn snapshot(&self) -> Vec<MqttMessage> {
        self.messages.lock().unwrap().clone()
    }
}
