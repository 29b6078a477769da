//! Supervision with real `gst-launch-1.0` children: restart after kill -9, backoff shape,
//! `failing` after too many failed restarts and recovery without a restart of ours, and
//! no child left behind when the orchestrator binary gets SIGTERM or SIGKILL.
//!
//! Backoff is the production sequence 2,4,8,16,32,60 scaled by a unit (50-100 ms here
//! instead of one second) so the shape is observed in seconds.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchestrator::status::State;
use orchestrator::supervise::{Settings, StationSpec, StorageTarget, Supervisor};
use orchestrator::testing::scratch_dir;

const OK_PIPELINE: &str = "# {station_id}\nvideotestsrc is-live=true ! fakesink\n";
const BROKEN_PIPELINE: &str = "no_such_element_xyz ! fakesink\n";
/// Ends by itself, as a recorded file does: EOS after 15 frames, gst-launch exits 0.
const FINITE_PIPELINE: &str = "# {station_id}\nvideotestsrc num-buffers=15 ! fakesink\n";

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = scratch_dir(&format!("supervise-{tag}"));
        std::fs::write(d.join("ok.pipeline"), OK_PIPELINE).unwrap();
        std::fs::write(d.join("broken.pipeline"), BROKEN_PIPELINE).unwrap();
        std::fs::write(d.join("finite.pipeline"), FINITE_PIPELINE).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn settings(dir: &Path, unit: Duration) -> Settings {
    Settings {
        gst_launch: "gst-launch-1.0".into(),
        pipelines_dir: dir.to_owned(),
        plugin_path: None,
        backoff: Settings::default_backoff(unit),
        stable_after: Duration::from_secs(600),
        max_failed_restarts: 5,
        stall_timeout: Duration::ZERO,
        shutdown_grace: Duration::from_secs(3),
    }
}

fn station(id: &str, pipeline: &str) -> StationSpec {
    StationSpec {
        id: id.into(),
        source: String::new(),
        pipeline: pipeline.into(),
        roi: None,
        idle_timeout_ms: 1000,
        reuse_after_s: 1800,
        plays_once: false,
    }
}

async fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            // State is the field after the parenthesised command name.
            let state = s.rsplit_once(") ").map(|(_, r)| r.chars().next());
            !matches!(state, Some(Some('Z' | 'X')))
        }
        Err(_) => false,
    }
}

/// Live (non-zombie) processes whose `/proc/<pid>/stat` fields after the command name
/// (`f[0]` state, `f[1]` ppid, `f[2]` pgrp) satisfy `pick`.
fn live_processes(pick: impl Fn(&[&str]) -> bool) -> Vec<u32> {
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 2 && !matches!(f[0], "Z" | "X") && pick(&f) {
            out.push(pid);
        }
    }
    out
}

/// Live processes whose process group is `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    let pgid = pgid.to_string();
    live_processes(|f| f[2] == pgid)
}

fn children_of(ppid: u32) -> Vec<u32> {
    let ppid = ppid.to_string();
    live_processes(|f| f[1] == ppid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_is_restarted_after_the_first_backoff_step() {
    let dir = Dir::new("kill9");
    let unit = Duration::from_millis(100);
    let sup = Supervisor::start(
        settings(&dir.0, unit),
        StorageTarget::default(),
        vec![station("s1", "ok.pipeline")],
    )
    .unwrap();
    let pid = wait_for(Duration::from_secs(20), || {
        let s = &sup.statuses()[0];
        (s.state == State::Running).then(|| s.pid.unwrap())
    })
    .await;
    assert_eq!(
        group_members(pid),
        vec![pid],
        "the child leads its own group"
    );
    let killed = Instant::now();
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let new_pid = wait_for(Duration::from_secs(20), || {
        let s = &sup.statuses()[0];
        (s.state == State::Running && s.pid.is_some_and(|p| p != pid)).then(|| s.pid.unwrap())
    })
    .await;
    let took = killed.elapsed();
    let s = &sup.statuses()[0];
    assert_eq!(s.restarts, 1);
    assert_eq!(s.backoff_history_ms, vec![200], "first backoff step");
    assert!(
        took >= unit * 2,
        "restarted after {took:?}, before the backoff"
    );
    assert!(
        s.last_exit.as_deref().unwrap().contains("signal 9"),
        "{:?}",
        s.last_exit
    );
    assert!(alive(new_pid));
    sup.shutdown().await;
    assert!(!alive(new_pid), "child stopped on shutdown");
    assert_eq!(sup.statuses()[0].state, State::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_that_ends_finishes_its_station_and_one_set_to_loop_plays_again() {
    let dir = Dir::new("finite");
    let unit = Duration::from_millis(50);
    let once = StationSpec {
        plays_once: true,
        ..station("once", "finite.pipeline")
    };
    let broken = StationSpec {
        plays_once: true,
        ..station("broken", "broken.pipeline")
    };
    let sup = Supervisor::start(
        settings(&dir.0, unit),
        StorageTarget::default(),
        vec![once, station("looped", "finite.pipeline"), broken],
    )
    .unwrap();
    wait_for(Duration::from_secs(20), || {
        let s = sup.statuses();
        (s[0].state == State::Finished && s[1].restarts >= 2 && s[2].restarts >= 2).then_some(())
    })
    .await;
    // Not replayed: one start, no restart, and still finished a while later.
    tokio::time::sleep(unit * 20).await;
    let s = sup.statuses();
    assert_eq!(s[0].state, State::Finished, "{:?}", s[0]);
    assert_eq!(
        (s[0].restarts, s[0].start_history_unix_ms.len(), s[0].pid),
        (0, 1, None)
    );
    assert_eq!(s[0].last_exit.as_deref(), Some("exit code 0"));
    // `loop = true` plays it again; a file that fails is retried, not finished.
    assert!(
        s[1].restarts >= 2 && s[1].state != State::Finished,
        "{:?}",
        s[1]
    );
    assert!(s[2].state != State::Finished, "{:?}", s[2]);
    assert!(
        s[2].last_exit
            .as_deref()
            .is_some_and(|e| e != "exit code 0"),
        "{:?}",
        s[2].last_exit
    );
    sup.shutdown().await;
    // Shutdown leaves a finished station finished.
    assert_eq!(sup.statuses()[0].state, State::Finished);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pipeline_is_failing_after_five_restarts_keeps_being_retried_and_recovers() {
    let dir = Dir::new("failing");
    let unit = Duration::from_millis(60);
    let sup = Supervisor::start(
        settings(&dir.0, unit),
        StorageTarget::default(),
        vec![
            station("bad", "broken.pipeline"),
            station("good", "ok.pipeline"),
        ],
    )
    .unwrap();
    wait_for(Duration::from_secs(60), || {
        (sup.statuses()[0].state == State::Failing).then_some(())
    })
    .await;
    let bad = sup.statuses()[0].clone();
    assert_eq!(bad.restarts, 6);
    // 2,4,8,16,32 units while backing off, then the last step (60) once failing.
    assert_eq!(bad.backoff_history_ms, vec![120, 240, 480, 960, 1920, 3600]);
    // The observed gaps between starts follow the doubling shape.
    let starts = &bad.start_history_unix_ms;
    assert_eq!(starts.len(), 6, "first start and five restarts");
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, want) in gaps.iter().zip(&bad.backoff_history_ms) {
        assert!(
            *gap >= *want && *gap < *want + 1500,
            "gaps {gaps:?} do not follow {:?}",
            bad.backoff_history_ms
        );
    }
    assert!(gaps.windows(2).all(|w| w[1] > w[0]), "gaps grow: {gaps:?}");
    assert!(bad.last_exit.is_some());
    let good = &sup.statuses()[1];
    assert_eq!(
        good.state,
        State::Running,
        "the other station keeps running"
    );
    assert_eq!(good.restarts, 0);
    // Never given up: it is tried again at the last step, and runs once it can (the
    // pipeline file is read at every start, as a camera that is back would be).
    std::fs::write(dir.0.join("broken.pipeline"), OK_PIPELINE).unwrap();
    wait_for(Duration::from_secs(20), || {
        (sup.statuses()[0].state == State::Running).then_some(())
    })
    .await;
    assert_eq!(sup.statuses()[0].start_history_unix_ms.len(), 7);
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_that_stays_quiet_is_restarted_as_stalled() {
    let dir = Dir::new("stall");
    let mut s = settings(&dir.0, Duration::from_millis(50));
    s.stall_timeout = Duration::from_millis(1500);
    let sup = Supervisor::start(
        s,
        StorageTarget::default(),
        vec![station("q", "ok.pipeline")],
    )
    .unwrap();
    wait_for(Duration::from_secs(30), || {
        (sup.statuses()[0].restarts >= 1).then_some(())
    })
    .await;
    assert_eq!(sup.statuses()[0].last_exit.as_deref(), Some("stalled"));
    sup.shutdown().await;
}

// ---- the orchestrator binary -----------------------------------------------------------

struct Orchestrator {
    child: Child,
    log: Arc<Mutex<String>>,
    _dir: Dir,
}

fn start_orchestrator(tag: &str, stations: usize) -> Orchestrator {
    let dir = Dir::new(tag);
    std::fs::write(
        dir.0.join("orders.json"),
        r#"{"1":[{"name":"apple","quantity":1}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.0.join("inventory.json"),
        r#"{"items":[{"id":"001","name":"apple","aliases":[]}]}"#,
    )
    .unwrap();
    // The orchestrator's configuration for these tests, stations appended below.
    let mut toml = include_str!("fixtures/supervise.toml")
        .replace("@PIPELINES_DIR@", &dir.0.display().to_string());
    for i in 0..stations {
        toml.push_str(&format!(
            "\n[[stations]]\nid = \"st{i}\"\nsource = \"none\"\npipeline = \"ok.pipeline\"\n"
        ));
    }
    let cfg = dir.0.join("orchestrator.toml");
    std::fs::write(&cfg, toml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // The orchestrator's own secret: no pipeline may see it.
        .env("VLM_API_KEY", "not-for-pipelines")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let l2 = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut l = l2.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    Orchestrator {
        child,
        log,
        _dir: dir,
    }
}

impl Orchestrator {
    /// Waits until `n` gst-launch children are PLAYING; returns their PIDs.
    fn wait_children(&mut self, n: usize) -> Vec<u32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let playing = self.log().matches("Setting pipeline to PLAYING").count();
            let kids = children_of(self.child.id());
            if playing >= n && kids.len() >= n {
                return kids;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("orchestrator exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "children not PLAYING; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("orchestrator did not exit; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn assert_groups_gone(groups: &[u32], log: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<u32> = groups.iter().flat_map(|g| group_members(*g)).collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes left in the pipelines' groups: {left:?}; log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_interrupts_every_pipeline_and_leaves_no_process() {
    let mut o = start_orchestrator("sigterm", 2);
    let kids = o.wait_children(2);
    for k in &kids {
        assert_eq!(
            group_members(*k),
            vec![*k],
            "each pipeline leads its own group"
        );
        let environ = std::fs::read(format!("/proc/{k}/environ")).unwrap();
        let vars: Vec<String> = environ
            .split(|b| *b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        assert!(
            vars.iter()
                .any(|v| v == "AWS_SECRET_ACCESS_KEY=test-secret")
        );
        assert!(vars.iter().any(|v| v == "LC_ALL=C"), "{vars:?}");
        assert!(
            !vars.iter().any(|v| v.starts_with("VLM_API_KEY=")),
            "a pipeline got the orchestrator's secret: {vars:?}"
        );
    }
    unsafe { libc::kill(o.child.id() as i32, libc::SIGTERM) };
    let status = o.wait_exit(Duration::from_secs(20));
    let log = o.log();
    assert!(status.success(), "{status}; log:\n{log}");
    // gst-launch -e prints this when SIGINT turns into EOS.
    assert_eq!(
        log.matches("EOS on shutdown enabled").count(),
        2,
        "both pipelines got SIGINT; log:\n{log}"
    );
    assert_eq!(
        log.matches("stopped (exit code 0)").count(),
        2,
        "both pipelines ended cleanly; log:\n{log}"
    );
    assert_groups_gone(&kids, &log);
}

#[test]
fn sigkill_of_the_orchestrator_leaves_no_child() {
    let mut o = start_orchestrator("sigkill", 2);
    let kids = o.wait_children(2);
    unsafe { libc::kill(o.child.id() as i32, libc::SIGKILL) };
    o.wait_exit(Duration::from_secs(5));
    assert_groups_gone(&kids, &o.log());
}

#[test]
fn invalid_config_exits_2_with_one_line_naming_the_field() {
    let dir = Dir::new("badcfg");
    let cfg = dir.0.join("bad.toml");
    std::fs::write(&cfg, "[http]\nbind = \"not an address\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("http.bind") || err.contains("stations"),
        "{err}"
    );
    for cmd in [
        &["--help"][..],
        &["run", "--help"],
        &["check-config", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
            .args(cmd)
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("--config"));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with(&format!("orchestrator {}", env!("CARGO_PKG_VERSION"))),
        "{:?}",
        out.stdout
    );
}
