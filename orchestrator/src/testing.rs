//! Fixtures shared by the orchestrator's tests and benchmarks; not part of its API.

use std::sync::atomic::{AtomicUsize, Ordering};

use oa_contract::{FrameEntry, frame_key};

use crate::recognize::{Frame, RecognizeError, Recognizer};
use crate::result::Item;
use crate::store::{Store, StoreError};

/// Capture time of frame 0 in the fixtures (Unix ms).
pub const FIRST_FRAME_UNIX_MS: u64 = 1_700_000_000_000;

/// Stores `bodies` as JPEG frames `first_seq..` of `order` (no key prefix), captured
/// `step_ms` apart from [`FIRST_FRAME_UNIX_MS`] at seq 0, and returns their manifest
/// entries.
pub async fn put_frames(
    store: &Store,
    bucket: &str,
    station: &str,
    order: &str,
    first_seq: u32,
    step_ms: u64,
    bodies: &[Vec<u8>],
) -> Result<Vec<FrameEntry>, StoreError> {
    let mut entries = vec![];
    for (seq, b) in (first_seq..).zip(bodies) {
        let unix_ms = FIRST_FRAME_UNIX_MS + u64::from(seq) * step_ms;
        let key =
            frame_key("", station, order, unix_ms, seq).map_err(|e| StoreError(e.to_string()))?;
        store.put(bucket, &key, b.clone(), "image/jpeg").await?;
        entries.push(FrameEntry {
            key,
            seq,
            unix_ms,
            bytes: b.len() as u64,
        });
    }
    Ok(entries)
}

/// `n` JPEGs of `videotestsrc` with `props` (e.g. `pattern=18`) at `size`, made by
/// gst-launch-1.0 (scripts/setup.sh installs it) as `out/00000.jpg`, ... (`out` is
/// created).
pub fn videotestsrc_jpegs(
    out: &std::path::Path,
    props: &[&str],
    size: (u32, u32),
    n: usize,
) -> Vec<Vec<u8>> {
    std::fs::create_dir_all(out).expect("folder for the JPEGs");
    let buffers = format!("num-buffers={n}");
    let caps = format!("video/x-raw,width={},height={}", size.0, size.1);
    let mut args = vec!["-q", "videotestsrc", buffers.as_str()];
    args.extend_from_slice(props);
    args.extend(["!", caps.as_str(), "!", "jpegenc", "!", "multifilesink"]);
    let status = std::process::Command::new("gst-launch-1.0")
        .args(&args)
        .arg(format!("location={}/%05d.jpg", out.display()))
        .status()
        .expect("gst-launch-1.0 runs (scripts/setup.sh installs it)");
    assert!(status.success(), "gst-launch-1.0 made no JPEGs");
    (0..n)
        .map(|i| {
            let path = out.join(format!("{i:05}.jpg"));
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect()
}

/// Makes a fresh folder `oa-{tag}-{pid}-{ns}` in the temporary folder and returns it; the
/// caller removes it.
pub fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "oa-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// A real S3 server (oa_s3server, SigV4) on 127.0.0.1 over a scratch folder, and a store
/// client signed with the same credentials; the folder goes when it is dropped.
pub struct Scratch {
    pub dir: std::path::PathBuf,
    pub server: oa_s3server::S3Server,
    pub store: Store,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Scratch {
    /// Sets the AWS credentials of the process (once: tests of one binary share them) and
    /// serves `buckets`.
    pub async fn start(tag: &str, access: &str, secret: &str, buckets: &[&str]) -> Scratch {
        static CREDS: std::sync::Once = std::sync::Once::new();
        CREDS.call_once(|| {
            // SAFETY: before any test of this binary reads the environment on another
            // thread through the AWS SDK (they all start here).
            unsafe {
                std::env::set_var("AWS_ACCESS_KEY_ID", access);
                std::env::set_var("AWS_SECRET_ACCESS_KEY", secret);
                std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
            }
        });
        let dir = scratch_dir(tag);
        let server = oa_s3server::S3Server::start(oa_s3server::Options {
            buckets: buckets.iter().map(|b| b.to_string()).collect(),
            ..oa_s3server::Options::new(dir.join("s3"), access, secret)
        })
        .await
        .expect("S3 server on 127.0.0.1");
        let store = Store::connect(Some(&server.endpoint()), "us-east-1", true).await;
        Scratch { dir, server, store }
    }

    /// A 320x240 JPEG of `videotestsrc pattern=N`, made by gst-launch-1.0 once per folder.
    pub fn jpeg(&self, pattern: u32) -> Vec<u8> {
        let out = self.dir.join(format!("pattern-{pattern}"));
        if let Ok(b) = std::fs::read(out.join("00000.jpg")) {
            return b;
        }
        let mut made = videotestsrc_jpegs(&out, &[&format!("pattern={pattern}")], (320, 240), 1);
        made.remove(0)
    }

    /// Stores one frame and then the marker of `order` at `station`.
    pub async fn put_order(&self, bucket: &str, station: &str, order: &str) {
        let entries = put_frames(&self.store, bucket, station, order, 0, 1, &[self.jpeg(18)])
            .await
            .expect("frames stored");
        let m = oa_contract::Manifest::new(
            station,
            order,
            oa_contract::CompletionReason::NextOrder,
            entries,
            "test-1",
        );
        self.store
            .put_marker(bucket, "", &m)
            .await
            .expect("marker stored");
    }
}

/// Consumer settings for tests: fast polling, claims on, no orphan recovery, results in
/// `bucket` under `results_prefix`.
pub fn consumer_settings(
    stations: &[&str],
    bucket: &str,
    results_prefix: &str,
) -> crate::consume::Settings {
    use std::time::Duration;
    crate::consume::Settings {
        stations: stations.iter().map(|s| s.to_string()).collect(),
        layout: crate::store::Layout {
            bucket: bucket.into(),
            prefix: String::new(),
            results_bucket: bucket.into(),
            results_prefix: results_prefix.into(),
        },
        poll_interval: Duration::from_millis(50),
        max_concurrent_orders: 2,
        frames_per_order: 1,
        claim: true,
        claim_ttl: Duration::from_secs(600),
        list_page_size: 100,
        owner: "test-host".into(),
        recognition_retry: Duration::from_secs(5),
        orphan_after: None,
        retry_delay: Duration::from_millis(200),
        expected_wait: Duration::ZERO,
        reuse_after: Duration::from_secs(1_800),
    }
}

/// A recogniser test double: sees the same items in every order (whose frames must not
/// be empty) and counts its calls; with [`RecognizerDouble::failing_first`], it is a VLM
/// server that is down: its first calls fail as a connection error does (a failure that
/// may pass).
pub struct RecognizerDouble {
    items: Vec<Item>,
    failures: usize,
    calls: AtomicUsize,
    usage: Option<crate::result::TokenUsage>,
}

impl RecognizerDouble {
    /// Sees `items` (name, quantity) in every order.
    pub fn sees(items: &[(&str, u32)]) -> RecognizerDouble {
        RecognizerDouble {
            items: items
                .iter()
                .map(|(name, quantity)| Item {
                    name: (*name).into(),
                    quantity: *quantity,
                })
                .collect(),
            failures: 0,
            calls: AtomicUsize::new(0),
            usage: None,
        }
    }

    /// Says each recognition used these tokens, as a VLM server's `usage` does.
    pub fn using(self, prompt: u64, completion: u64) -> RecognizerDouble {
        RecognizerDouble {
            usage: Some(crate::result::TokenUsage { prompt, completion }),
            ..self
        }
    }

    /// Its first `failures` calls fail as a refused connection does.
    pub fn failing_first(self, failures: usize) -> RecognizerDouble {
        RecognizerDouble { failures, ..self }
    }

    /// How many times it was called, failed calls included.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Recognizer for RecognizerDouble {
    fn name(&self) -> &str {
        "test-double"
    }
    async fn recognize(&self, frames: &[Frame]) -> Result<Vec<Item>, RecognizeError> {
        assert!(!frames.is_empty(), "recognition of no frames");
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.failures {
            return Err(RecognizeError::transient("connection refused"));
        }
        Ok(self.items.clone())
    }
    async fn recognize_with_usage(
        &self,
        frames: &[Frame],
    ) -> Result<crate::recognize::Recognition, RecognizeError> {
        Ok(crate::recognize::Recognition {
            items: self.recognize(frames).await?,
            usage: self.usage,
        })
    }
}

/// The files [`test_pki`] writes.
pub struct TestPki {
    /// The CA certificate clients trust.
    pub ca: std::path::PathBuf,
    /// The server certificate for 127.0.0.1 (and `localhost`), signed by the CA.
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made with `openssl` (P-256,
/// valid 2 days) in `dir`.
pub fn test_pki(dir: &std::path::Path) -> TestPki {
    std::fs::create_dir_all(dir).expect("PKI folder");
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .expect("leaf.ext");
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let steps = [
        format!("req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=oa-test-CA"),
        format!("req {ec} -keyout leaf.key -out leaf.csr -subj /CN=127.0.0.1"),
        "x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem \
         -days 2 -extfile leaf.ext"
            .to_owned(),
    ];
    for args in steps {
        let out = std::process::Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir)
            .output()
            .expect("openssl (Debian package openssl, installed by scripts/setup.sh)");
        assert!(
            out.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    TestPki {
        ca: dir.join("ca.pem"),
        cert: dir.join("leaf.pem"),
        key: dir.join("leaf.key"),
    }
}

/// A history of past orders for [`seed_history`].
pub struct History<'a> {
    /// The folder of the bucket the embedded S3 server (s3s-fs) serves.
    pub bucket_root: &'a std::path::Path,
    pub stations: &'a [&'a str],
    pub orders_per_station: u64,
    /// The orders are spread evenly over `span_ms` up to `end_ms` (Unix ms).
    pub span_ms: u64,
    pub end_ms: u64,
    /// The one frame of every order.
    pub jpeg: &'a [u8],
    /// Every n-th order is a mismatch (one apple of two); 0: all validated.
    pub mismatch_every: u64,
}

/// Writes `h`'s orders as files straight into the bucket's folder, as the sink and the
/// consumer would have left them (writing hundreds of thousands of objects through HTTP
/// would take minutes): per order its `begin` and `marker` index entries, a frame, its
/// marker and its result; per station the checkpoint a clean stop leaves. Orders are
/// numbered from 1. Returns the time of the newest marker.
pub fn seed_history(h: &History<'_>) -> u64 {
    use oa_contract::{CompletionReason, IndexKind, Manifest};
    let write = |key: &str, body: &[u8]| {
        let path = h.bucket_root.join(key);
        if std::fs::write(&path, body).is_err() {
            std::fs::create_dir_all(path.parent().expect("a key has a folder"))
                .expect("bucket folder");
            std::fs::write(&path, body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    };
    let start = h.end_ms - h.span_ms;
    let step = h.span_ms / h.orders_per_station.max(1);
    let newest = start + (h.orders_per_station.saturating_sub(1)) * step + 30_000;
    for station in h.stations {
        for i in 0..h.orders_per_station {
            let order = (i + 1).to_string();
            let t = start + i * step;
            let marked = t + 30_000;
            let frame = frame_key("", station, &order, t, 0).expect("frame key");
            let manifest = Manifest::new(
                station,
                &order,
                CompletionReason::NextOrder,
                vec![FrameEntry {
                    key: frame.clone(),
                    seq: 0,
                    unix_ms: t,
                    bytes: h.jpeg.len() as u64,
                }],
                "history-1",
            );
            let begin = oa_contract::index_key("", station, &order, IndexKind::Begin, t);
            write(&begin.expect("index key"), b"{}");
            write(&frame, h.jpeg);
            let entry = oa_contract::index_key("", station, &order, IndexKind::Marker, marked);
            write(&entry.expect("index key"), b"{}");
            let marker = oa_contract::marker_key("", station, &order).expect("marker key");
            write(&marker, &manifest.to_json());
            let mismatch = h.mismatch_every > 0 && (i + 1) % h.mismatch_every == 0;
            let result = history_result(station, &order, t, i, mismatch);
            let key = oa_contract::result_key("", station, &order).expect("result key");
            write(&key, result.as_bytes());
        }
        let checkpoint = oa_contract::checkpoint_key("", station).expect("checkpoint key");
        let body = format!(
            r#"{{"before_unix_ms":{},"owner":"seed-history","written_unix_ms":{}}}"#,
            newest + 1,
            h.end_ms
        );
        write(&checkpoint, body.as_bytes());
    }
    newest
}

/// The stored result of the `i`-th seeded order: one apple (of two, for a mismatch),
/// with a total latency between 300 and 1,800 ms.
fn history_result(station: &str, order: &str, last_unix_ms: u64, i: u64, mismatch: bool) -> String {
    let total = 300 + (i * 37) % 1500;
    let (status, expected, missing, quantity, accuracy) = if mismatch {
        (
            "mismatch",
            2,
            "[]",
            r#"[{"name":"apple","expected":2,"detected":1}]"#,
            0.5,
        )
    } else {
        ("validated", 1, "[]", "[]", 1.0)
    };
    format!(
        r#"{{"order_id":"{order}","station_id":"{station}","status":"{status}","expected":[{{"name":"apple","quantity":{expected}}}],"detected":[{{"name":"apple","quantity":1}}],"matched":[{{"name":"apple","quantity":1}}],"missing":{missing},"extra":[],"quantity_mismatch":{quantity},"accuracy":{accuracy},"selected_frames":[],"recognizer":"openai:history","timings_ms":{{"discover":1,"load":1,"select":1,"recognize":{recognize},"validate":1,"total":{total}}},"revision":1,"manifest_frame_count":1,"manifest_last_unix_ms":{last_unix_ms}}}"#,
        recognize = total - 4,
    )
}
