//! `station-sim`: serves the stations of a scenario as RTSP cameras and writes the ground
//! truth.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use oa_cli::{LogFormat, init_logging};
use station_sim::{AtEnd, Plan, Scenario, Simulator};

/// Simulated packing stations: renders the orders of a scenario (TOML, see
/// station-sim/scenarios/README.md) as H.264 RTSP cameras on 127.0.0.1, one mount per
/// station, and writes what the system should find.
#[derive(Parser)]
#[command(
    version,
    after_help = "Exit codes: 0 success, 1 runtime failure, 2 invalid usage or scenario."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// Log lines on stderr as text or JSON; RUST_LOG sets the levels [default level: info]
    #[arg(long, global = true, value_name = "FORMAT", default_value = "text")]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write the files, then serve the stations until every stream has ended
    ///
    /// Writes DIR/orders.json, DIR/inventory.json, DIR/ground_truth.json, prints one line
    /// `station ID URL` per station and a line starting `serving`, serves until every
    /// stream has ended (the scenario of a station starts when its first client
    /// connects), then exits 0.
    Serve {
        #[command(flatten)]
        files: Files,
        /// RTSP port; 0 picks a free one
        #[arg(long, value_name = "N", default_value_t = 8554)]
        port: u16,
        /// Start each scenario over instead of ending (runs until killed)
        #[arg(long = "loop", conflicts_with = "hold")]
        repeat: bool,
        /// Show the empty table after the scenario instead of ending (until killed)
        #[arg(long)]
        hold: bool,
    },
    /// Write the files and render each station's scene into DIR/<station>.mkv
    ///
    /// H.264 in Matroska, the scene the RTSP camera would show, rendered as fast as the
    /// machine goes: a recording for `orchestrator check-video`.
    Record {
        #[command(flatten)]
        files: Files,
    },
    /// Only write orders.json, inventory.json and ground_truth.json
    Plan {
        #[command(flatten)]
        files: Files,
    },
    /// Run the scenario end to end and score it against the ground truth
    ///
    /// Runs on real parts (an S3 server on 127.0.0.1, these RTSP stations, the
    /// orchestrator binary next to this one with the labels recogniser) and prints order
    /// segmentation precision and recall (found, split, merged, missed), frame attribution
    /// accuracy, validation accuracy and latency percentiles from order end to result.
    Evaluate {
        /// Scenario file
        #[arg(long, value_name = "FILE")]
        scenario: PathBuf,
    },
    /// Run fault scenarios on real parts and print the fault table
    ///
    /// Each scenario runs one station with three orders on an S3 server on 127.0.0.1, the
    /// orchestrator binary next to this one and its pipeline, injects its fault (a
    /// pipeline or orchestrator SIGKILLed, the store or the camera gone, the VLM double
    /// answering 503) and counts, from the bucket, the orders with a result, lost,
    /// duplicated and the stored frames no manifest lists. Exits 1 when a row is not
    /// 0 lost, 0 duplicated, 0 frames left out with the station running again.
    Chaos {
        /// Only these scenarios (repeatable); default: all
        #[arg(long, value_name = "NAME")]
        fault: Vec<station_sim::chaos::Fault>,
        /// Short outages (20 s) instead of the full ones (S3 180 s, camera and VLM 120 s)
        #[arg(long)]
        quick: bool,
    },
}

#[derive(clap::Args)]
struct Files {
    /// Scenario file
    #[arg(long, value_name = "FILE")]
    scenario: PathBuf,
    /// Folder for orders.json, inventory.json, ground_truth.json
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Why the program stops early: (exit code, message).
type Failure = (u8, String);

fn load(scenario: &Path) -> Result<Plan, Failure> {
    Scenario::load(scenario)
        .and_then(Plan::new)
        .map_err(|e| (2, e))
}

fn evaluate(scenario: &Path) -> Result<(), Failure> {
    load(scenario)?;
    let orchestrator = station_sim::run::release_dir().join("orchestrator");
    if !orchestrator.is_file() {
        let missing = orchestrator.display();
        return Err((
            1,
            format!("{missing} is missing: run `cargo build --release`"),
        ));
    }
    let out = station_sim::run::run(scenario, "evaluate");
    println!("{}", out.table());
    println!(
        "{}",
        station_sim::Attribution::new(&out.truth, &out.frames, &out.stream_starts)
    );
    println!("{}", out.evaluate());
    println!("ran in {:.0} s", out.seconds);
    Ok(())
}

fn chaos(faults: &[station_sim::chaos::Fault], quick: bool) -> Result<(), Failure> {
    use station_sim::chaos::{Durations, Fault, run_fault_retrying, table};
    let durations = if quick {
        Durations::QUICK
    } else {
        Durations::FULL
    };
    let faults = if faults.is_empty() {
        &Fault::ALL[..]
    } else {
        faults
    };
    let mut rows = Vec::new();
    for (i, f) in faults.iter().enumerate() {
        tracing::info!("scenario {} of {}: {}", i + 1, faults.len(), f.name());
        let row = run_fault_retrying(*f, &durations);
        for n in &row.notes {
            tracing::warn!("{}: {n}", f.name());
        }
        tracing::info!(
            "{}",
            table(std::slice::from_ref(&row))
                .lines()
                .last()
                .unwrap_or("")
        );
        rows.push(row);
    }
    println!("{}", table(&rows));
    if rows.iter().all(|r| r.passed()) {
        Ok(())
    } else {
        Err((
            1,
            "a fault scenario lost, duplicated or left out something".into(),
        ))
    }
}

fn write_files(files: &Files) -> Result<Plan, Failure> {
    let plan = load(&files.scenario)?;
    plan.write_files(&files.out)
        .map_err(|e| (1, format!("cannot write into {}: {e}", files.out.display())))?;
    Ok(plan)
}

fn serve(plan: &Plan, port: u16, at_end: AtEnd) -> Result<(), Failure> {
    let sim = Simulator::serve(plan, port, at_end).map_err(|e| (1, e))?;
    // scripts/demo.sh reads these lines from stdout and waits for `^serving`.
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
    Ok(())
}

fn run(command: Cmd) -> Result<(), Failure> {
    match command {
        Cmd::Evaluate { scenario } => evaluate(&scenario),
        Cmd::Chaos { fault, quick } => chaos(&fault, quick),
        Cmd::Record { files } => {
            let plan = write_files(&files)?;
            for (i, st) in plan.stations.iter().enumerate() {
                let path = files.out.join(format!("{}.mkv", st.station_id));
                station_sim::record(&plan, i, &path).map_err(|e| (1, e))?;
                println!(
                    "station {} {} ({:.0} s)",
                    st.station_id,
                    path.display(),
                    st.duration_s
                );
            }
            Ok(())
        }
        Cmd::Plan { files } => {
            write_files(&files)?;
            println!(
                "wrote orders.json, inventory.json, ground_truth.json into {}",
                files.out.display()
            );
            Ok(())
        }
        Cmd::Serve {
            files,
            port,
            repeat,
            hold,
        } => {
            let at_end = match (repeat, hold) {
                (true, _) => AtEnd::Loop,
                (_, true) => AtEnd::Hold,
                _ => AtEnd::Eos,
            };
            serve(&write_files(&files)?, port, at_end)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, "info");
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, e)) => {
            tracing::error!("{e}");
            ExitCode::from(code)
        }
    }
}
