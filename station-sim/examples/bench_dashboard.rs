//! How soon the dashboard is usable over a long history (issue 13): a store seeded with
//! `--orders` past orders (10,000; two stations, spread over the last 24 h, every 12th a
//! mismatch) in the folder of the orchestrator's embedded S3 server, the orchestrator
//! binary on it with its API behind a token and two stations running a `videotestsrc`
//! pipeline, and Debian's chromium (through chromedriver) loading the page `--loads`
//! times (5). Prints, per load and as the median, when each part was first shown
//! (the page's `performance.mark`s, from the start of the navigation): stations, the
//! order feed (its first page: usable), the 24 h charts and the latency sample; the
//! orchestrator's RSS; and `GET /api/orders?limit=100` as the page asks it.
//!
//!   cargo run --release -p station-sim --example bench_dashboard [-- --orders N] [--loads N]
//!
//! Needs `cargo build --release` (the orchestrator and the plugin), the OCR models
//! (scripts/setup.sh; the `labels` recogniser loads them, no order is recognised here),
//! chromium and chromium-driver.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use station_sim::pos::{free_port, http, http_with_token};
use station_sim::run::release_dir;
use station_sim::webdriver::Driver;

const ACCESS: &str = "bench-access";
const SECRET: &str = "bench-secret-0123456789";
const TOKEN: &str = "bench-dashboard-read-token";
const STATIONS: [&str; 2] = ["station_1", "station_2"];
const MARKS: [&str; 4] = ["oa-stations", "oa-feed", "oa-charts", "oa-latency"];

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: not a number: {v}"))
        })
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!(
            "bench_dashboard [--orders N (10000)] [--loads N (5)]: time to a usable dashboard over N stored orders"
        );
        return;
    }
    let orders = arg("--orders", 10_000);
    let loads = arg("--loads", 5).max(1);
    let dir = orchestrator::testing::scratch_dir("bench-dashboard");
    let bucket_root = dir.join("s3").join("frames");
    std::fs::create_dir_all(&bucket_root).unwrap();

    let seeded = Instant::now();
    let jpeg =
        orchestrator::testing::videotestsrc_jpegs(&dir.join("frame"), &["pattern=18"], (64, 48), 1)
            .remove(0);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    orchestrator::testing::seed_history(&orchestrator::testing::History {
        bucket_root: &bucket_root,
        stations: &STATIONS,
        orders_per_station: orders / STATIONS.len() as u64,
        span_ms: 24 * 3_600_000,
        end_ms: now_ms - 60_000,
        jpeg: &jpeg,
        mismatch_every: 12,
    });
    println!(
        "seeded {orders} orders at {} stations over the last 24 h in {:.1} s",
        STATIONS.len(),
        seeded.elapsed().as_secs_f64()
    );

    std::fs::write(dir.join("orders.json"), "{}\n").unwrap();
    std::fs::write(
        dir.join("inventory.json"),
        r#"{"items":[{"id":"001","name":"apple","aliases":[]}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("test.pipeline"),
        "# {station_id}\nvideotestsrc is-live=true ! video/x-raw,framerate=1/1 ! fakesink\n",
    )
    .unwrap();
    let (s3_port, http_port) = (free_port(), free_port());
    let mut toml = format!(
        "orders_file = \"orders.json\"\ninventory_file = \"inventory.json\"\n\n\
         [storage]\nendpoint = \"http://127.0.0.1:{s3_port}\"\nembedded_root = \"{root}\"\n\
         bucket = \"frames\"\n\n[recognition]\nbackend = \"labels\"\n\n\
         [http]\nbind = \"127.0.0.1:{http_port}\"\n\n\
         [supervision]\npipelines_dir = \"{dir}\"\nplugin_path = \"{plugins}\"\nstall_timeout_s = 3600\n",
        root = dir.join("s3").display(),
        dir = dir.display(),
        plugins = release_dir().display(),
    );
    for s in STATIONS {
        toml.push_str(&format!(
            "\n[[stations]]\nid = \"{s}\"\nsource = \"none\"\npipeline = \"test.pipeline\"\n"
        ));
    }
    let cfg = dir.join("orchestrator.toml");
    std::fs::write(&cfg, toml).unwrap();
    let log = std::fs::File::create(dir.join("orchestrator.log")).unwrap();
    let started = Instant::now();
    let orch = Killed(
        Command::new(release_dir().join("orchestrator"))
            .args(["run", "--config"])
            .arg(&cfg)
            .env("AWS_ACCESS_KEY_ID", ACCESS)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("OA_API_READ_TOKENS", TOKEN)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("target/release/orchestrator (cargo build --release)"),
    );
    let addr = format!("127.0.0.1:{http_port}");
    while !http(&addr, "GET", "/readyz", None).is_ok_and(|(s, _)| s == 200) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not ready after 60 s; log in {}",
            dir.join("orchestrator.log").display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "orchestrator ready in {:.2} s, RSS {:.1} MB",
        started.elapsed().as_secs_f64(),
        rss_mb(orch.0.id())
    );

    // The earlier results are read back in the background: the loads below see all of them.
    let known = || {
        http_with_token(&addr, "GET", "/api/stats?since=2d", None, Some(TOKEN))
            .ok()
            .and_then(|(_, b)| serde_json::from_slice::<Value>(&b).ok())
            // Orders in the last minutes before the checkpoint are looked at again (a
            // seeded result cannot name its marker's LastModified) and wait for their
            // expected items meanwhile: awaiting.
            .and_then(|v| Some(v["total"]["orders"].as_u64()? + v["total"]["awaiting"].as_u64()?))
            .unwrap_or(0)
    };
    let mut said = Instant::now();
    while known() < orders / STATIONS.len() as u64 * STATIONS.len() as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} of {orders} earlier results read back after 60 s",
            known()
        );
        if said.elapsed() > Duration::from_secs(10) {
            println!("  {} of {orders} earlier results read back", known());
            said = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "all {} earlier results read back {:.2} s after the start, RSS {:.1} MB",
        known(),
        started.elapsed().as_secs_f64(),
        rss_mb(orch.0.id())
    );

    let driver = Driver::start(&dir).unwrap();
    let session = driver.session(1280, 1000).unwrap();
    let base = format!("http://{addr}");
    let mut per_mark: Vec<Vec<f64>> = vec![Vec::new(); MARKS.len()];
    for load in 1..=loads {
        session.goto("about:blank").unwrap();
        session.goto(&format!("{base}/#token={TOKEN}")).unwrap();
        let marks = session
            .wait_for(
                "every part shown",
                "const m = ['oa-stations', 'oa-feed', 'oa-charts', 'oa-latency'] \
                   .map((n) => performance.getEntriesByName(n)[0]); \
                 const rows = document.querySelectorAll('#orders tr[data-order-key]').length; \
                 const cards = document.querySelectorAll('#stations .station[data-state=running]').length; \
                 return m.every(Boolean) && rows > 0 && cards === 2 \
                   ? { t: m.map((e) => e.startTime), rows, cards } : null",
                Duration::from_secs(30),
            )
            .unwrap();
        let t: Vec<f64> = marks["t"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        println!(
            "load {load}: stations {:.0} ms, feed {:.0} ms ({} rows), charts {:.0} ms, latency sample {:.0} ms",
            t[0], t[1], marks["rows"], t[2], t[3]
        );
        for (i, v) in t.into_iter().enumerate() {
            per_mark[i].push(v);
        }
    }
    drop(session);
    let mut api = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let (status, body) =
            http_with_token(&addr, "GET", "/api/orders?limit=100", None, Some(TOKEN)).unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        api.push(t.elapsed().as_secs_f64() * 1000.0);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v.as_array().map(Vec::len), Some(100));
    }
    let medians: Vec<f64> = per_mark.into_iter().map(median).collect();
    let usable = medians[0].max(medians[1]);
    println!(
        "median of {loads} loads over {orders} stored orders: usable (stations and the first page of orders) {usable:.0} ms; \
         charts {:.0} ms; latency sample {:.0} ms; GET /api/orders?limit=100 median {:.1} ms; orchestrator RSS {:.1} MB",
        medians[2],
        medians[3],
        median(api),
        rss_mb(orch.0.id())
    );
    println!(
        "BENCH_JSON {}",
        serde_json::json!({ "dashboard": {
            "orders": orders, "loads": loads, "usable_ms": usable, "stations_ms": medians[0],
            "feed_ms": medians[1], "charts_ms": medians[2], "latency_sample_ms": medians[3],
        }})
    );
    drop(orch);
    let _ = std::fs::remove_dir_all(&dir);
}
