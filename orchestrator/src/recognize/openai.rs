//! The `openai` backend: an OpenAI-compatible chat-completions endpoint serving a VLM
//! (vLLM, OpenVINO Model Server, Ollama, llama.cpp server).
//!
//! The selected frames go to `POST {endpoint}/v1/chat/completions` (or
//! `{endpoint}/chat/completions` when the endpoint already ends in a version, `/v1` or
//! OpenVINO Model Server's `/v3`) as
//! `data:image/jpeg;base64,...` `image_url` parts, with a prompt that lists the inventory
//! and asks for JSON only: `{"items":[{"name":"...","quantity":N}]}`.
//! The prompt may be a store's own and be preceded by worked examples ([`super::prompt`]).
//! A reply streamed as server-sent events (a gateway that streams whatever is asked) is
//! read as the whole reply its chunks add up to.
//!
//! **Transport**: reqwest over `http://` (local model servers) or `https://` (rustls on
//! aws-lc-rs, the TLS stack aws-sdk-s3 already brings, trusting the system's root
//! certificates plus the PEM certificates of `ca_file`, e.g. an in-house CA). The proxies
//! of `HTTP_PROXY`, `HTTPS_PROXY` and `ALL_PROXY` (or their lower-case forms) are used,
//! except for the hosts of `NO_PROXY`; redirects are not followed. The API key is read
//! from the environment variable named by `api_key_env` when the backend is built and
//! sent as `Authorization: Bearer`.
//!
//! **Robustness**: at most `max_concurrent` requests in flight (semaphore); each attempt
//! is bounded by `timeout_ms` (connect, send and the whole reply); timeouts, connection
//! errors, 429 and 5xx are retried `retries` times with exponential backoff (250 ms, 500
//! ms, ... at most 4 s); other 4xx fail at once. After `breaker_failures` consecutive
//! failed calls the circuit breaker opens and calls fail fast for `breaker_cooldown_ms`;
//! then one call is let through (half-open) and its outcome closes or re-opens it. A reply
//! that arrives but cannot be understood fails the call without counting as an endpoint
//! failure.
//!
//! **Reply parsing** ([`parse_reply`]): code fences and prose around the JSON are ignored
//! (the first JSON object with an `items` array, or a bare array, is used); each entry
//! needs a `name` (entries without one are dropped) and may give `quantity` as a number or
//! numeric string (missing means 1, fractions are rounded). Quantities of 0 or below are
//! dropped; quantities above [`MAX_QUANTITY`] are clamped to it. Names are mapped to the
//! inventory (name, alias, bounded fuzzy match); names the inventory does not know are
//! **kept** (normalised) so that validation reports them as extras: a VLM that sees an
//! unlisted item in the bag is reporting something the order did not ask for.

use super::prompt::{Example, Prompt};
use super::{Frame, Recognition, RecognizeError, Recognizer, add_item};
use crate::config::{OpenAiConfig, StructuredOutput};
use crate::orders::{Inventory, normalize};
use crate::result::{Item, TokenUsage};
use base64::Engine as _;
use bytes::Bytes;
use reqwest::{Certificate, Client, ClientBuilder, StatusCode, Url, header};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Largest quantity of one item believed from a reply; larger ones are clamped.
pub const MAX_QUANTITY: u32 = 50;
/// Edit distance used to map reply names to the inventory.
pub const NAME_EDIT_DISTANCE: usize = 2;
/// Largest reply body read.
const MAX_REPLY_BYTES: usize = 4 << 20;
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(4);
/// The longest `Retry-After` honoured; a server asking for more is tried after this.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(30);

pub struct OpenAiRecognizer {
    name: String,
    url: Url,
    model: String,
    api_key: Option<String>,
    timeout: Duration,
    retries: u32,
    client: Client,
    permits: Arc<Semaphore>,
    breaker: Breaker,
    inventory: Arc<Inventory>,
    prompt: String,
    /// The worked examples as sent: photos scaled like an order's frames, and the answer.
    examples: Vec<(Vec<Vec<u8>>, String)>,
    structured: StructuredOutput,
    /// `response_format`, sent while [`OpenAiRecognizer::asks_schema`].
    schema: Value,
    /// The server refused `response_format` once (`auto`): not sent again.
    schema_refused: AtomicBool,
    chat_template_kwargs: Option<serde_json::Map<String, Value>>,
    max_tokens: u32,
    image_max_side: u32,
    image_quality: u8,
}

impl std::fmt::Debug for OpenAiRecognizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiRecognizer")
            .field("url", &self.url)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// Consecutive-failure circuit breaker.
struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    fn check(&self) -> Result<(), RecognizeError> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match st.open_until {
            Some(t) if Instant::now() < t => Err(RecognizeError::transient(format!(
                "circuit breaker open after {} consecutive failures of the VLM endpoint; next try in {} ms",
                st.failures,
                t.saturating_duration_since(Instant::now()).as_millis()
            ))),
            _ => Ok(()),
        }
    }

    fn record(&self, ok: bool) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            *st = BreakerState::default();
        } else {
            st.failures = st.failures.saturating_add(1);
            if st.failures >= self.threshold {
                st.open_until = Some(Instant::now() + self.cooldown);
            }
        }
    }
}

/// An error and its causes, e.g. `error sending request: client error (Connect): invalid
/// peer certificate: UnknownIssuer` rather than reqwest's bare `error sending request`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// The PEM certificates of `recognition.ca_file`.
fn ca_certs(path: &std::path::Path) -> Result<Vec<Certificate>, String> {
    let field = format!("recognition.ca_file: {}", path.display());
    let pem = std::fs::read(path).map_err(|e| format!("{field}: {e}"))?;
    let certs =
        Certificate::from_pem_bundle(&pem).map_err(|e| format!("{field}: {}", chain(&e)))?;
    if certs.is_empty() {
        return Err(format!("{field} holds no PEM certificate"));
    }
    Ok(certs)
}

/// The client: system roots plus `ca_file`, environment proxies, no redirects.
fn http_client(timeout: Duration, ca_file: Option<&std::path::Path>) -> Result<Client, String> {
    let base = || {
        ClientBuilder::new()
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            // A redirected POST would go on as a GET; a 3xx fails at once, like a 4xx.
            .redirect(reqwest::redirect::Policy::none())
            // `recognize` owns retrying, with its backoff and circuit breaker.
            .retry(reqwest::retry::never())
    };
    let Some(path) = ca_file else {
        return base().build().or_else(|e| {
            // The platform verifier refuses to start without a system root certificate,
            // which would also take plain http:// endpoints down; without roots, https://
            // endpoints fail at the handshake instead, naming the unknown issuer.
            tracing::warn!(
                error = %chain(&e),
                "no system root certificate loaded: https:// VLM endpoints will be refused unless recognition.ca_file is set"
            );
            base()
                .tls_certs_only([])
                .build()
                .map_err(|e| format!("VLM HTTP client: {}", chain(&e)))
        });
    };
    base()
        .tls_certs_merge(ca_certs(path)?)
        .build()
        .map_err(|e| format!("recognition.ca_file: {}: {}", path.display(), chain(&e)))
}

enum Attempt {
    /// Worth another try (timeout, connection error, 429, 5xx).
    Retry(String),
    /// Will not get better by retrying (other 4xx, unreadable response envelope).
    Fatal(String),
    /// A 400 naming `response_format` with `structured_output = "auto"`: asked again
    /// without it at once.
    SchemaRefused(String),
    /// A 429 or 503 with `Retry-After`: tried again no sooner than it says.
    RetryAfter(String, Duration),
}

impl OpenAiRecognizer {
    pub fn new(config: &OpenAiConfig, inventory: Arc<Inventory>) -> Result<Self, String> {
        let OpenAiConfig {
            endpoint,
            model,
            api_key_env,
            timeout_ms,
            max_concurrent,
            retries,
            breaker_failures,
            breaker_cooldown_ms,
            ca_file,
            structured_output,
            chat_template_kwargs,
            max_tokens,
            image_max_side,
            image_quality,
            prompt_file: _,
            examples_file: _,
        } = config;
        let prompt = Prompt::load(config, &inventory)?;
        let url = chat_url(endpoint);
        let parsed = Url::parse(&url)
            .map_err(|e| format!("recognition.endpoint: {url:?} is not a valid URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "recognition.endpoint: {url:?}: only http:// and https:// are supported"
            ));
        }
        let api_key = match api_key_env {
            Some(var) => match std::env::var(var) {
                Ok(k) if !k.is_empty() => Some(k),
                _ => {
                    return Err(format!(
                        "recognition.api_key_env: environment variable {var} is not set"
                    ));
                }
            },
            None => None,
        };
        let timeout = Duration::from_millis(*timeout_ms);
        Ok(OpenAiRecognizer {
            name: format!("openai:{model}"),
            url: parsed,
            model: model.clone(),
            api_key,
            timeout,
            retries: *retries,
            client: http_client(timeout, ca_file.as_deref())?,
            permits: Arc::new(Semaphore::new((*max_concurrent).max(1))),
            breaker: Breaker {
                threshold: (*breaker_failures).max(1),
                cooldown: Duration::from_millis(*breaker_cooldown_ms),
                state: Mutex::new(BreakerState::default()),
            },
            prompt: prompt.system,
            examples: prompt
                .examples
                .into_iter()
                .map(|Example { images, answer }| {
                    let sent = images
                        .into_iter()
                        .map(|jpeg| scaled(jpeg, *image_max_side, *image_quality))
                        .collect();
                    (sent, answer)
                })
                .collect(),
            schema: response_format(&inventory),
            inventory,
            structured: *structured_output,
            schema_refused: AtomicBool::new(false),
            chat_template_kwargs: chat_template_kwargs.clone(),
            max_tokens: *max_tokens,
            image_max_side: *image_max_side,
            image_quality: *image_quality,
        })
    }

    /// The frames as they are sent: scaled down to `image_max_side` (on a blocking
    /// thread: a decode and an encode per frame). A frame that cannot be decoded is sent
    /// as stored; the server says what it makes of it.
    async fn frames_to_send(&self, frames: &[Frame]) -> Vec<Frame> {
        if self.image_max_side == 0 {
            return frames.to_vec();
        }
        let (max_side, quality) = (self.image_max_side, self.image_quality);
        let owned = frames.to_vec();
        tokio::task::spawn_blocking(move || {
            let before: usize = owned.iter().map(|f| f.jpeg.len()).sum();
            let sent: Vec<Frame> = owned
                .into_iter()
                .map(|f| Frame {
                    jpeg: scaled(f.jpeg, max_side, quality),
                    ..f
                })
                .collect();
            let after: usize = sent.iter().map(|f| f.jpeg.len()).sum();
            tracing::debug!(before, after, max_side, "frames scaled for the VLM");
            sent
        })
        .await
        .unwrap_or_else(|_| frames.to_vec())
    }

    /// Whether the next request carries `response_format`.
    fn asks_schema(&self) -> bool {
        match self.structured {
            StructuredOutput::Off => false,
            StructuredOutput::JsonSchema => true,
            StructuredOutput::Auto => !self.schema_refused.load(Ordering::Relaxed),
        }
    }

    fn request_body(&self, frames: &[Frame], with_schema: bool) -> Vec<u8> {
        let mut messages = vec![json!({"role": "system", "content": self.prompt})];
        for (images, answer) in &self.examples {
            messages.push(
                json!({"role": "user", "content": user_content(images.iter().map(Vec::as_slice))}),
            );
            messages.push(json!({"role": "assistant", "content": answer}));
        }
        messages.push(json!({"role": "user", "content": user_content(frames.iter().map(|f| f.jpeg.as_slice()))}));
        let mut body = json!({
            "model": self.model,
            "temperature": 0,
            "max_tokens": self.max_tokens,
            "stream": false,
            "messages": messages,
        });
        if with_schema {
            body["response_format"] = self.schema.clone();
        }
        if let Some(kw) = &self.chat_template_kwargs {
            body["chat_template_kwargs"] = Value::Object(kw.clone());
        }
        serde_json::to_vec(&body).unwrap_or_default()
    }

    async fn attempt(
        &self,
        body: Bytes,
        with_schema: bool,
    ) -> Result<(String, Option<TokenUsage>), Attempt> {
        let request_bytes = body.len();
        let mut req = self
            .client
            .post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(body);
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        let req = req
            .build()
            .map_err(|e| Attempt::Fatal(format!("cannot build request: {}", chain(&e))))?;
        let exchange = async {
            // The URL is in the message already; reqwest would repeat it.
            let mut resp = self.client.execute(req).await.map_err(|e| {
                let e = e.without_url();
                Attempt::Retry(format!("request to {} failed: {}", self.url, chain(&e)))
            })?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let mut bytes = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| {
                Attempt::Retry(format!(
                    "reading the reply failed: {}",
                    chain(&e.without_url())
                ))
            })? {
                if bytes.len() + chunk.len() > MAX_REPLY_BYTES {
                    return Err(Attempt::Retry(format!(
                        "reading the reply failed: longer than {MAX_REPLY_BYTES} bytes"
                    )));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok::<_, Attempt>((status, retry_after, bytes))
        };
        let (status, retry_after, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                Attempt::Retry(format!("no reply within {} ms", self.timeout.as_millis()))
            })??;
        if !status.is_success() {
            let snippet: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
            let msg = format!("VLM endpoint answered {status}: {}", snippet.trim());
            if with_schema
                && self.structured == StructuredOutput::Auto
                && (status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY)
                && refuses_schema(&snippet)
            {
                return Err(Attempt::SchemaRefused(msg));
            }
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                return Err(Attempt::Fatal(format!(
                    "{msg} (the request was {} bytes: lower recognition.openai.image_max_side \
                     or processing.frames_per_order, use fewer examples_file images, or raise \
                     the server's body limit)",
                    request_bytes
                )));
            }
            if status == StatusCode::BAD_REQUEST && too_many_images(&snippet) {
                return Err(Attempt::Fatal(format!(
                    "{msg} (the server takes fewer images per prompt: lower \
                     processing.frames_per_order or the images of examples_file, or raise the \
                     server's limit, e.g. vLLM's --limit-mm-per-prompt)"
                )));
            }
            return Err(
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    match retry_after {
                        Some(wait) => Attempt::RetryAfter(msg, wait),
                        None => Attempt::Retry(msg),
                    }
                } else {
                    Attempt::Fatal(msg)
                },
            );
        }
        let reply: Value = if is_event_stream(&bytes) {
            // A gateway that streams whatever was asked (stream is false).
            stream_to_reply(&bytes).map_err(Attempt::Fatal)?
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| Attempt::Fatal(format!("response is not JSON: {e}")))?
        };
        let content = message_content(&reply).map_err(Attempt::Fatal)?;
        Ok((content, usage_of(&reply)))
    }
}

#[async_trait::async_trait]
impl Recognizer for OpenAiRecognizer {
    fn name(&self) -> &str {
        &self.name
    }

    async fn recognize(&self, frames: &[Frame]) -> Result<Vec<Item>, RecognizeError> {
        Ok(self.recognize_with_usage(frames).await?.items)
    }

    async fn recognize_with_usage(&self, frames: &[Frame]) -> Result<Recognition, RecognizeError> {
        if frames.is_empty() {
            return Ok(Recognition {
                items: Vec::new(),
                usage: None,
            });
        }
        self.breaker.check()?;
        let frames = self.frames_to_send(frames).await;
        let frames = frames.as_slice();
        let mut with_schema = self.asks_schema();
        let mut body = Bytes::from(self.request_body(frames, with_schema));
        let mut backoff = BACKOFF_START;
        let mut last = String::new();
        let mut asked_wait = Duration::ZERO;
        let mut attempt = 0;
        while attempt <= self.retries {
            attempt += 1;
            if attempt > 1 {
                // The server's Retry-After, within reason, else the backoff.
                tokio::time::sleep(backoff.max(asked_wait.min(RETRY_AFTER_MAX))).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                asked_wait = Duration::ZERO;
            }
            let outcome = {
                let _permit = self
                    .permits
                    .acquire()
                    .await
                    .map_err(|_| RecognizeError::new("VLM client is shutting down"))?;
                self.attempt(body.clone(), with_schema).await
            };
            match outcome {
                Ok((content, usage)) => {
                    self.breaker.record(true);
                    let items = parse_reply(&content, &self.inventory)
                        .map_err(|e| RecognizeError::new(format!("unusable VLM reply: {e}")))?;
                    return Ok(Recognition { items, usage });
                }
                Err(Attempt::Retry(m)) => last = m,
                Err(Attempt::RetryAfter(m, wait)) => {
                    last = m;
                    asked_wait = wait;
                }
                Err(Attempt::SchemaRefused(m)) => {
                    if !self.schema_refused.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            endpoint = %self.url,
                            "the VLM server refuses response_format ({m}); asking for JSON in \
                             the prompt only from now on (set recognition.openai.structured_output \
                             = \"off\" to skip the first try)"
                        );
                    }
                    with_schema = false;
                    body = Bytes::from(self.request_body(frames, false));
                    // Not a failure of the server: this attempt does not count.
                    attempt -= 1;
                }
                Err(Attempt::Fatal(m)) => {
                    self.breaker.record(false);
                    return Err(RecognizeError::new(m));
                }
            }
        }
        self.breaker.record(false);
        Err(RecognizeError::transient(format!(
            "VLM endpoint failed after {} attempts: {last}",
            self.retries + 1
        )))
    }
}

/// A user turn: the photos of one order and the question.
fn user_content<'a>(images: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<Value> {
    let mut content = vec![json!({
        "type": "text",
        "text": format!(
            "These {} photos show one packed order. List every item in it as JSON.",
            images.len()
        ),
    })];
    for jpeg in images {
        let b64 = base64::engine::general_purpose::STANDARD.encode(jpeg);
        content.push(json!({
            "type": "image_url",
            "image_url": {"url": format!("data:image/jpeg;base64,{b64}")},
        }));
    }
    content
}

/// `jpeg` scaled down to `max_side` (0: as it is). One that cannot be decoded is sent as
/// stored; the server says what it makes of it.
fn scaled(jpeg: Vec<u8>, max_side: u32, quality: u8) -> Vec<u8> {
    if max_side == 0 {
        return jpeg;
    }
    match super::downscale::fit(&jpeg, max_side, quality) {
        Ok(Some(smaller)) => smaller,
        Ok(None) => jpeg,
        Err(e) => {
            tracing::debug!("an image is sent as stored: {e}");
            jpeg
        }
    }
}

/// The chat-completions URL of `endpoint`: `/v1` is added unless it ends in a version.
fn chat_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    let versioned = base
        .rsplit_once("/v")
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if versioned {
        format!("{base}/chat/completions")
    } else {
        format!("{base}/v1/chat/completions")
    }
}

/// Whether a 400's body says the prompt holds more images than the server takes.
fn too_many_images(body: &str) -> bool {
    let b = body.to_ascii_lowercase();
    b.contains("image")
        && ["at most", "too many", "limit", "maximum", "exceed"]
            .iter()
            .any(|k| b.contains(k))
}

/// Whether a reply body is server-sent events (`data: {...}` lines) rather than JSON.
fn is_event_stream(body: &[u8]) -> bool {
    let start = body.trim_ascii_start();
    start.starts_with(b"data:") || start.starts_with(b"event:") || start.starts_with(b":")
}

/// A streamed reply (`chat.completion.chunk` events up to `data: [DONE]`) as the one
/// reply it adds up to: the `delta.content` pieces joined (reasoning deltas left out, as
/// in a whole reply), and the `usage` of the chunk that carries it.
fn stream_to_reply(body: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the streamed reply is not UTF-8")?;
    let mut content = String::new();
    let mut usage = Value::Null;
    let mut chunks = 0;
    let mut thought = false;
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let data = data.trim();
        if data == "[DONE]" {
            break;
        }
        let chunk: Value =
            serde_json::from_str(data).map_err(|e| format!("a streamed chunk is not JSON: {e}"))?;
        chunks += 1;
        if let Some(err) = chunk.get("error") {
            return Err(format!("the server's stream ended with an error: {err}"));
        }
        if let Some(piece) = chunk
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
        {
            content.push_str(piece);
        }
        let delta = chunk.pointer("/choices/0/delta");
        thought |= ["reasoning_content", "reasoning"]
            .iter()
            .any(|k| delta.and_then(|d| d.get(*k)).is_some_and(|v| !v.is_null()));
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            usage = u.clone();
        }
    }
    if chunks == 0 {
        return Err("the streamed reply holds no chunk".into());
    }
    // Thoughts and no answer read as a whole reply of reasoning only.
    let content = if content.trim().is_empty() && thought {
        Value::Null
    } else {
        Value::String(content)
    };
    Ok(json!({
        "choices": [{"message": {"role": "assistant", "content": content,
            "reasoning_content": if thought { json!("") } else { Value::Null }}}],
        "usage": usage,
    }))
}

/// `usage` of a chat-completions reply, when the server gives it.
fn usage_of(reply: &Value) -> Option<TokenUsage> {
    let u = reply.get("usage")?;
    let prompt = u.get("prompt_tokens").and_then(Value::as_u64)?;
    let completion = u
        .get("completion_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some(TokenUsage { prompt, completion })
}

/// Whether an error body says the server does not take `response_format` (vLLM, llama.cpp,
/// Ollama and OpenVINO Model Server word it differently; all name the field or the schema).
fn refuses_schema(body: &str) -> bool {
    let b = body.to_ascii_lowercase();
    ["response_format", "json_schema", "guided_json", "grammar"]
        .iter()
        .any(|k| b.contains(k))
}

/// `response_format`: the reply is `{"items":[{"name","quantity"}]}` with names from the
/// inventory and whole quantities from 1 to [`MAX_QUANTITY`].
fn response_format(inventory: &Inventory) -> Value {
    let names: Vec<&str> = inventory.items.iter().map(|i| i.name.as_str()).collect();
    json!({
        "type": "json_schema",
        "json_schema": {
            "name": "packed_items",
            "strict": true,
            "schema": {
                "type": "object",
                "properties": {
                    "items": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string", "enum": names},
                                "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY},
                            },
                            "required": ["name", "quantity"],
                            "additionalProperties": false,
                        },
                    },
                },
                "required": ["items"],
                "additionalProperties": false,
            },
        },
    })
}

/// The assistant text of a chat-completions response body, without a reasoning model's
/// thoughts (`reasoning_content` is never read; a `<think>` block is cut off).
fn message_content(reply: &Value) -> Result<String, String> {
    let message = reply
        .pointer("/choices/0/message")
        .ok_or("response has no choices[0].message")?;
    let text = match message.get("content").unwrap_or(&Value::Null) {
        Value::String(s) => s.clone(),
        // Some servers return content parts.
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) != Some("reasoning"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => {
            return Err(
                if message.get("reasoning_content").is_some() || message.get("reasoning").is_some()
                {
                    "the reply holds reasoning only, no answer: the model spent its tokens \
                     thinking; set recognition.openai.chat_template_kwargs = \
                     { enable_thinking = false } or raise max_tokens"
                        .into()
                } else {
                    "response content is null".into()
                },
            );
        }
        other => other.to_string(),
    };
    without_thoughts(&text)
}

/// `text` after its `<think>...</think>` block(s).
fn without_thoughts(text: &str) -> Result<String, String> {
    if let Some(end) = text.rfind("</think>") {
        return Ok(text[end + "</think>".len()..].trim().to_owned());
    }
    if let Some(start) = text.find("<think>") {
        let before = text[..start].trim();
        if before.is_empty() {
            return Err(
                "the reply stops inside a <think> block (the token budget went to \
                 reasoning): set recognition.openai.chat_template_kwargs = \
                 { enable_thinking = false } or raise max_tokens"
                    .into(),
            );
        }
        return Ok(before.to_owned());
    }
    Ok(text.to_owned())
}

/// The JSON value in a model reply: fenced, bare, or embedded in prose.
fn extract_json(text: &str) -> Option<Value> {
    let is_useful =
        |v: &Value| v.is_array() || v.get("items").is_some_and(Value::is_array) || v.is_object();
    let mut candidates: Vec<&str> = Vec::new();
    // Inside code fences first.
    let mut rest = text;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let body_start = after.find('\n').map_or(0, |n| n + 1);
        let Some(end) = after[body_start..].find("```") else {
            candidates.push(&after[body_start..]);
            break;
        };
        candidates.push(&after[body_start..body_start + end]);
        rest = &after[body_start + end + 3..];
    }
    candidates.push(text);
    let mut fallback = None;
    for c in candidates {
        if let Ok(v) = serde_json::from_str::<Value>(c.trim())
            && is_useful(&v)
        {
            if v.get("items").is_some() || v.is_array() {
                return Some(v);
            }
            fallback.get_or_insert(v);
        }
        // Scan for the first parseable object or array inside the text.
        for (i, ch) in c.char_indices() {
            if ch != '{' && ch != '[' {
                continue;
            }
            let mut it = serde_json::Deserializer::from_str(&c[i..]).into_iter::<Value>();
            if let Some(Ok(v)) = it.next()
                && is_useful(&v)
            {
                if v.get("items").is_some_and(Value::is_array) {
                    return Some(v);
                }
                if v.is_array() && fallback.is_none() {
                    fallback = Some(v);
                } else if v.is_object() && v.get("name").is_none() {
                    fallback.get_or_insert(v);
                }
            }
        }
    }
    fallback
}

fn quantity_of(entry: &Value) -> Option<i64> {
    let q = ["quantity", "qty", "count"]
        .iter()
        .find_map(|k| entry.get(*k));
    match q {
        None | Some(Value::Null) => Some(1),
        Some(Value::Number(n)) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.round() as i64)
        }),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|f| f.round() as i64),
        Some(_) => None,
    }
}

/// Parses a model reply into items; see the module documentation for the rules.
pub fn parse_reply(text: &str, inventory: &Inventory) -> Result<Vec<Item>, String> {
    let v = extract_json(text).ok_or_else(|| {
        let snippet: String = text.chars().take(120).collect();
        format!("no JSON items in reply {snippet:?}")
    })?;
    let entries: Vec<(String, i64)> = match &v {
        Value::Array(a) => entries_of(a),
        Value::Object(o) => match o.get("items") {
            Some(Value::Array(a)) => entries_of(a),
            Some(_) => return Err("\"items\" is not an array".into()),
            // {"banana": 2, "green apple": 1}
            None => o
                .iter()
                .filter_map(|(k, q)| quantity_of(&json!({ "quantity": q })).map(|q| (k.clone(), q)))
                .collect(),
        },
        _ => return Err("reply JSON is neither an object nor an array".into()),
    };
    let mut items = Vec::new();
    for (name, q) in entries {
        if q <= 0 {
            continue;
        }
        let q = u32::try_from(q).unwrap_or(u32::MAX).min(MAX_QUANTITY);
        let name = match inventory.canonical(&name, NAME_EDIT_DISTANCE) {
            Some(n) => n.to_owned(),
            None => normalize(&name),
        };
        if name.is_empty() {
            continue;
        }
        add_item(&mut items, &name, q);
    }
    Ok(items)
}

fn entries_of(a: &[Value]) -> Vec<(String, i64)> {
    a.iter()
        .filter_map(|e| match e {
            Value::String(s) => Some((s.clone(), 1)),
            Value::Object(_) => {
                let name = ["name", "item", "label"]
                    .iter()
                    .find_map(|k| e.get(*k).and_then(Value::as_str))?;
                Some((name.to_owned(), quantity_of(e)?))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_that_ends_in_an_error_says_the_servers_error() {
        let body = b"data: {\"choices\":[{\"delta\":{\"content\":\"{\"}}]}\n\n\
                     data: {\"error\":{\"message\":\"CUDA out of memory\"}}\n\n";
        let e = stream_to_reply(body).unwrap_err();
        assert!(e.contains("CUDA out of memory"), "{e}");
        assert!(is_event_stream(body) && !is_event_stream(b" {\"choices\":[]}"));
    }

    #[test]
    fn the_chat_url_keeps_a_versioned_endpoint() {
        for (endpoint, url) in [
            ("http://h:8000", "http://h:8000/v1/chat/completions"),
            ("http://h:8000/", "http://h:8000/v1/chat/completions"),
            ("http://h:11434/v1", "http://h:11434/v1/chat/completions"),
            (
                "http://ovms:8000/v3/",
                "http://ovms:8000/v3/chat/completions",
            ),
            ("https://proxy/vlm", "https://proxy/vlm/v1/chat/completions"),
        ] {
            assert_eq!(chat_url(endpoint), url, "{endpoint}");
        }
    }
}
