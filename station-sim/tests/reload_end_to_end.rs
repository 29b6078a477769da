//! The station list changed while orders are in progress, on real parts (simulated RTSP
//! cameras, the embedded S3 server, `orchestrator run`): with stations 1-3 running, a
//! broken file is refused (`POST /api/reload`: 400 naming the field, nothing restarted);
//! then the file is rewritten, station 2's roi changed, station 3 removed and station 4
//! added, and the file watch applies it: station 1's pipeline keeps its PID and its open
//! order (one manifest, from the pipeline that opened it), station 3's open order gets
//! its marker, station 2 runs with the new revision and station 4 produces orders. Needs
//! the release binaries and the plugin (scripts/test.sh).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use station_sim::pos::{free_port, http};
use station_sim::{AtEnd, Plan, Scenario, Simulator, run};

fn scenario() -> String {
    let mut toml = String::from("seed = 11\nfps = 5\n");
    let items = ["banana", "green apple", "water bottle", "french fries"];
    for st in 1..=4 {
        toml.push_str(&format!("\n[[stations]]\nid = \"station_{st}\"\n"));
        for n in 1..=2 {
            toml.push_str(&format!(
                "\n[[stations.orders]]\nid = \"5{st}0{n}\"\nordered = [{{ name = \"{}\" }}]\n\
                 slip_s = 14\npause_s = 3\n",
                items[(st + n) % 4]
            ));
        }
    }
    toml
}

fn config(urls: &[(String, String)], port: u16, stations: &[(&str, Option<&str>)]) -> String {
    let pipelines = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    let mut toml = format!(
        "orders_file = \"orders.json\"\ninventory_file = \"inventory.json\"\n\
         [storage]\nembedded_root = \"s3\"\nbucket = \"frames\"\n\
         [http]\nbind = \"127.0.0.1:{port}\"\n\
         [supervision]\npipelines_dir = \"{}\"\nplugin_path = \"{}\"\nbackoff_s = [1, 2]\n\
         shutdown_grace_s = 10\n\
         [processing]\npoll_interval_ms = 200\nexpected_wait_s = 5\nframes_per_order = 4\n",
        pipelines.display(),
        run::release_dir().display()
    );
    for (id, roi) in stations {
        let url = &urls.iter().find(|(i, _)| i == id).unwrap().1;
        toml.push_str(&format!(
            "\n[[stations]]\nid = \"{id}\"\nsource = \"{url}\"\nidle_timeout_ms = 3000\n"
        ));
        if let Some(r) = roi {
            toml.push_str(&format!("roi = \"{r}\"\n"));
        }
    }
    toml
}

fn stations(addr: &str) -> Vec<Value> {
    let (status, body) = http(addr, "GET", "/api/stations", None).unwrap();
    assert_eq!(status, 200);
    serde_json::from_slice::<Value>(&body)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn station<'a>(all: &'a [Value], id: &str) -> Option<&'a Value> {
    all.iter().find(|s| s["station_id"] == id)
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn has_frame(order_dir: &Path) -> bool {
    std::fs::read_dir(order_dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|f| f.file_name().to_string_lossy().ends_with(".jpg"))
}

fn manifest(order_dir: &Path) -> Option<Value> {
    let bytes = std::fs::read(order_dir.join("__EOS__")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[test]
fn stations_added_removed_and_changed_while_the_others_keep_their_pipeline_and_orders() {
    let dir = std::env::temp_dir().join(format!("oa-reload-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let plan = Plan::new(Scenario::from_toml(&scenario()).unwrap()).unwrap();
    plan.write_files(&dir).unwrap();
    let sim = Simulator::serve(&plan, 0, AtEnd::Hold).unwrap();
    let urls = sim.urls().to_vec();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let path = dir.join("orchestrator.toml");
    let first = [
        ("station_1", None),
        ("station_2", None),
        ("station_3", None),
    ];
    std::fs::write(&path, config(&urls, port, &first)).unwrap();
    let log = dir.join("orchestrator.log");
    let _server = run::Orchestrator::spawn(&path, &log, &[]);
    let bucket = dir.join("s3/frames");

    // Every station has its first order open.
    wait_until("the first orders to be open", 60, || {
        ["station_1/5101", "station_2/5201", "station_3/5301"]
            .iter()
            .all(|o| has_frame(&bucket.join(o)))
    });
    assert!(manifest(&bucket.join("station_1/5101")).is_none());
    assert!(manifest(&bucket.join("station_3/5301")).is_none());
    let before = stations(&addr);
    let pid_1 = station(&before, "station_1").unwrap()["pid"].clone();
    let instance_1 = station(&before, "station_1").unwrap()["pipeline_instance"].clone();
    assert!(pid_1.is_u64(), "{before:#?}");

    // A broken change is refused as a whole, naming the field; nothing restarts.
    let mut broken = config(&urls, port, &first);
    broken = broken.replacen(
        "idle_timeout_ms = 3000\n",
        "idle_timeout_ms = 3000\nroi = \"nope\"\n",
        2,
    );
    std::fs::write(&path, broken).unwrap();
    let (status, body) = http(&addr, "POST", "/api/reload", Some(b"")).unwrap();
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("stations[0].roi"), "{body}");
    let same = stations(&addr);
    for id in ["station_1", "station_2", "station_3"] {
        assert_eq!(
            station(&same, id).unwrap()["pid"],
            station(&before, id).unwrap()["pid"],
            "{id} restarted by a refused reload"
        );
        assert_eq!(station(&same, id).unwrap()["config_revision"], 1);
    }

    // The change, applied by the file watch.
    let second = [
        ("station_1", None),
        ("station_2", Some("40,30,760,170")),
        ("station_4", None),
    ];
    std::fs::write(&path, config(&urls, port, &second)).unwrap();
    let written = Instant::now();
    wait_until("station_4 to be added", 30, || {
        let now = stations(&addr);
        station(&now, "station_4").is_some() && station(&now, "station_3").is_none()
    });
    let applied = written.elapsed();
    wait_until("station_4's first frame", 60, || {
        has_frame(&bucket.join("station_4/5401"))
    });
    // Figures, not targets: the file watch looks every 2 s, and a removed or changed
    // station's pipeline takes its EOS before the reload is done.
    eprintln!(
        "file written -> reload applied: {} ms; -> station_4's first frame stored: {} ms",
        applied.as_millis(),
        written.elapsed().as_millis()
    );
    let after = stations(&addr);
    let ids: Vec<&str> = after
        .iter()
        .map(|s| s["station_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["station_1", "station_2", "station_4"]);
    let s1 = station(&after, "station_1").unwrap();
    assert_eq!(s1["pid"], pid_1, "station 1's pipeline kept its PID");
    assert_eq!(s1["config_revision"], 1);
    assert_eq!(station(&after, "station_2").unwrap()["config_revision"], 2);
    assert_eq!(station(&after, "station_4").unwrap()["config_revision"], 2);
    // The removed station's open order was completed when its pipeline stopped.
    let m3 =
        manifest(&bucket.join("station_3/5301")).expect("station 3's open order has its marker");
    assert!(m3["frame_count"].as_u64().unwrap() >= 1, "{m3}");
    // POST /api/reload with the file as it is: nothing to do.
    let (status, body) = http(&addr, "POST", "/api/reload", Some(b"")).unwrap();
    let outcome: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["stations"]["revision"], 2, "{outcome}");
    assert_eq!(
        outcome["stations"]["unchanged"].as_array().unwrap().len(),
        3
    );

    // Station 1's open order completes in the pipeline that opened it; station 4 produces
    // orders; every one gets its result.
    let results = bucket.join("results");
    wait_until("the results", 120, || {
        [
            "station_1/5101",
            "station_1/5102",
            "station_4/5401",
            "station_2/5202",
        ]
        .iter()
        .all(|o| results.join(format!("{o}.json")).is_file())
    });
    let m1 = manifest(&bucket.join("station_1/5101")).unwrap();
    assert_eq!(m1["pipeline_instance"], instance_1, "{m1}");
    assert!(m1["frame_count"].as_u64().unwrap() >= 8, "{m1}");
    assert!(
        !bucket.join("station_1/5101.2").exists(),
        "station 1's order was cut in two"
    );
    let r1: Value =
        serde_json::from_slice(&std::fs::read(results.join("station_1/5101.json")).unwrap())
            .unwrap();
    assert_eq!(r1["status"], "validated", "{r1:#}");
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
}
