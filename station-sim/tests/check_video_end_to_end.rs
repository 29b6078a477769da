//! `orchestrator check-video` on recordings of `scenarios/demo.toml` (H.264 in Matroska,
//! rendered by `station-sim record`): every order with its expected status and
//! differences, in a fraction of the recording's length, with region OCR and with
//! whole-frame OCR; a corrupt file, a file with no slip and a missing file give their own
//! message and exit code. Needs the release binaries and the plugin (scripts/test.sh).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use station_sim::{Plan, Scenario, run};

/// Where the demo's slip is printed (as the shards scenario reads it).
const ROI: &str = "40,30,760,170";

fn check_video(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(run::release_dir().join("orchestrator"))
        .arg("check-video")
        .args(args)
        .arg("--config")
        .arg(dir.join("orchestrator.toml"))
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .expect("orchestrator runs");
    eprintln!(
        "check-video {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|i| format!("{} x{}", i["name"].as_str().unwrap(), i["quantity"]))
        .collect()
}

#[test]
fn a_recording_is_checked_once_faster_than_real_time_with_every_order_as_expected() {
    let dir = std::env::temp_dir().join(format!("oa-check-video-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let plan = Plan::new(Scenario::load(&run::scenario_path("demo.toml")).unwrap()).unwrap();
    plan.write_files(&dir).unwrap();
    for (i, st) in plan.stations.iter().enumerate() {
        station_sim::record(&plan, i, &dir.join(format!("{}.mkv", st.station_id))).unwrap();
    }
    let pipelines = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    std::fs::write(
        dir.join("orchestrator.toml"),
        format!(
            "orders_file = \"orders.json\"\ninventory_file = \"inventory.json\"\n\
             [[stations]]\nid = \"station_1\"\nsource = \"rtsp://127.0.0.1:1/station_1\"\nroi = \"{ROI}\"\n\
             [[stations]]\nid = \"station_2\"\nsource = \"rtsp://127.0.0.1:1/station_2\"\n\
             [storage]\nbucket = \"frames\"\n\
             [supervision]\npipelines_dir = \"{}\"\nplugin_path = \"{}\"\n\
             [processing]\nframes_per_order = 4\n",
            pipelines.display(),
            run::release_dir().display()
        ),
    )
    .unwrap();
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ground_truth.json")).unwrap())
            .unwrap();
    let expected = |station: &str| -> Vec<&Value> {
        truth["orders"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["station_id"] == station)
            .collect()
    };

    // Region OCR, --json, the frames kept.
    let kept = dir.join("kept");
    let out = check_video(
        &dir,
        &[
            dir.join("station_1.mkv").to_str().unwrap(),
            "--json",
            "--keep",
            kept.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let want = expected("station_1");
    let got = report["orders"].as_array().unwrap();
    assert_eq!(got.len(), want.len(), "{report:#}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g["order_id"], w["order_id"], "{g:#}");
        assert_eq!(g["status"], w["status"], "{g:#}");
        assert_eq!(names(&g["missing"]), names(&w["missing"]), "{g:#}");
        assert_eq!(names(&g["extra"]), names(&w["extra"]), "{g:#}");
    }
    let video_s = report["video_s"].as_f64().unwrap();
    let checked_s = report["checked_s"].as_f64().unwrap();
    let duration = plan.stations[0].duration_s;
    assert!(
        (video_s - duration).abs() <= 2.0,
        "{video_s} s read of {duration} s"
    );
    assert!(checked_s < duration / 3.0, "checked in {checked_s} s");
    eprintln!("region OCR: {} x real time", report["speedup"]);
    // The results stay with the frames in the kept folder.
    for w in &want {
        let result = kept.join(format!(
            "frames/results/station_1/{}.json",
            w["order_id"].as_str().unwrap()
        ));
        assert!(result.is_file(), "{}", result.display());
    }

    // Whole-frame OCR of the second station, as lines.
    let out = check_video(
        &dir,
        &[
            dir.join("station_2.mkv").to_str().unwrap(),
            "--station",
            "station_2",
            "--roi",
            "full",
        ],
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let want = expected("station_2");
    assert_eq!(lines.len(), want.len() + 1, "{text}");
    for (line, w) in lines.iter().zip(&want) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[1], w["order_id"].as_str().unwrap(), "{line}");
        assert_eq!(words[4], w["status"].as_str().unwrap(), "{line}");
    }
    let summary = lines.last().unwrap();
    assert!(
        summary.starts_with(&format!("{} order(s) in", want.len()))
            && summary.contains("x real time"),
        "{summary}"
    );

    // A file that is no video: exit 1, saying it could not be played.
    std::fs::write(dir.join("corrupt.mkv"), vec![0x5a; 64 << 10]).unwrap();
    let out = check_video(&dir, &[dir.join("corrupt.mkv").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("could not be played"), "{err}");
    // No slip in view: exit 3, saying what to check.
    let blank = dir.join("blank.mkv");
    station_sim::record_blank(&blank, 640, 360, 10).unwrap();
    let out = check_video(&dir, &[blank.to_str().unwrap(), "--roi", "full"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no order slip was read") && err.contains("roi"),
        "{err}"
    );
    // No such file: exit 1 naming it.
    let out = check_video(&dir, &["/nonexistent/recording.mkv"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/recording.mkv: no such file")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
