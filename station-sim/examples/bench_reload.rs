//! Reloading the station list while 16 stations run: how soon a change is in force, how
//! soon an added station stores its first frame, and what the unchanged stations lose.
//!
//! `scenarios/density.toml` (1280x720, 15 frames/s H.264, a slip always in view) is
//! rendered once and replayed over RTSP on 127.0.0.1 to 17 stations; `orchestrator run`
//! (embedded S3, region OCR, `labels`) runs 16 of them. Then, `--reloads` times, the file
//! is rewritten with station 17 added (or removed again) and the orchestrator gets SIGHUP;
//! measured from that moment: the change in force (`/api/stations` shows it), and for an
//! add the first frame of station 17 in the bucket. Over the whole loop: whether the 16
//! unchanged stations kept their pipeline's PID, and their frames stored per second (1.0
//! is every frame of a slip always in view).
//!
//!   bench_reload [--reloads 20]
//!
//! Prints the figures and `BENCH_JSON {"reload":{...}}`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use station_sim::pos::{free_port, http};
use station_sim::run::{Orchestrator, percentile, release_dir, repo_root, scenario_path};
use station_sim::{Plan, Scenario, Simulator, record};

const ROI: &str = "40,30,760,170";
const RUNNING: usize = 16;

fn config(urls: &[(String, String)], port: u16, n: usize) -> String {
    let mut toml = format!(
        "orders_file = \"orders.json\"\ninventory_file = \"inventory.json\"\n\
         [storage]\nembedded_root = \"s3\"\nbucket = \"frames\"\n\
         [http]\nbind = \"127.0.0.1:{port}\"\n\
         [supervision]\npipelines_dir = \"{}\"\nplugin_path = \"{}\"\nshutdown_grace_s = 10\n\
         [processing]\npoll_interval_ms = 500\n",
        repo_root().join("pipelines").display(),
        release_dir().display()
    );
    for (id, url) in urls.iter().take(n) {
        toml.push_str(&format!(
            "\n[[stations]]\nid = \"{id}\"\nsource = \"{url}\"\nroi = \"{ROI}\"\nidle_timeout_ms = 3000\n"
        ));
    }
    toml
}

fn stations(addr: &str) -> Vec<Value> {
    http(addr, "GET", "/api/stations", None)
        .ok()
        .and_then(|(s, b)| (s == 200).then_some(b))
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// Frames of `station` in the bucket written at or after `since`.
fn frames_since(bucket: &Path, station: &str, since: SystemTime) -> usize {
    let mut n = 0;
    for order in std::fs::read_dir(bucket.join(station))
        .into_iter()
        .flatten()
        .flatten()
    {
        for f in std::fs::read_dir(order.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name();
            if name.to_string_lossy().ends_with(".jpg")
                && f.metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t >= since)
            {
                n += 1;
            }
        }
    }
    n
}

fn wait(secs: u64, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if f() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    None
}

fn stats(name: &str, v: &mut [u64]) -> Value {
    v.sort_unstable();
    let p50 = percentile(v, 50.0).unwrap_or(0);
    let p95 = percentile(v, 95.0).unwrap_or(0);
    println!(
        "{name:<34} n={:<3} p50 {p50:>5} ms  p95 {p95:>5} ms",
        v.len()
    );
    serde_json::json!({ "n": v.len(), "p50_ms": p50, "p95_ms": p95 })
}

fn main() {
    let mut reloads = 20;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {}
        [flag, n] if flag == "--reloads" => reloads = n.parse().expect("--reloads N"),
        _ => {
            eprintln!("usage: bench_reload [--reloads 20]");
            std::process::exit(2);
        }
    }
    let work = std::env::temp_dir().join(format!("oa-bench-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let plan = Plan::new(Scenario::load(&scenario_path("density.toml")).unwrap()).unwrap();
    plan.write_files(&work).unwrap();
    let recording: PathBuf = work.join("camera.mkv");
    record(&plan, 0, &recording).expect("recording the camera");
    let ids: Vec<String> = (1..=RUNNING + 1).map(|i| format!("station_{i}")).collect();
    let sim = Simulator::replay(&recording, &ids, 0).expect("RTSP replay");
    let urls = sim.urls().to_vec();
    let added = &ids[RUNNING];
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = work.join("orchestrator.toml");
    std::fs::write(&cfg, config(&urls, port, RUNNING)).unwrap();
    let orch = Orchestrator::spawn(&cfg, &work.join("orchestrator.log"), &[]);
    let pid = nix::unistd::Pid::from_raw(orch.child.id() as i32);
    let bucket = work.join("s3/frames");
    let up = wait(90, || {
        let s = stations(&addr);
        s.len() == RUNNING && s.iter().all(|s| s["state"] == "running")
    });
    let Some(up) = up else {
        eprintln!(
            "bench_reload: the 16 stations did not all run:\n{}",
            orch.log_tail()
        );
        std::process::exit(1);
    };
    eprintln!("{RUNNING} stations running after {:.1} s", up.as_secs_f64());
    // The recording lasts 121 s from each station's connect: leave room for the loop.
    std::thread::sleep(Duration::from_secs(8));
    let pids: Vec<Value> = stations(&addr).iter().map(|s| s["pid"].clone()).collect();
    let loop_start = SystemTime::now();
    let loop_t = Instant::now();
    let (mut in_force_add, mut first_frame, mut in_force_remove) = (vec![], vec![], vec![]);
    for i in 0..reloads {
        if loop_t.elapsed() > Duration::from_secs(90) {
            eprintln!("bench_reload: stopped after {i} reloads (the recording ends)");
            break;
        }
        let adding = i % 2 == 0;
        let n = if adding { RUNNING + 1 } else { RUNNING };
        std::fs::write(&cfg, config(&urls, port, n)).unwrap();
        let t0 = SystemTime::now();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
        let there = |s: &[Value]| s.iter().any(|s| s["station_id"] == added.as_str());
        let forced = wait(30, || there(&stations(&addr)) == adding);
        let Some(forced) = forced else {
            eprintln!(
                "bench_reload: reload {i} not in force after 30 s:\n{}",
                orch.log_tail()
            );
            std::process::exit(1);
        };
        if adding {
            in_force_add.push(forced.as_millis() as u64);
            let t = Instant::now();
            match wait(30, || frames_since(&bucket, added, t0) > 0) {
                Some(_) => first_frame.push((forced + t.elapsed()).as_millis() as u64),
                None => eprintln!("bench_reload: no frame of {added} within 30 s of reload {i}"),
            }
        } else {
            in_force_remove.push(forced.as_millis() as u64);
        }
    }
    let window = loop_t.elapsed().as_secs_f64();
    let after: Vec<Value> = stations(&addr).iter().map(|s| s["pid"].clone()).collect();
    let kept = pids
        .iter()
        .zip(&after)
        .filter(|(a, b)| a == b && a.is_u64())
        .count();
    let mut rates: Vec<f64> = ids[..RUNNING]
        .iter()
        .map(|id| frames_since(&bucket, id, loop_start) as f64 / window)
        .collect();
    rates.sort_by(f64::total_cmp);
    println!(
        "reloads: {} in {window:.0} s with {RUNNING} stations running (2 cores, region OCR)",
        in_force_add.len() + in_force_remove.len()
    );
    let add = stats("SIGHUP -> added station in force", &mut in_force_add);
    let frame = stats("SIGHUP -> its first frame stored", &mut first_frame);
    let remove = stats("SIGHUP -> removed station gone", &mut in_force_remove);
    println!(
        "unchanged stations: {kept} of {RUNNING} kept their pipeline's PID; frames stored per \
         second: min {:.2}, median {:.2} (1.0: every frame)",
        rates[0],
        rates[rates.len() / 2]
    );
    println!(
        "BENCH_JSON {}",
        serde_json::json!({ "reload": {
            "stations": RUNNING, "add_in_force": add, "add_first_frame": frame,
            "remove_in_force": remove, "pids_kept": kept,
            "frames_per_s_min": rates[0], "frames_per_s_median": rates[rates.len() / 2],
        }})
    );
    drop(orch);
    drop(sim);
    let _ = std::fs::remove_dir_all(&work);
}
