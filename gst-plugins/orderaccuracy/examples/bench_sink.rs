//! Throughput of `minioframesink` against the floor set by plain aws-sdk-s3 PUTs.
//!
//! ```text
//! cargo run --release -p gst-plugin-orderaccuracy --example bench_sink -- [--frames N] [--concurrency C] [--size BYTES] [--rounds R] [--python PY]
//! ```
//!
//! `--python PY` also runs `scripts/bench/python_upload.py` with that interpreter (a venv
//! with boto3) in every round: a boto3 uploader with the same number of threads PUTting
//! the same objects to the same server. The last line is `BENCH_JSON {...}`.
//!
//! Both sides store the same N objects of the same size with C requests in flight, against
//! the same in-process S3 server (s3s-fs with SigV4 on 127.0.0.1). The sink side is timed
//! from the first buffer to the EOS message, so it includes the order's `__EOS__` marker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use gst::prelude::*;
use gstorderaccuracy::events::OrderComplete;
use gstorderaccuracy::meta::OrderTag;
use oa_contract::CompletionReason;
use oa_s3server::S3Server;
use oa_test_support::s3::{ACCESS_KEY, BUCKET, SECRET_KEY, TestS3};

struct Options {
    frames: u32,
    concurrency: u32,
    size: usize,
    rounds: u32,
    python: Option<String>,
}

fn options() -> Options {
    let mut o = Options {
        frames: 1000,
        concurrency: 8,
        size: 100 * 1024,
        rounds: 3,
        python: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{arg} needs a number"))
        };
        match arg.as_str() {
            "--frames" => o.frames = value() as u32,
            "--concurrency" => o.concurrency = value() as u32,
            "--size" => o.size = value() as usize,
            "--rounds" => o.rounds = value() as u32,
            "--python" => o.python = Some(args.next().expect("--python needs a path")),
            _ => panic!(
                "usage: bench_sink [--frames N] [--concurrency C] [--size BYTES] [--rounds R] [--python PY]"
            ),
        }
    }
    o
}

/// Looks enough like a JPEG for anything that only checks markers; content is irrelevant.
fn jpeg_like(size: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..size)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect();
    v[..4].copy_from_slice(&[0xff, 0xd8, 0xff, 0xe0]);
    let n = v.len();
    v[n - 2..].copy_from_slice(&[0xff, 0xd9]);
    v
}

fn run_sink(server: &S3Server, o: &Options, body: &Bytes, round: u32) -> Duration {
    let src = gst_app::AppSrc::builder()
        .caps(&gst::Caps::builder("image/jpeg").build())
        .format(gst::Format::Time)
        .block(true)
        .max_buffers(16)
        .build();
    let sink = gst::ElementFactory::make("minioframesink")
        .property("endpoint-uri", server.endpoint())
        .property("bucket", BUCKET)
        .property("max-in-flight", o.concurrency)
        .build()
        .unwrap();
    let pipeline = oa_test_support::play(&src, &sink);

    let order = format!("sink{round}");
    let started = Instant::now();
    for i in 0..o.frames {
        // Zero-copy, like a buffer coming out of jpegenc.
        let mut buffer = gst::Buffer::from_slice(body.clone());
        OrderTag {
            station_id: "bench".into(),
            order_id: Some(order.clone()),
            unix_ms: 1_700_000_000_000 + u64::from(i),
        }
        .attach(buffer.get_mut().unwrap());
        src.push_buffer(buffer).unwrap();
    }
    src.send_event(gst::Event::from(&OrderComplete {
        station_id: "bench".into(),
        order_id: order,
        reason: CompletionReason::EndOfStream,
        frame_count: o.frames,
        first_pts: None,
        last_pts: None,
        first_unix_ms: None,
        last_unix_ms: None,
    }));
    src.end_of_stream().unwrap();
    let bus = pipeline.bus().unwrap();
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{} ({:?})", e.error(), e.debug()),
            _ => {}
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(sink.property::<u64>("frames-uploaded"), u64::from(o.frames));
    pipeline.set_state(gst::State::Null).unwrap();
    elapsed
}

/// Runs the boto3 uploader; its own timing (after client set-up) is what counts.
fn run_boto3(
    server: &S3Server,
    o: &Options,
    python: &str,
    body: &std::path::Path,
    round: u32,
) -> Duration {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/bench/python_upload.py"
    );
    let out = std::process::Command::new(python)
        .arg(script)
        .args(["--endpoint", &server.endpoint(), "--bucket", BUCKET])
        .arg("--body")
        .arg(body)
        .args(["--frames", &o.frames.to_string()])
        .args(["--concurrency", &o.concurrency.to_string()])
        .args(["--prefix", &format!("bench/boto3{round}/")])
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python_upload.py: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seconds: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH_JSON {\"seconds\": "))
        .and_then(|v| v.trim_end_matches('}').parse().ok())
        .unwrap_or_else(|| panic!("python_upload.py printed {stdout}"));
    Duration::from_secs_f64(seconds)
}

async fn run_raw(client: &aws_sdk_s3::Client, o: &Options, body: &Bytes, round: u32) -> Duration {
    let permits = Arc::new(tokio::sync::Semaphore::new(o.concurrency as usize));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..o.frames {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (client, body) = (client.clone(), body.clone());
        tasks.spawn(async move {
            client
                .put_object()
                .bucket(BUCKET)
                .key(format!(
                    "bench/raw{round}/frame_{}_{i:06}.jpg",
                    1_700_000_000_000u64 + u64::from(i)
                ))
                .content_type("image/jpeg")
                .body(ByteStream::from(body))
                .send()
                .await
                .unwrap();
            drop(permit);
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    started.elapsed()
}

fn main() {
    let o = options();
    // The sink and the raw client read the credentials from the environment.
    oa_test_support::s3::init_with_credentials(gstorderaccuracy::plugin_register_static);

    let root = std::env::temp_dir().join(format!("oa-bench-sink-{}", std::process::id()));
    // The server's own workers, as a remote store would have: the raw client's runtime
    // below does not lend them to it.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = TestS3::start_on(server_rt, &root, ACCESS_KEY, SECRET_KEY, &[BUCKET]);
    let body = Bytes::from(jpeg_like(o.size));
    let body_file = root.with_extension("jpg");
    std::fs::write(&body_file, &body).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(server.endpoint())
            .load()
            .await;
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        )
    });

    println!(
        "{} frames of {} bytes, {} in flight, {} rounds (best of each reported)",
        o.frames, o.size, o.concurrency, o.rounds
    );
    let fps = |d: Duration| f64::from(o.frames) / d.as_secs_f64();
    let (mut best_raw, mut best_sink, mut best_py) = (Duration::MAX, Duration::MAX, Duration::MAX);
    let (mut all_raw, mut all_sink, mut all_py) = (vec![], vec![], vec![]);
    // Alternate so that disk and CPU noise hits both sides alike.
    for round in 0..o.rounds {
        let raw = rt.block_on(run_raw(&client, &o, &body, round));
        let sink = run_sink(&server, &o, &body, round);
        let py = o
            .python
            .as_deref()
            .map(|p| run_boto3(&server, &o, p, &body_file, round));
        println!(
            "round {round}: raw {:8.1} frames/s   minioframesink {:8.1} frames/s   boto3 {}",
            fps(raw),
            fps(sink),
            py.map_or("-".into(), |d| format!("{:8.1} frames/s", fps(d)))
        );
        best_raw = best_raw.min(raw);
        best_sink = best_sink.min(sink);
        all_raw.push(fps(raw));
        all_sink.push(fps(sink));
        if let Some(py) = py {
            best_py = best_py.min(py);
            all_py.push(fps(py));
        }
    }
    let ratio = fps(best_sink) / fps(best_raw);
    println!(
        "raw aws-sdk-s3: {:.1} frames/s ({:.1} MB/s)",
        fps(best_raw),
        fps(best_raw) * o.size as f64 / 1e6
    );
    println!(
        "minioframesink: {:.1} frames/s ({:.1} MB/s)",
        fps(best_sink),
        fps(best_sink) * o.size as f64 / 1e6
    );
    println!("ratio: {:.1}% of raw (target >= 90%)", ratio * 100.0);
    if !all_py.is_empty() {
        println!(
            "boto3 ({} threads): {:.1} frames/s; minioframesink is {:.2}x boto3",
            o.concurrency,
            fps(best_py),
            fps(best_sink) / fps(best_py)
        );
    }
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    println!(
        "BENCH_JSON {{\"sink\":{{\"frames\":{},\"size\":{},\"concurrency\":{},\"raw_fps\":[{}],\"sink_fps\":[{}],\"boto3_fps\":[{}]}}}}",
        o.frames,
        o.size,
        o.concurrency,
        list(&all_raw),
        list(&all_sink),
        list(&all_py)
    );
    let _ = std::fs::remove_file(&body_file);
    drop(server);
    let _ = std::fs::remove_dir_all(&root);
}
