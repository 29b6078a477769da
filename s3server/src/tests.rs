//! The server through a real S3 client (aws-sdk-s3, SigV4) on loopback.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;

use super::*;

const ACCESS: &str = "unit-access";
const SECRET: &str = "unit-secret-0123456789";
const BUCKET: &str = "frames";

/// A folder of its own, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "oa-s3server-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn server(dir: &Scratch) -> S3Server {
    S3Server::start(Options {
        buckets: vec![BUCKET.into()],
        ..Options::new(&dir.0, ACCESS, SECRET)
    })
    .await
    .unwrap()
}

/// A server in a folder of its own, and a client signing with its key pair.
async fn started() -> (Scratch, S3Server, Client) {
    let dir = Scratch::new();
    let s = server(&dir).await;
    let c = client(&s.endpoint(), SECRET);
    (dir, s, c)
}

/// No retries: an outage must show as the first request's error.
fn client(endpoint: &str, secret: &str) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(ACCESS, secret, None, None, "unit-test"))
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

async fn put(c: &Client, key: &str, body: Vec<u8>) -> Result<(), String> {
    c.put_object()
        .bucket(BUCKET)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

async fn get(c: &Client, key: &str) -> Vec<u8> {
    let out = c.get_object().bucket(BUCKET).key(key).send().await.unwrap();
    out.body.collect().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_signed_requests_and_refuses_a_wrong_secret() {
    let (_dir, s, c) = started().await;
    put(&c, "a/b.jpg", b"jpeg".to_vec()).await.unwrap();
    assert_eq!(get(&c, "a/b.jpg").await, b"jpeg");
    assert_eq!(s.read_object(BUCKET, "a/b.jpg").unwrap(), b"jpeg");

    let wrong = client(&s.endpoint(), "not-the-secret-0123");
    let err = wrong
        .get_object()
        .bucket(BUCKET)
        .key("a/b.jpg")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 403);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_concurrent_conditional_puts_creates_the_key() {
    let (_dir, s, c) = started().await;
    let mut claims = JoinSet::new();
    for i in 0..8u8 {
        let c = c.clone();
        claims.spawn(async move {
            let res = c
                .put_object()
                .bucket(BUCKET)
                .key("claims/s1/7")
                .if_none_match("*")
                .body(ByteStream::from(vec![i]))
                .send()
                .await;
            res.map_err(|e| e.raw_response().map(|r| r.status().as_u16()))
        });
    }
    let results = claims.join_all().await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(results.iter().all(|r| matches!(r, Ok(_) | Err(Some(412)))));
    assert_eq!(s.put_log(), ["claims/s1/7"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_log_is_in_completion_order() {
    let (_dir, s, c) = started().await;
    for key in ["s/1/frame_2", "s/1/frame_1", "s/1/__EOS__"] {
        put(&c, key, key.as_bytes().to_vec()).await.unwrap();
    }
    assert_eq!(s.put_log(), ["s/1/frame_2", "s/1/frame_1", "s/1/__EOS__"]);
    let records = s.put_records();
    assert_eq!(records[2].seq, 2);
    assert_eq!(records[2].bucket, BUCKET);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_refuses_connections_and_restart_serves_the_same_data() {
    let (_dir, s, c) = started().await;
    put(&c, "k", b"before".to_vec()).await.unwrap();
    s.stop().await;
    assert!(!s.is_running());
    assert!(tokio::net::TcpStream::connect(s.addr()).await.is_err());
    assert!(put(&c, "k2", b"during".to_vec()).await.is_err());
    s.restart().await.unwrap();
    assert!(s.is_running());
    assert_eq!(get(&c, "k").await, b"before");
    put(&c, "k2", b"after".to_vec()).await.unwrap();
    assert_eq!(s.put_log(), ["k", "k2"]);
}

/// Larger than what the loopback socket buffers hold, so the response is still being
/// written while the client reads its first chunk.
const LARGE: usize = 32 << 20;

/// The body of `large` after its first chunk, and that chunk's length.
async fn start_download(c: &Client) -> (ByteStream, usize) {
    let mut body = c
        .get_object()
        .bucket(BUCKET)
        .key("large")
        .send()
        .await
        .unwrap()
        .body;
    let first = body.try_next().await.unwrap().expect("a first chunk");
    (body, first.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_download_in_flight_finish() {
    let dir = Scratch::new();
    let s = server(&dir).await;
    let addr = s.addr();
    let c = client(&s.endpoint(), SECRET);
    put(&c, "large", vec![7; LARGE]).await.unwrap();
    let (mut body, mut received) = start_download(&c).await;

    let shutdown = tokio::spawn(s.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown did not wait for the download"
    );
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    while let Some(chunk) = body.try_next().await.unwrap() {
        received += chunk.len();
    }
    assert_eq!(received, LARGE);
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("shutdown ends once the download is done")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_on_a_stuck_client_after_the_drain_timeout() {
    let dir = Scratch::new();
    let s = S3Server::start(Options {
        buckets: vec![BUCKET.into()],
        drain_timeout: Duration::from_millis(200),
        ..Options::new(&dir.0, ACCESS, SECRET)
    })
    .await
    .unwrap();
    let c = client(&s.endpoint(), SECRET);
    put(&c, "large", vec![7; LARGE]).await.unwrap();
    let _stuck = start_download(&c).await;
    tokio::time::timeout(Duration::from_secs(5), s.shutdown())
        .await
        .expect("shutdown bounded by the drain timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_cuts_a_download_in_flight() {
    let (_dir, s, c) = started().await;
    put(&c, "large", vec![7; LARGE]).await.unwrap();
    let (body, _) = start_download(&c).await;
    tokio::time::timeout(Duration::from_secs(5), s.stop())
        .await
        .expect("stop does not wait for clients");
    assert!(body.collect().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_invalid_bucket_names() {
    let dir = Scratch::new();
    let s = server(&dir).await;
    for name in ["", "UPPER", ".hidden", "a/b", &"x".repeat(64)] {
        assert!(s.create_bucket(name).is_err(), "{name:?}");
    }
    s.create_bucket(BUCKET).unwrap();
}

#[tokio::test]
async fn a_server_without_the_put_log_keeps_no_record_of_puts() {
    let (_dir, logged, c) = started().await;
    put(&c, "a/1.jpg", b"one".to_vec()).await.unwrap();
    assert_eq!(logged.put_log(), ["a/1.jpg"]);

    let dir = Scratch::new();
    let quiet = S3Server::start(Options {
        buckets: vec![BUCKET.into()],
        record_puts: false,
        ..Options::new(&dir.0, ACCESS, SECRET)
    })
    .await
    .unwrap();
    let c = client(&quiet.endpoint(), SECRET);
    for n in 0..3 {
        put(&c, &format!("a/{n}.jpg"), b"x".to_vec()).await.unwrap();
    }
    assert_eq!(get(&c, "a/2.jpg").await, b"x");
    assert!(quiet.put_log().is_empty(), "{:?}", quiet.put_log());
}

/// The root's `.bucket-…` side files (s3s-fs's per-object ETag and metadata).
fn side_files(root: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".bucket-"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn deleted_objects_leave_no_side_files_and_old_ones_are_swept_at_start() {
    let (dir, first, c) = started().await;
    for n in 0..4 {
        put(&c, &format!("st/1/{n}.jpg"), b"x".to_vec())
            .await
            .unwrap();
    }
    // Two per object: ETag/checksums and metadata.
    assert_eq!(side_files(&dir.0).len(), 8, "{:?}", side_files(&dir.0));
    c.delete_object()
        .bucket(BUCKET)
        .key("st/1/0.jpg")
        .send()
        .await
        .unwrap();
    let ids = ["st/1/1.jpg", "st/1/2.jpg"].map(|k| {
        aws_sdk_s3::types::ObjectIdentifier::builder()
            .key(k)
            .build()
            .unwrap()
    });
    c.delete_objects()
        .bucket(BUCKET)
        .delete(
            aws_sdk_s3::types::Delete::builder()
                .set_objects(Some(ids.to_vec()))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let left = side_files(&dir.0);
    assert_eq!(left.len(), 2, "only st/1/3.jpg's remain: {left:?}");
    assert!(
        left.iter().all(|n| n.contains("c3QvMS8zLmpwZw")),
        "{left:?}"
    );
    assert_eq!(get(&c, "st/1/3.jpg").await, b"x");

    // Side files an earlier version left behind (their objects gone) go at the next start;
    // a live object's stays.
    first.shutdown().await;
    std::fs::remove_file(dir.0.join(BUCKET).join("st/1/3.jpg")).unwrap();
    let again = server(&dir).await;
    // The sweep runs in the background.
    for _ in 0..100 {
        if side_files(&dir.0).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(side_files(&dir.0).is_empty(), "{:?}", side_files(&dir.0));
    let c = client(&again.endpoint(), SECRET);
    put(&c, "st/2/0.jpg", b"y".to_vec()).await.unwrap();
    again.shutdown().await;
    let live = side_files(&dir.0);
    assert_eq!(live.len(), 2, "{live:?}");
    let third = server(&dir).await;
    assert_eq!(
        side_files(&dir.0),
        live,
        "a live object's side file is kept"
    );
    third.shutdown().await;
}
