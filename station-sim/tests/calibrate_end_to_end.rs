//! `orchestrator calibrate` on a simulated RTSP camera whose slips lie at three places and
//! rotations: the proposed `roi` is a region (not the frame), region OCR reads the ID on
//! every frame that showed one, and `check-video` with that `roi` on a recording of the
//! same scenario finds every order with its expected status. A camera with no slip in
//! view yet and a camera that is not there give their own message and exit code. Needs
//! the release binaries and the plugin (scripts/test.sh).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use station_sim::{AtEnd, Plan, Scenario, Simulator, run};

const SCENARIO: &str = r#"
seed = 7
fps = 5

[[stations]]
id = "station_1"
lead_in_s = 1

[[stations.orders]]
id = "4101"
ordered = [{ name = "banana" }, { name = "green apple" }]
slip_s = 5
pause_s = 1
look = { x = 80, y = 60 }

[[stations.orders]]
id = "4102"
ordered = [{ name = "water bottle" }]
slip_s = 5
pause_s = 1
look = { x = 300, y = 90, rotation_deg = 6 }

[[stations.orders]]
id = "4103"
ordered = [{ name = "french fries" }]
slip_s = 5
pause_s = 1
look = { x = 180, y = 140, rotation_deg = -5 }
"#;

fn write_config(dir: &Path, source: &str) -> PathBuf {
    let pipelines = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    let path = dir.join("orchestrator.toml");
    std::fs::write(
        &path,
        format!(
            "orders_file = \"orders.json\"\ninventory_file = \"inventory.json\"\n\
             [[stations]]\nid = \"station_1\"\nsource = \"{source}\"\nidle_timeout_ms = 3000\n\
             [storage]\nbucket = \"frames\"\n\
             [supervision]\npipelines_dir = \"{}\"\nplugin_path = \"{}\"\n",
            pipelines.display(),
            run::release_dir().display()
        ),
    )
    .unwrap();
    path
}

fn orchestrator(args: &[&str]) -> Output {
    let out = Command::new(run::release_dir().join("orchestrator"))
        .args(args)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .expect("orchestrator runs");
    eprintln!(
        "orchestrator {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn fresh_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oa-calibrate-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_roi_is_proposed_from_the_camera_and_reads_every_order() {
    let dir = fresh_dir("e2e");
    let plan = Plan::new(Scenario::from_toml(SCENARIO).unwrap()).unwrap();
    plan.write_files(&dir).unwrap();
    let sim = Simulator::serve(&plan, 0, AtEnd::Hold).unwrap();
    let config = write_config(&dir, &sim.urls()[0].1);
    let annotated = dir.join("calibrate.jpg");
    let out = orchestrator(&[
        "calibrate",
        "--config",
        config.to_str().unwrap(),
        "--station",
        "station_1",
        "--frames",
        "18",
        "--out",
        annotated.to_str().unwrap(),
    ]);
    drop(sim);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // Every order's slip was read, at each of its places.
    let first = text.lines().next().unwrap();
    for id in ["4101", "4102", "4103"] {
        assert!(first.contains(id), "{first}");
    }
    // Region OCR reads the ID on every frame whole-frame OCR read it on.
    let (read_on, _) = first
        .split_once("order ID read on ")
        .unwrap()
        .1
        .split_once(" of ")
        .unwrap();
    let read_on: usize = read_on.parse().unwrap();
    assert!(read_on >= 9, "{first}");
    assert!(
        text.contains(&format!(
            "reads the same ID on {read_on} of those {read_on} frames"
        )),
        "{text}"
    );
    let roi = text
        .lines()
        .find_map(|l| l.strip_prefix("roi = \""))
        .and_then(|r| r.strip_suffix('"'))
        .expect("the TOML line")
        .to_owned();
    let r = oa_contract::Roi::parse(&roi).unwrap();
    assert!(r.fits_in(1280, 720), "{roi}");
    let area = f64::from(r.width) * f64::from(r.height) / (1280.0 * 720.0);
    assert!(area < 0.6, "{roi}: {:.0} % of the frame", area * 100.0);
    let jpeg = std::fs::read(&annotated).unwrap();
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG");

    // The region reads every order of the same scenario in the pipeline, through
    // check-video on its recording.
    let recording = dir.join("station_1.mkv");
    station_sim::record(&plan, 0, &recording).unwrap();
    let out = orchestrator(&[
        "check-video",
        recording.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--roi",
        &roi,
        "--json",
    ]);
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ground_truth.json")).unwrap())
            .unwrap();
    let want = truth["orders"].as_array().unwrap();
    let got = report["orders"].as_array().unwrap();
    assert_eq!(got.len(), want.len(), "{report:#}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g["order_id"], w["order_id"], "{g:#}");
        assert_eq!(g["status"], w["status"], "{g:#}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_slip_in_view_and_no_camera_say_what_to_do() {
    let dir = fresh_dir("none");
    // The first slip comes after a minute: the first frames show an empty table.
    let scenario = SCENARIO.replace("lead_in_s = 1", "lead_in_s = 60");
    let plan = Plan::new(Scenario::from_toml(&scenario).unwrap()).unwrap();
    plan.write_files(&dir).unwrap();
    let sim = Simulator::serve(&plan, 0, AtEnd::Hold).unwrap();
    let config = write_config(&dir, &sim.urls()[0].1);
    let args = |config: &Path| {
        [
            "calibrate".to_owned(),
            "--config".into(),
            config.display().to_string(),
            "--station".into(),
            "station_1".into(),
            "--frames".into(),
            "3".into(),
            "--out".into(),
            dir.join("c.jpg").display().to_string(),
        ]
    };
    let a = args(&config);
    let out = orchestrator(&a.iter().map(String::as_str).collect::<Vec<_>>());
    drop(sim);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no order slip in view on 3 frames") && err.contains("put a slip"),
        "{err}"
    );
    assert!(!dir.join("c.jpg").exists());

    // Nothing listens on port 1.
    let config = write_config(&dir, "rtsp://127.0.0.1:1/station_1");
    let a = args(&config);
    let out = orchestrator(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no frame from rtsp://127.0.0.1:1/station_1"),
        "{err}"
    );
    // An unknown station is a usage error naming the ones there are.
    let out = orchestrator(&[
        "calibrate",
        "--config",
        config.to_str().unwrap(),
        "--station",
        "nope",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("it has station_1"));
    let _ = std::fs::remove_dir_all(&dir);
}
