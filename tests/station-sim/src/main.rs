//! `station-sim`: serves the stations of a scenario as RTSP cameras and writes the ground
//! truth.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use station_sim::{AtEnd, Plan, Scenario, Simulator};

const USAGE: &str = "\
station-sim: simulated packing stations. Renders the orders of a scenario (TOML, see
tests/station-sim/scenarios/README.md) as H.264 RTSP cameras on 127.0.0.1, one mount per
station, and writes what the system should find.

Usage:
  station-sim serve --scenario FILE --out DIR [--port N] [--loop | --hold]
  station-sim plan  --scenario FILE --out DIR
  station-sim evaluate --scenario FILE
  station-sim --help

serve   writes DIR/orders.json, DIR/inventory.json, DIR/ground_truth.json, prints one line
        `station ID URL` per station, serves until every stream has ended (the scenario of a
        station starts when its first client connects), then exits 0.
plan    only writes the three files.
evaluate  runs the scenario end to end on real parts (an S3 server on 127.0.0.1, these
        RTSP stations, the orchestrator binary next to this one with the labels
        recogniser) and prints, against the ground truth, order segmentation precision and
        recall (found, split, merged, missed), frame attribution accuracy, validation
        accuracy and latency percentiles from order end to result.

Options:
  --scenario FILE  scenario file
  --out DIR        folder for orders.json, inventory.json, ground_truth.json
  --port N         RTSP port (default 8554; 0 picks a free one)
  --loop           start each scenario over instead of ending (runs until killed)
  --hold           show the empty table after the scenario instead of ending (until killed)

Exit codes: 0 success, 1 runtime failure, 2 invalid usage or scenario.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    if matches!(cmd.as_str(), "-h" | "--help" | "help") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if cmd != "serve" && cmd != "plan" && cmd != "evaluate" {
        eprintln!("station-sim: unknown command {cmd:?}\n\n{USAGE}");
        return ExitCode::from(2);
    }
    let (mut scenario, mut out, mut port, mut at_end) = (None, None, 8554u16, AtEnd::Eos);
    let mut rest = args[1..].iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--scenario" => scenario = rest.next().map(PathBuf::from),
            "--out" => out = rest.next().map(PathBuf::from),
            "--port" => match rest.next().and_then(|p| p.parse().ok()) {
                Some(p) => port = p,
                None => {
                    eprintln!("station-sim: --port needs a number");
                    return ExitCode::from(2);
                }
            },
            "--loop" => at_end = AtEnd::Loop,
            "--hold" => at_end = AtEnd::Hold,
            other => {
                eprintln!("station-sim: unexpected argument {other:?}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    if cmd == "evaluate" {
        let Some(scenario) = scenario else {
            eprintln!("station-sim: --scenario FILE is required\n\n{USAGE}");
            return ExitCode::from(2);
        };
        if let Err(e) = Scenario::load(&scenario).and_then(Plan::new) {
            eprintln!("station-sim: {e}");
            return ExitCode::from(2);
        }
        let dir = station_sim::run::release_dir();
        if !dir.join("orchestrator").is_file() {
            eprintln!(
                "station-sim: {} is missing: run `cargo build --release`",
                dir.join("orchestrator").display()
            );
            return ExitCode::from(1);
        }
        let out = station_sim::run::run(&scenario, "evaluate");
        println!("{}", out.table());
        println!("{}", out.evaluate());
        println!("ran in {:.0} s", out.seconds);
        return ExitCode::SUCCESS;
    }
    let (Some(scenario), Some(out)) = (scenario, out) else {
        eprintln!("station-sim: --scenario FILE and --out DIR are required\n\n{USAGE}");
        return ExitCode::from(2);
    };
    let plan = match Scenario::load(&scenario).and_then(Plan::new) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("station-sim: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = plan.write_files(&out) {
        eprintln!("station-sim: cannot write into {}: {e}", out.display());
        return ExitCode::from(1);
    }
    if cmd == "plan" {
        println!(
            "wrote orders.json, inventory.json, ground_truth.json into {}",
            out.display()
        );
        return ExitCode::SUCCESS;
    }
    let sim = match Simulator::serve(&plan, port, at_end) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("station-sim: {e}");
            return ExitCode::from(1);
        }
    };
    for (id, url) in sim.urls() {
        println!("station {id} {url}");
    }
    let longest = plan
        .stations
        .iter()
        .map(|s| s.duration_s)
        .fold(0.0, f64::max);
    println!("serving; each scenario lasts up to {longest:.0} s from its first client");
    while !sim.all_ended() || at_end != AtEnd::Eos {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let the clients receive the end of the streams.
    std::thread::sleep(Duration::from_secs(2));
    println!("scenario ended");
    ExitCode::SUCCESS
}
