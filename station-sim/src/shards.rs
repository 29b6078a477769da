//! Scaled out on one machine: 12 simulated stations over loopback RTSP, three
//! `orchestrator run --role stations --shard K/3` replicas running their pipelines and two
//! `--role consumer` replicas processing every station's orders, all sharing one S3 server.
//! While the orders play, the consumer holding a claim is SIGKILLed (and started again, as
//! a Deployment would) and a station replica is SIGKILLed and started again under the
//! same shard (as a StatefulSet does). Scored from the bucket and the processes: how many
//! pipelines each station had, orders lost and results written twice.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use oa_s3server::S3Server;

use crate::chaos::{
    SetUp, count_correct, frames_left_out, free_port, pipelines_of, result_writes, set_up, sigkill,
    stations_at,
};
use crate::run::{
    BUCKET, Orchestrator, Tweaks, config_toml, interrupt, read_markers, read_results,
};
use crate::{AtEnd, Scenario, Simulator};

pub const STATIONS: usize = 12;
pub const STATION_REPLICAS: u32 = 3;
pub const CONSUMERS: usize = 2;

/// The slip sits where [`ROI`] reads it: pipelines OCR that region only (as production
/// stations do), so that 12 of them fit on two cores.
const ROI: &str = "40,30,760,170";

/// What the run saw.
#[derive(Debug, Default)]
pub struct ShardsOutcome {
    /// Stations each station replica reported in `/api/stations`, by shard.
    pub stations_by_shard: BTreeMap<u32, Vec<String>>,
    /// `gst-launch-1.0` children of each station replica, by shard (before the kill).
    pub pipelines_by_shard: BTreeMap<u32, usize>,
    /// The same after the killed replica came back.
    pub pipelines_after_restart: BTreeMap<u32, usize>,
    /// Stations reported by more than one replica (at any check).
    pub doubly_run: Vec<String>,
    /// Stations no replica reported (at any check).
    pub unrun: Vec<String>,
    pub expected: usize,
    pub results: usize,
    pub correct: usize,
    pub lost: Vec<(String, String)>,
    /// Result writes beyond one per revision, plus results of orders never shown.
    pub duplicated: usize,
    pub revised: usize,
    pub frames_stored: usize,
    pub frames_left_out: usize,
    /// The consumer killed while it held `claim` (`None`: no claim was seen held).
    pub consumer_killed: Option<(String, String)>,
    /// The shard whose replica was killed and started again, and its stations.
    pub replica_killed: Option<(u32, Vec<String>)>,
    /// When (seconds into the scene) and during which order (with its slip's span).
    pub replica_killed_during: Option<(f64, String, f64, f64)>,
    pub seconds: f64,
    pub notes: Vec<String>,
}

impl ShardsOutcome {
    pub fn table(&self) -> String {
        let mut s = format!(
            "{STATIONS} stations, {STATION_REPLICAS} station replicas, {CONSUMERS} consumers, {:.0} s\n",
            self.seconds
        );
        for (k, ids) in &self.stations_by_shard {
            s.push_str(&format!(
                "  shard {k}/{STATION_REPLICAS}: {} station(s), pipelines {} -> {} after the restart: {}\n",
                ids.len(),
                self.pipelines_by_shard.get(k).copied().unwrap_or(0),
                self.pipelines_after_restart.get(k).copied().unwrap_or(0),
                ids.join(", ")
            ));
        }
        s.push_str(&format!(
            "  consumer killed holding the claim of {:?}; station replica killed and restarted: {:?}\n",
            self.consumer_killed, self.replica_killed
        ));
        if let Some((t, o, a, b)) = &self.replica_killed_during {
            s.push_str(&format!(
                "  the replica was killed {t:.1} s into the scene, while order {o} showed ({a:.0}-{b:.0} s)\n"
            ));
        }
        s.push_str(&format!(
            "  orders {} results {} correct {} lost {} duplicated {} revised {}; frames {} stored, {} in no manifest\n",
            self.expected,
            self.results,
            self.correct,
            self.lost.len(),
            self.duplicated,
            self.revised,
            self.frames_stored,
            self.frames_left_out
        ));
        for n in &self.notes {
            s.push_str(&format!("  note: {n}\n"));
        }
        s
    }
}

/// Twelve stations, three orders each (all in `orders.json`), the slip where [`ROI`] is.
fn scenario() -> Scenario {
    let items = [
        r#"[{ name = "banana" }, { name = "green apple" }]"#,
        r#"[{ name = "water bottle" }, { name = "cheeseburger" }]"#,
        r#"[{ name = "french fries" }]"#,
    ];
    let mut toml = String::from("seed = 12\nfps = 2\n\n[look]\nx = 80\ny = 60\nfont_size = 32\n");
    for st in 1..=STATIONS {
        toml.push_str(&format!(
            "\n[[stations]]\nid = \"station_{st}\"\nlead_in_s = 3\n"
        ));
        for (i, ordered) in items.iter().enumerate() {
            // Long enough that a replica killed mid-order is back while the slip shows.
            let slip_s = if i == 1 { 16 } else { 8 };
            toml.push_str(&format!(
                "\n[[stations.orders]]\nid = \"{}\"\nordered = {ordered}\nslip_s = {slip_s}\npause_s = 4\n",
                st * 100 + i
            ));
        }
    }
    Scenario::from_toml(&toml).expect("the shards scenario parses")
}

struct Replica {
    proc: Orchestrator,
    port: u16,
    name: String,
    env: Vec<(String, String)>,
    cfg: std::path::PathBuf,
}

impl Replica {
    fn spawn(
        dir: &std::path::Path,
        name: &str,
        env: Vec<(String, String)>,
        toml: String,
        port: u16,
    ) -> Replica {
        let cfg = dir.join(format!("{name}.toml"));
        std::fs::write(&cfg, toml).unwrap();
        let log = dir.join(format!("{name}.log"));
        let e: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let proc = Orchestrator::spawn(&cfg, &log, &e);
        Replica {
            proc,
            port,
            name: name.into(),
            env,
            cfg,
        }
    }

    fn respawn(&mut self) {
        let log = self.proc.log.clone();
        let e: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.proc = Orchestrator::spawn(&self.cfg, &log, &e);
    }

    fn kill(&mut self) {
        sigkill(self.proc.child.id() as i32);
        let _ = self.proc.child.wait();
    }
}

/// `(station, order, owner)` of every claim in the bucket.
fn claims(bucket: &std::path::Path) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for st in std::fs::read_dir(bucket.join("claims"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for o in std::fs::read_dir(st.path()).into_iter().flatten().flatten() {
            let owner = std::fs::read(o.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["owner"].as_str().map(String::from));
            if let Some(owner) = owner {
                out.push((
                    st.file_name().to_string_lossy().into_owned(),
                    o.file_name().to_string_lossy().into_owned(),
                    owner,
                ));
            }
        }
    }
    out
}

/// Whether `pid` runs (a zombie waiting for its new parent to reap it does not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st != "Z"))
            .unwrap_or(false)
    })
}

fn wait_for(deadline: Instant, mut f: impl FnMut() -> bool) -> bool {
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Which replica reports which station running, by shard; `None` until every replica
/// answers and every station it reports is running.
fn running_by_shard(replicas: &[Replica]) -> Option<BTreeMap<u32, Vec<String>>> {
    let mut out = BTreeMap::new();
    for (k, r) in replicas.iter().enumerate() {
        let list = stations_at(r.port)?;
        if list.iter().any(|(_, state)| state != "running") {
            return None;
        }
        out.insert(k as u32, list.into_iter().map(|(id, _)| id).collect());
    }
    Some(out)
}

/// [`running_by_shard`] once the replicas report every station running.
fn wait_all_running(replicas: &[Replica], deadline: Instant) -> Option<BTreeMap<u32, Vec<String>>> {
    let mut found = None;
    wait_for(deadline, || {
        found = running_by_shard(replicas)
            .filter(|m| m.values().map(Vec::len).sum::<usize>() >= STATIONS);
        found.is_some()
    });
    found
}

/// Stations run twice and stations not run at all.
fn coverage(by_shard: &BTreeMap<u32, Vec<String>>, all: &[String]) -> (Vec<String>, Vec<String>) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for id in by_shard.values().flatten() {
        *seen.entry(id.as_str()).or_default() += 1;
    }
    let twice = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id.to_string())
        .collect();
    let none = all
        .iter()
        .filter(|id| !seen.contains_key(id.as_str()))
        .cloned()
        .collect();
    (twice, none)
}

/// Runs the scenario and scores it.
pub fn run_shards() -> ShardsOutcome {
    let started = Instant::now();
    let mut out = ShardsOutcome::default();
    let SetUp {
        dir,
        plan,
        truth,
        rt,
        s3,
    } = set_up("shards", scenario());
    let bucket = dir.0.join("s3").join(BUCKET);
    let sim = Simulator::serve(&plan, 0, AtEnd::Hold).unwrap();
    let all: Vec<String> = sim.urls().iter().map(|(id, _)| id.clone()).collect();
    let last_end = truth.orders.iter().map(|o| o.end_s).fold(0.0, f64::max);
    let deadline = Instant::now() + Duration::from_secs_f64(last_end + 240.0);

    let base = Tweaks {
        // Claims of a dead consumer taken over after 10 s; orphans after 8 s.
        processing: "orphan_grace_s = 8\nclaim_ttl_s = 10\n".into(),
        roi: Some(ROI.into()),
        ..Tweaks::default()
    };
    let toml = |port| config_toml(&s3.endpoint(), port, sim.urls(), &base);
    let replica = |name: String, mut env: Vec<(String, String)>| {
        let port = free_port();
        env.push(("OA_INSTANCE_ID".into(), name.clone()));
        Replica::spawn(&dir.0, &name, env, toml(port), port)
    };
    let mut stations: Vec<Replica> = (0..STATION_REPLICAS)
        .map(|k| {
            let name = format!("stations-{k}");
            // As in the StatefulSet: the shard from the pod name's ordinal.
            let env = vec![
                ("OA_ROLE".into(), "stations".into()),
                ("OA_SHARD".into(), format!("ordinal/{STATION_REPLICAS}")),
                ("HOSTNAME".into(), name.clone()),
            ];
            replica(name, env)
        })
        .collect();
    let mut consumers: Vec<Replica> = (0..CONSUMERS)
        .map(|i| {
            replica(
                format!("consumer-{i}"),
                vec![("OA_ROLE".into(), "consumer".into())],
            )
        })
        .collect();

    let Some(by_shard) = wait_all_running(&stations, deadline) else {
        out.notes
            .push("the station replicas never had every pipeline running".into());
        return finish(out, stations, consumers, &rt, s3, started);
    };
    let (twice, none) = coverage(&by_shard, &all);
    out.doubly_run.extend(twice);
    out.unrun.extend(none);
    for (k, r) in stations.iter().enumerate() {
        out.pipelines_by_shard
            .insert(k as u32, pipelines_of(r.proc.child.id()).len());
    }
    out.stations_by_shard = by_shard.clone();

    // A consumer SIGKILLed while it holds a claim, then started again after 3 s.
    let results = || read_results(&bucket);
    let mut held = None;
    wait_for(deadline, || {
        let done = results();
        held = claims(&bucket)
            .into_iter()
            .find(|(st, o, _)| !done.contains_key(&(st.clone(), o.clone())));
        held.is_some()
    });
    if let Some((st, o, owner)) = held {
        if let Some(c) = consumers.iter_mut().find(|c| c.name == owner) {
            c.kill();
            out.consumer_killed = Some((st, o));
            std::thread::sleep(Duration::from_secs(3));
            c.respawn();
        } else {
            out.notes
                .push(format!("claim {st}/{o} held by unknown owner {owner}"));
        }
    }

    // The station replica with the most stations SIGKILLed in the middle of the long
    // order, then started again under the same ordinal.
    let victim = by_shard
        .iter()
        .max_by_key(|(_, ids)| ids.len())
        .map(|(k, ids)| (*k, ids.clone()))
        .unwrap();
    let long = truth
        .orders
        .iter()
        .find(|o| o.station_id == victim.1[0] && o.order_id.ends_with('1'))
        .expect("the victim's station has a long order");
    let station_index = all.iter().position(|id| *id == victim.1[0]).unwrap();
    let t0 = sim.stream_starts()[station_index];
    if let Some(t0) = t0 {
        let at = t0 + ((long.start_s + 6.0) * 1000.0) as u64;
        while crate::unix_ms() < at && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        out.replica_killed_during = Some((
            (crate::unix_ms() - t0) as f64 / 1000.0,
            long.order_id.clone(),
            long.start_s,
            long.end_s,
        ));
    }
    let r = &mut stations[victim.0 as usize];
    let pids = pipelines_of(r.proc.child.id());
    r.kill();
    // The pipelines die with it (parent-death signal); none may be left running.
    std::thread::sleep(Duration::from_millis(500));
    let orphans: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    if !orphans.is_empty() {
        out.notes
            .push(format!("pipelines outlived their replica: {orphans:?}"));
        orphans.into_iter().for_each(sigkill);
    }
    std::thread::sleep(Duration::from_secs(2));
    r.respawn();
    out.replica_killed = Some(victim);
    match wait_all_running(&stations, deadline) {
        Some(m) => {
            let (twice, none) = coverage(&m, &all);
            out.doubly_run.extend(twice);
            out.unrun.extend(none);
            if m != out.stations_by_shard {
                out.notes
                    .push(format!("stations moved between shards: {m:?}"));
            }
        }
        None => out
            .notes
            .push("the restarted replica never had its pipelines running".into()),
    }
    for (k, r) in stations.iter().enumerate() {
        out.pipelines_after_restart
            .insert(k as u32, pipelines_of(r.proc.child.id()).len());
    }

    // Every order gets its result, or the time is up; late duplicates get 4 s to show.
    let keys: Vec<(String, String)> = truth
        .orders
        .iter()
        .map(|o| (o.station_id.clone(), o.order_id.clone()))
        .collect();
    wait_for(deadline, || {
        let r = results();
        keys.iter().all(|k| r.contains_key(k))
    });
    std::thread::sleep(Duration::from_secs(4));

    let results = results();
    let markers = read_markers(&bucket);
    out.expected = keys.len();
    out.results = keys.iter().filter(|k| results.contains_key(*k)).count();
    out.lost = keys
        .iter()
        .filter(|k| !results.contains_key(*k))
        .cloned()
        .collect();
    out.correct = count_correct(&truth.orders, &results);
    let shown: BTreeSet<&(String, String)> = keys.iter().collect();
    let w = result_writes(&s3.put_log(), &results);
    if w.rewrites > 0 {
        out.notes.push(format!("result writes: {:?}", w.writes));
    }
    out.duplicated = w.rewrites + results.keys().filter(|k| !shown.contains(k)).count();
    out.revised = w.revised;
    (out.frames_stored, out.frames_left_out) = frames_left_out(&bucket, &markers);
    finish(out, stations, consumers, &rt, s3, started)
}

fn finish(
    mut out: ShardsOutcome,
    mut stations: Vec<Replica>,
    mut consumers: Vec<Replica>,
    rt: &tokio::runtime::Runtime,
    s3: S3Server,
    started: Instant,
) -> ShardsOutcome {
    let failed = !out.lost.is_empty()
        || out.duplicated > 0
        || !out.doubly_run.is_empty()
        || !out.unrun.is_empty()
        || !out.notes.is_empty();
    for r in stations.iter().chain(consumers.iter()) {
        interrupt(&r.proc.child);
    }
    let stop = Instant::now() + Duration::from_secs(20);
    for r in stations.iter_mut().chain(consumers.iter_mut()) {
        while r.proc.child.try_wait().ok().flatten().is_none() && Instant::now() < stop {
            std::thread::sleep(Duration::from_millis(100));
        }
        if failed {
            out.notes
                .push(format!("{} log tail:\n{}", r.name, r.proc.log_tail()));
        }
    }
    rt.block_on(s3.shutdown());
    out.seconds = started.elapsed().as_secs_f64();
    out
}
