//! `orchestrator run --config FILE` and `orchestrator check-config --config FILE`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use orchestrator::config::Config;
use orchestrator::consume::{self, Consumer};
use orchestrator::http::{self, AppState};
use orchestrator::metrics::{Metrics, log};
use orchestrator::orders::{Inventory, Orders};
use orchestrator::store::{Layout, Store};
use orchestrator::supervise::{self, StationSpec, StorageTarget, Supervisor};

const USAGE: &str = "\
orchestrator: supervises the station pipelines, consumes completed orders, recognises and
validates them, and publishes results, metrics and an HTTP API.

Usage:
  orchestrator run --config FILE           start everything (stops on SIGINT/SIGTERM)
  orchestrator check-config --config FILE  check the configuration and exit
  orchestrator <command> --help            help on one command

Exit codes: 0 success, 1 runtime failure, 2 invalid usage or configuration.
";

const RUN_HELP: &str = "\
orchestrator run --config FILE

Starts one gst-launch-1.0 pipeline per station, discovers completed orders in the bucket,
recognises and validates them, writes results/{station}/{order}.json and serves the HTTP
API (/healthz, /readyz, /metrics, /api/stations, /api/orders...). S3 credentials come from the
standard AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE...).
SIGINT or SIGTERM stops it: each pipeline gets SIGINT (its open order is flushed), and
SIGKILL after supervision.shutdown_grace_s.

Options:
  --config FILE   configuration file (TOML)
  -h, --help      this help
";

const CHECK_HELP: &str = "\
orchestrator check-config --config FILE

Loads the configuration, the orders and inventory files, and renders every station's
pipeline; prints one line naming the field on the first problem (exit code 2).

Options:
  --config FILE   configuration file (TOML)
  -h, --help      this help
";

enum Command {
    Run(PathBuf),
    Check(PathBuf),
}

fn parse_args(args: &[String]) -> Result<Command, ExitCode> {
    let Some(cmd) = args.first() else {
        eprint!("{USAGE}");
        return Err(ExitCode::from(2));
    };
    let help = match cmd.as_str() {
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            return Err(ExitCode::SUCCESS);
        }
        "run" => RUN_HELP,
        "check-config" => CHECK_HELP,
        other => {
            eprintln!("orchestrator: unknown command {other:?}\n\n{USAGE}");
            return Err(ExitCode::from(2));
        }
    };
    let mut config = None;
    let mut rest = args[1..].iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{help}");
                return Err(ExitCode::SUCCESS);
            }
            "--config" => match rest.next() {
                Some(v) => config = Some(PathBuf::from(v)),
                None => {
                    eprintln!("orchestrator: --config needs a FILE\n\n{help}");
                    return Err(ExitCode::from(2));
                }
            },
            s if s.starts_with("--config=") => config = Some(PathBuf::from(&s[9..])),
            other => {
                eprintln!("orchestrator: unexpected argument {other:?}\n\n{help}");
                return Err(ExitCode::from(2));
            }
        }
    }
    let Some(config) = config else {
        eprintln!("orchestrator: --config FILE is required\n\n{help}");
        return Err(ExitCode::from(2));
    };
    Ok(if cmd == "run" {
        Command::Run(config)
    } else {
        Command::Check(config)
    })
}

/// Everything loaded and checked before anything starts.
struct Loaded {
    config: Config,
    orders: Orders,
    inventory: Inventory,
    detector: Option<Arc<orchestrator::detector::Detector>>,
}

fn supervise_settings(c: &Config) -> supervise::Settings {
    let s = &c.supervision;
    supervise::Settings {
        gst_launch: s.gst_launch.clone(),
        pipelines_dir: s.pipelines_dir.clone(),
        plugin_path: s.plugin_path.clone(),
        backoff: s
            .backoff_s
            .iter()
            .map(|n| Duration::from_secs(*n))
            .collect(),
        stable_after: Duration::from_secs(s.stable_after_s),
        max_failed_restarts: s.max_failed_restarts,
        stall_timeout: Duration::from_secs(s.stall_timeout_s),
        shutdown_grace: Duration::from_secs(s.shutdown_grace_s),
    }
}

fn storage_target(c: &Config) -> StorageTarget {
    StorageTarget {
        endpoint: c.storage.endpoint.clone().unwrap_or_default(),
        bucket: c.storage.bucket.clone(),
        prefix: c.storage.prefix.clone(),
    }
}

fn station_specs(c: &Config) -> Vec<StationSpec> {
    c.stations
        .iter()
        .map(|s| StationSpec {
            id: s.id.clone(),
            source: s.source.clone(),
            pipeline: s.pipeline.clone(),
            roi: s.roi.clone(),
            idle_timeout_ms: s.idle_timeout_ms,
        })
        .collect()
}

fn load(path: &Path) -> Result<Loaded, String> {
    let config = Config::load(path).map_err(|e| format!("invalid configuration: {e}"))?;
    let orders = Orders::load(&config.orders_file)
        .map_err(|e| format!("orders_file {}: {e}", config.orders_file.display()))?;
    let inventory = Inventory::load(&config.inventory_file)
        .map_err(|e| format!("inventory_file {}: {e}", config.inventory_file.display()))?;
    let settings = supervise_settings(&config);
    let storage = storage_target(&config);
    for (i, spec) in station_specs(&config).iter().enumerate() {
        supervise::render(&settings, &storage, spec, "check")
            .map_err(|e| format!("stations[{i}].pipeline: {e}"))?;
    }
    // The model is loaded (and its output checked against the classes) up front, so that
    // `check` and `run` refuse a bad one before anything starts.
    let detector = match &config.detector {
        Some(d) => Some(Arc::new(
            orchestrator::detector::Detector::new(d)
                .map_err(|e| format!("selection.detector_model: {e}"))?,
        )),
        None => None,
    };
    Ok(Loaded {
        config,
        orders,
        inventory,
        detector,
    })
}

fn main() -> ExitCode {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // A long-running daemon whose worker threads take turns on the OCR engine: with
        // glibc's default arenas per thread the engine's freed buffers are kept once per
        // arena (measured: peak RSS 219 -> 192 MiB with 8 stations).
        // SAFETY: mallopt only tunes the allocator; called before any thread exists.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match parse_args(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cmd {
        Command::Check(path) => match load(&path) {
            Ok(l) => {
                println!(
                    "configuration OK: {} station(s), {} order(s) known",
                    l.config.stations.len(),
                    l.orders.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("orchestrator: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run(path) => {
            let loaded = match load(&path) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("orchestrator: {e}");
                    return ExitCode::from(2);
                }
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("orchestrator: cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match rt.block_on(run(loaded)) {
                Ok(()) => ExitCode::SUCCESS,
                Err((code, e)) => {
                    log(format_args!("orchestrator: {e}"));
                    ExitCode::from(code)
                }
            }
        }
    }
}

async fn run(l: Loaded) -> Result<(), (u8, String)> {
    use tokio::signal::unix::{SignalKind, signal};
    let c = &l.config;
    let recognizer = orchestrator::recognize::build(&c.recognition, Arc::new(l.inventory.clone()))
        .map_err(|e| (2, format!("recognition: {e}")))?;
    let listener = http::bind(c.http.bind).await.map_err(|e| (1, e))?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| (1, e.to_string()))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| (1, e.to_string()))?;

    let embedded = start_embedded_s3(c).map_err(|e| (2, e))?;
    let metrics = Arc::new(Metrics::new());
    let store = Store::connect(
        c.storage.endpoint.as_deref(),
        &c.storage.region,
        c.storage.force_path_style,
    )
    .await;
    let consumer = Consumer::with_detector(
        store,
        consume::Settings {
            stations: c.stations.iter().map(|s| s.id.clone()).collect(),
            layout: Layout {
                bucket: c.storage.bucket.clone(),
                prefix: c.storage.prefix.clone(),
                results_bucket: c
                    .storage
                    .results_bucket
                    .clone()
                    .unwrap_or_else(|| c.storage.bucket.clone()),
                results_prefix: c.storage.results_prefix.clone(),
            },
            poll_interval: Duration::from_millis(c.processing.poll_interval_ms.max(10)),
            max_concurrent_orders: c.processing.max_concurrent_orders,
            frames_per_order: c.processing.frames_per_order,
            claim: c.processing.claim,
            claim_ttl: Duration::from_secs(c.processing.claim_ttl_s),
            list_page_size: 1000,
            owner: consume::default_owner(),
        },
        recognizer,
        Arc::new(l.orders),
        Arc::new(l.inventory),
        metrics.clone(),
        l.detector,
    );
    let supervisor = Supervisor::start(supervise_settings(c), storage_target(c), station_specs(c))
        .map_err(|e| (2, e))?;
    {
        let c = consumer.clone();
        supervisor.on_order_stored(Box::new(move |s, o| c.hint(s, o)));
        let sup = supervisor.clone();
        consumer.on_marker(Box::new(move |s| sup.note_progress(s)));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let consumer_task = tokio::spawn(consumer.clone().run(stop_rx.clone()));
    let state = Arc::new(AppState {
        supervisor: Some(supervisor.clone()),
        consumer: Some(consumer.clone()),
        metrics,
    });
    log(format_args!(
        "orchestrator started: {} station(s), HTTP on {}",
        c.stations.len(),
        c.http.bind
    ));
    let http_task = tokio::spawn(http::serve(listener, state, stop_rx));
    let sig = tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
    };
    log(format_args!("{sig} received: stopping the pipelines"));
    supervisor.shutdown().await;
    // Markers flushed by the stopping pipelines are picked up before the consumer stops.
    for id in c.stations.iter().map(|s| s.id.clone()) {
        let _ = consumer.poll_station(&id).await;
    }
    let _ = stop_tx.send(true);
    let _ = consumer_task.await;
    let _ = http_task.await;
    drop(embedded);
    log(format_args!("orchestrator stopped"));
    Ok(())
}

/// `storage.embedded_root`: an S3 server (s3s-fs, real SigV4 checks) inside this process,
/// checking requests against the same AWS credentials the pipelines and we sign with.
fn start_embedded_s3(c: &Config) -> Result<Option<oa_s3server::S3Server>, String> {
    let Some(root) = &c.storage.embedded_root else {
        return Ok(None);
    };
    let endpoint = c.storage.endpoint.as_deref().unwrap_or_default();
    let addr = orchestrator::config::embedded_addr(endpoint)?;
    let (Ok(access), Ok(secret)) = (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) else {
        return Err(
            "storage.embedded_root: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; \
                    the embedded S3 server accepts requests signed with them"
                .into(),
        );
    };
    let server = oa_s3server::S3Server::start_on(root, addr, &access, &secret)
        .map_err(|e| format!("storage.embedded_root: cannot serve S3 on {addr}: {e}"))?;
    let buckets = [Some(&c.storage.bucket), c.storage.results_bucket.as_ref()];
    for bucket in buckets.into_iter().flatten() {
        server
            .create_bucket(bucket)
            .map_err(|e| format!("storage.embedded_root: bucket {bucket}: {e}"))?;
    }
    log(format_args!(
        "embedded S3 server on {} (data in {})",
        server.endpoint(),
        root.display()
    ));
    Ok(Some(server))
}
