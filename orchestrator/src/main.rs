//! The `orchestrator` command: `run`, `check-config`, `check-video` and `calibrate` (see
//! `--help`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use orchestrator::config::Config;
use orchestrator::consume::{self, Consumer, ConsumerDeps};
use orchestrator::events::{self, OutboxPlace};
use orchestrator::expected::{self, ExpectedOrders};
use orchestrator::http::{self, AppState};
use orchestrator::logging::{self, LogFormat};
use orchestrator::metrics::Metrics;
use orchestrator::orders::{Inventory, Orders};
use orchestrator::roles::{self, Duty, Role, ShardArg};
use orchestrator::shutdown::{Hangups, Shutdown, Signals};
use orchestrator::store::{Layout, Store};
use orchestrator::supervise::camera::CameraEnv;
use orchestrator::supervise::{self, StationSpec, StorageTarget, Supervisor};

/// Supervises the station pipelines, consumes completed orders, recognises and validates
/// them, and publishes results, metrics and an HTTP API.
#[derive(Parser)]
#[command(name = "orchestrator", version = orchestrator::BUILD, about, long_about = None)]
#[command(after_help = "\
Examples:
  orchestrator check-config --config orchestrator.toml
  orchestrator run --config orchestrator.toml      (or OA_CONFIG=orchestrator.toml)
  orchestrator check-video recording.mkv --config orchestrator.toml --station station_1

Exit codes: 0 success, 1 runtime failure, 2 invalid usage or configuration.")]
struct Cli {
    /// How log lines are written (levels and targets from RUST_LOG, default info).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        env = "OA_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start everything: one gst-launch-1.0 pipeline per station, order discovery,
    /// recognition and validation, results/{station}/{order}.json and the HTTP API
    /// (/healthz, /readyz, /metrics, /api/stations, /api/orders...).
    ///
    /// S3 credentials come from the standard AWS environment (AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_PROFILE...). SIGHUP, a change of the file and POST
    /// /api/reload apply its station list while the others run (stations added start,
    /// removed stop with their open order completed, changed restart alone; an invalid
    /// file is refused, the running set kept); SIGHUP reloads orders_file too. SIGINT or
    /// SIGTERM stops it: each pipeline gets SIGINT (its open order is flushed), and
    /// SIGKILL after supervision.shutdown_grace_s.
    ///
    /// Many replicas can share one bucket: `--role stations --shard K/N` runs the
    /// pipelines of 1/N of the stations, `--role consumer` processes every station's
    /// orders (any number of them; claims keep each order to one).
    Run(ConfigArg),
    /// Load the configuration, the orders and inventory files, and render every station's
    /// pipeline; print one line naming the field on the first problem (exit code 2), or
    /// what would run (with --role and --shard: which stations this replica takes).
    CheckConfig(ConfigArg),
    /// Play a recording once, as fast as it decodes, and report every order in it.
    ///
    /// The file goes through the station's own pipeline (recorded-file.pipeline, the sink's
    /// clock sync off), an S3 server of its own on 127.0.0.1 and the configured recogniser;
    /// prints one line per order (ID, frames, status, missing and extra items) and a
    /// summary. The station's settings (roi, idle timeout) come from --station, else the
    /// first station of the configuration. Exit codes: 0 a report (whatever the orders'
    /// statuses), 1 the file cannot be played, 2 invalid usage or configuration, 3 no
    /// order slip read in it.
    CheckVideo(CheckVideoArgs),
    /// Propose a station's roi from its own camera: grab a few frames through the
    /// station's pipeline, find the order slip's number with whole-frame OCR, and print
    /// the `roi = "x,y,width,height"` line that covers it (with a margin), checked with
    /// region OCR on the same frames; an annotated JPEG shows the boxes.
    ///
    /// Put a slip where it lies while packing (moving it between a few places during the
    /// grab widens the region to cover them all). Exit codes: 0 a proposal, 1 no frame
    /// from the camera, 2 invalid usage or configuration, 3 no order slip in view.
    Calibrate(CalibrateArgs),
}

#[derive(Args)]
struct CalibrateArgs {
    /// Configuration file (TOML): the station's source, pipeline and camera credentials.
    #[arg(long, value_name = "FILE", env = "OA_CONFIG")]
    config: PathBuf,
    /// The station to calibrate.
    #[arg(long, value_name = "ID")]
    station: String,
    /// Frames to read, at 1 frame/s (seconds of a camera).
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=600))]
    frames: u16,
    /// Where to write the frame with the boxes drawn on it.
    #[arg(long, value_name = "FILE.jpg", default_value = "calibrate.jpg")]
    out: PathBuf,
    /// The regex the slip's number is printed in (one capture group: the ID), when the
    /// station's pipeline sets ocrsegment's order-pattern; default: ocrsegment's default.
    #[arg(long, value_name = "REGEX")]
    order_pattern: Option<String>,
}

#[derive(Args)]
struct CheckVideoArgs {
    /// The recording (any container and codec GStreamer's decodebin plays, e.g. H.264 in
    /// MP4 or Matroska).
    file: PathBuf,
    /// Configuration file (TOML): inventory, orders, recognition and the station's
    /// settings; its storage is not used.
    #[arg(long, value_name = "FILE", env = "OA_CONFIG")]
    config: PathBuf,
    /// The station whose settings are used (default: the first).
    #[arg(long, value_name = "ID")]
    station: Option<String>,
    /// Expected orders (JSON, as orders_file) instead of the configuration's.
    #[arg(long, value_name = "FILE")]
    orders: Option<PathBuf>,
    /// OCR region of the slip, x,y,width,height in pixels, instead of the station's;
    /// `full` reads the whole frame.
    #[arg(long, value_name = "X,Y,W,H|full")]
    roi: Option<String>,
    /// One JSON object (each order's full result) instead of lines.
    #[arg(long)]
    json: bool,
    /// Keep the frames, markers and results in this new or empty folder (an S3 root:
    /// DIR/frames/<station>/<order>/...).
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

#[derive(Args)]
struct ConfigArg {
    /// Configuration file (TOML); see orchestrator.example.toml.
    #[arg(long, value_name = "FILE", env = "OA_CONFIG")]
    config: PathBuf,
    /// What this process runs: `all` (pipelines and processing, one box per store),
    /// `stations` (pipelines, health, metrics; no processing) or `consumer` (processing;
    /// no pipelines).
    #[arg(long, value_enum, default_value_t, env = "OA_ROLE")]
    role: Role,
    /// Run only the pipelines of the stations that hash to shard K of N (rendezvous
    /// hashing of the station ID; K from 0). `ordinal/N` takes K from the host name's
    /// trailing number, as a StatefulSet pod is named (stations-0, stations-1...).
    #[arg(long, value_name = "K/N", env = "OA_SHARD")]
    shard: Option<ShardArg>,
}

impl ConfigArg {
    fn duty(&self, c: &Config) -> Result<Duty, String> {
        let shard = match self.shard {
            Some(arg) => Some(arg.resolve(&roles::hostname())?),
            None => None,
        };
        Duty::new(
            self.role,
            shard,
            c.supervision.enabled,
            c.processing.enabled,
        )
    }
}

/// Everything loaded and checked before anything starts.
struct Loaded {
    config: Config,
    /// The file it was read from, read again on a reload.
    path: std::path::PathBuf,
    /// What this process runs (role and shard).
    duty: Duty,
    orders: Orders,
    inventory: Inventory,
    detector: Option<Arc<orchestrator::detector::Detector>>,
    /// The API's bearer tokens; `None`: open.
    auth: Option<Arc<http::auth::Tokens>>,
    /// `http.tls_cert` and `http.tls_key`, read.
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Webhook secrets and MQTT credentials from the environment.
    event_secrets: events::setup::Secrets,
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

fn station_ids(c: &Config) -> Vec<&str> {
    c.stations.iter().map(|s| s.id.as_str()).collect()
}

fn station_specs(c: &Config) -> Vec<(StationSpec, CameraEnv)> {
    c.stations
        .iter()
        .map(|s| {
            let spec = StationSpec {
                id: s.id.clone(),
                source: s.source.clone(),
                pipeline: s.pipeline.clone(),
                roi: s.roi.clone(),
                idle_timeout_ms: s.idle_timeout_ms,
                reuse_after_s: s.reuse_after_s,
                plays_once: s.plays_once(),
            };
            let camera = CameraEnv {
                user_env: s.camera_user_env.clone(),
                password_env: s.camera_password_env.clone(),
            };
            (spec, camera)
        })
        .collect()
}

fn load(arg: &ConfigArg) -> Result<Loaded, String> {
    load_with(arg, true)
}

/// [`load`]; `advise`: also say [`Config::advice`] (not while calibrating, which is what
/// the advice asks for).
fn load_with(arg: &ConfigArg, advise: bool) -> Result<Loaded, String> {
    let path = arg.config.as_path();
    let config = Config::load(path).map_err(|e| format!("invalid configuration: {e}"))?;
    let advice = if advise { config.advice() } else { Vec::new() };
    for w in config.warnings.iter().chain(&advice) {
        tracing::warn!("{}: {w}", path.display());
    }
    let duty = arg.duty(&config)?;
    let auth = http::auth::Tokens::load(&config.http, path, |k| std::env::var(k).ok())
        .map_err(|e| format!("invalid configuration: {e}"))?;
    let tls = match (&config.http.tls_cert, &config.http.tls_key) {
        (Some(cert), Some(key)) => Some(http::tls::acceptor(cert, key)?),
        _ => None,
    };
    let event_secrets = events::setup::secrets(&config.events, |k| std::env::var(k).ok())
        .map_err(|e| format!("invalid configuration: {e}"))?;
    let orders = Orders::load(&config.orders_file)
        .map_err(|e| format!("orders_file {}: {e}", config.orders_file.display()))?;
    let inventory = Inventory::load(&config.inventory_file)
        .map_err(|e| format!("inventory_file {}: {e}", config.inventory_file.display()))?;
    if config.recognition.backend == orchestrator::config::Backend::OpenAi {
        // The prompt and worked examples are read and checked against the inventory now,
        // so that check-config refuses a bad examples file.
        orchestrator::recognize::prompt::Prompt::load(&config.recognition.openai, &inventory)?;
    }
    let settings = supervise_settings(&config);
    let storage = storage_target(&config);
    // Every station's pipeline is checked, whichever shard runs it.
    for (i, (spec, camera)) in station_specs(&config).iter().enumerate() {
        supervise::plan(&settings, &storage, spec, camera, "check")
            .map_err(|e| format!("stations[{i}].pipeline: {e}"))?;
    }
    // The model is loaded (and its output checked against the classes) up front, so that
    // `check-config` and `run` refuse a bad one before anything starts.
    let detector = match config.detector() {
        Some(d) => Some(Arc::new(
            orchestrator::detector::Detector::new(&d)
                .map_err(|e| format!("selection.detector_model: {e}"))?,
        )),
        None => None,
    };
    Ok(Loaded {
        config,
        path: path.to_path_buf(),
        duty,
        orders,
        inventory,
        detector,
        auth,
        tls,
        event_secrets,
    })
}

/// What `check-config` says of a good configuration: what will run and where it
/// listens, so that a typo that disables something shows.
fn summary(l: &Loaded) -> String {
    let c = &l.config;
    let d = &l.duty;
    let mut parts = vec![format!("{} station(s)", c.stations.len())];
    if d.pipelines {
        let mine = d.pipelines_of(&station_ids(c));
        parts.push(if d.shard == roles::Shard::WHOLE {
            format!("role {}: pipelines for all", d.role)
        } else {
            format!(
                "role {}, shard {}: pipelines for {} ({})",
                d.role,
                d.shard,
                mine.len(),
                if mine.is_empty() {
                    "none: more shards than stations?".to_owned()
                } else {
                    mine.join(", ")
                }
            )
        });
    } else {
        parts.push(format!("role {}: no pipelines", d.role));
    }
    parts.extend([
        if d.processing {
            "processing on".to_owned()
        } else {
            "processing off".to_owned()
        },
        format!("{} order(s) known", l.orders.len()),
        format!(
            "API on {}://{}{}",
            if l.tls.is_some() { "https" } else { "http" },
            c.http.bind,
            match &l.auth {
                Some(_) => " with tokens",
                None => " open (no tokens)",
            }
        ),
    ]);
    if !c.events.webhooks.is_empty() {
        let names: Vec<&str> = c.events.webhooks.iter().map(|w| w.name.as_str()).collect();
        parts.push(format!("webhooks: {}", names.join(", ")));
    }
    if let Some(m) = &c.events.mqtt {
        parts.push(format!("MQTT to {}:{} under {}/", m.host, m.port, m.topic));
    }
    format!("configuration OK: {}", parts.join("; "))
}

fn main() -> ExitCode {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // A long-running daemon whose worker threads take turns on the OCR engine: with
        // glibc's default arenas per thread the engine's freed buffers are kept once per
        // arena (measured: peak RSS 219 -> 192 MiB with 8 stations).
        // SAFETY: mallopt only tunes the allocator; called before any thread exists.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    }
    let cli = Cli::parse();
    if matches!(cli.command, Command::CheckVideo(_)) {
        logging::init_quiet(cli.log_format);
    } else {
        logging::init(cli.log_format);
    }
    match cli.command {
        Command::CheckConfig(a) => match load(&a) {
            Ok(l) => {
                println!("{}", summary(&l));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("orchestrator: {e}");
                ExitCode::from(2)
            }
        },
        Command::CheckVideo(a) => check_video(a),
        Command::Calibrate(a) => calibrate(a),
        Command::Run(a) => {
            let loaded = match load(&a) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("{e}");
                    return ExitCode::from(2);
                }
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match rt.block_on(run(loaded)) {
                Ok(()) => ExitCode::SUCCESS,
                Err((code, e)) => {
                    tracing::error!("{e}");
                    ExitCode::from(code)
                }
            }
        }
    }
}

fn check_video(a: CheckVideoArgs) -> ExitCode {
    use orchestrator::check_video::{self as cv, Template};
    let usage = |e: String| {
        eprintln!("orchestrator check-video: {e}");
        ExitCode::from(2)
    };
    let arg = ConfigArg {
        config: a.config.clone(),
        role: Role::All,
        shard: None,
    };
    let l = match load(&arg) {
        Ok(l) => l,
        Err(e) => return usage(e),
    };
    let c = &l.config;
    let roi = match a.roi.as_deref().map(str::trim) {
        None => None,
        Some("full") | Some("") => Some(None),
        Some(r) => match oa_contract::Roi::parse(r) {
            Ok(r) => Some(Some(r.to_string())),
            Err(e) => return usage(format!("--roi {r}: {e}")),
        },
    };
    let orders = match &a.orders {
        None => l.orders.clone(),
        Some(p) => match Orders::load(p) {
            Ok(o) => o,
            Err(e) => return usage(format!("--orders {}: {e}", p.display())),
        },
    };
    if let Some(k) = &a.keep
        && let Err(e) = cv::keep_dir_ok(k)
    {
        return usage(e);
    }
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        // The check's own S3 server on 127.0.0.1 accepts what it is signed with.
        let secret = format!(
            "check-video-{}-{:?}",
            std::process::id(),
            std::time::Instant::now()
        );
        // SAFETY: before the runtime; the detector's ONNX Runtime threads, if any, do not
        // read the environment.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "check-video");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", secret);
        }
    }
    if std::env::var_os("AWS_EC2_METADATA_DISABLED").is_none() {
        // SAFETY: as above.
        unsafe { std::env::set_var("AWS_EC2_METADATA_DISABLED", "true") };
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("orchestrator check-video: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let inventory = Arc::new(l.inventory);
    let recognizer = match orchestrator::recognize::build(&c.recognition, inventory.clone()) {
        Ok(r) => r,
        Err(e) => return usage(format!("recognition: {e}")),
    };
    let template = Template {
        orders,
        ..check_template(c, recognizer, inventory, l.detector.clone())
    };
    let mut check = match template.check(
        a.file.clone(),
        a.station.as_deref(),
        roi,
        a.keep.clone().unwrap_or_else(cv::scratch_root),
        a.keep.is_some(),
    ) {
        Ok(check) => check,
        Err(e) => return usage(format!("--{e}")),
    };
    use std::io::IsTerminal as _;
    check.progress = !a.json && std::io::stderr().is_terminal();
    match rt.block_on(check.run()) {
        Ok(report) => {
            if a.json {
                println!("{}", cv::to_json(&report));
            } else {
                for r in &report.orders {
                    println!("{}", cv::order_line(r));
                }
                println!("{}", cv::summary(&report));
                if let Some(k) = &a.keep {
                    println!("frames, markers and results kept in {}", k.display());
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("orchestrator check-video: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// What every recording check of `c` shares (`check-video` and `POST /api/videos`).
fn check_template(
    c: &Config,
    recognizer: Arc<dyn orchestrator::recognize::Recognizer>,
    inventory: Arc<orchestrator::orders::Inventory>,
    detector: Option<Arc<orchestrator::detector::Detector>>,
) -> orchestrator::check_video::Template {
    orchestrator::check_video::Template {
        stations: station_specs(c).into_iter().map(|(s, _)| s).collect(),
        supervision: supervise_settings(c),
        recognizer,
        orders: Orders::default(),
        inventory,
        detector,
        frames_per_order: c.processing.frames_per_order,
        result_wait: match c.recognition.backend {
            orchestrator::config::Backend::OpenAi => {
                let o = &c.recognition.openai;
                // Every attempt's timeout, the backoff between them, and a margin.
                Duration::from_millis(o.timeout_ms) * (o.retries + 1)
                    + Duration::from_secs(4 * u64::from(o.retries) + 10)
            }
            orchestrator::config::Backend::Labels => Duration::from_secs(30),
        },
    }
}

fn calibrate(a: CalibrateArgs) -> ExitCode {
    use orchestrator::calibrate::{self as cal, Calibrate};
    let usage = |e: String| {
        eprintln!("orchestrator calibrate: {e}");
        ExitCode::from(2)
    };
    let arg = ConfigArg {
        config: a.config.clone(),
        role: Role::All,
        shard: None,
    };
    let l = match load_with(&arg, false) {
        Ok(l) => l,
        Err(e) => return usage(e),
    };
    let c = &l.config;
    let Some((station, camera)) = station_specs(c)
        .into_iter()
        .find(|(s, _)| s.id == a.station)
    else {
        return usage(format!(
            "--station {}: not in the configuration (it has {})",
            a.station,
            station_ids(c).join(", ")
        ));
    };
    let pattern = a
        .order_pattern
        .as_deref()
        .unwrap_or(oa_contract::DEFAULT_ORDER_PATTERN);
    let pattern = match regex::Regex::new(pattern) {
        Ok(re) if re.captures_len() == 2 => re,
        Ok(_) => return usage("--order-pattern: needs exactly one capture group (the ID)".into()),
        Err(e) => return usage(format!("--order-pattern: {e}")),
    };
    if a.out
        .extension()
        .is_none_or(|e| !e.eq_ignore_ascii_case("jpg") && !e.eq_ignore_ascii_case("jpeg"))
    {
        return usage(format!("--out {}: a .jpg file", a.out.display()));
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("orchestrator calibrate: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(
        station = %station.id,
        source = %station.source,
        "reading {} frame(s) at 1 frame/s",
        a.frames
    );
    let job = Calibrate {
        station,
        camera,
        supervision: supervise_settings(c),
        pattern,
        frames: usize::from(a.frames),
        out: a.out.clone(),
        model_dir: c.recognition.labels.model_dir.clone(),
    };
    match rt.block_on(job.run()) {
        Ok(done) => {
            println!("{}", cal::report(&done));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("orchestrator calibrate: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn consumer_settings(c: &Config) -> consume::Settings {
    consume::Settings {
        stations: c.stations.iter().map(|s| s.id.clone()).collect(),
        layout: Layout {
            bucket: c.storage.bucket.clone(),
            prefix: c.storage.prefix.clone(),
            results_bucket: c.storage.results_bucket().to_owned(),
            results_prefix: c.storage.results_prefix.clone(),
        },
        poll_interval: Duration::from_millis(c.processing.poll_interval_ms.max(10)),
        max_concurrent_orders: c.processing.max_concurrent_orders,
        frames_per_order: c.processing.frames_per_order,
        claim: c.processing.claim,
        claim_ttl: Duration::from_secs(c.processing.claim_ttl_s),
        list_page_size: 1000,
        owner: consume::default_owner(),
        recognition_retry: Duration::from_secs(c.processing.recognition_retry_s),
        orphan_after: (c.processing.orphan_grace_s > 0).then(|| {
            let idle = c
                .stations
                .iter()
                .map(|s| s.idle_timeout_ms)
                .max()
                .unwrap_or(0);
            Duration::from_millis(u64::from(idle))
                + Duration::from_secs(c.processing.orphan_grace_s)
        }),
        retry_delay: Duration::from_secs(2),
        expected_wait: Duration::from_secs(c.processing.expected_wait_s),
        reuse_after: Duration::from_secs(
            c.stations
                .iter()
                .map(|s| u64::from(s.reuse_after_s))
                .filter(|&s| s > 0)
                .min()
                .unwrap_or(u64::from(orchestrator::config::DEFAULT_REUSE_AFTER_S)),
        ),
    }
}

async fn run(l: Loaded) -> Result<(), (u8, String)> {
    let c = &l.config;
    let duty = l.duty;
    let mut signals = Signals::new().map_err(|e| (1, e.to_string()))?;
    let mut hangups = Hangups::new().map_err(|e| (1, e.to_string()))?;
    let inventory = Arc::new(l.inventory);
    let recognizer = orchestrator::recognize::build(&c.recognition, inventory.clone())
        .map_err(|e| (2, format!("recognition: {e}")))?;
    // Uploaded recordings are checked with the same recogniser, orders and stations.
    let signed = std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
        && std::env::var_os("AWS_SECRET_ACCESS_KEY").is_some();
    if c.http.max_video_mb > 0 && !signed {
        tracing::warn!(
            "POST /api/videos is off: a check's own S3 server signs with AWS_ACCESS_KEY_ID \
             and AWS_SECRET_ACCESS_KEY, and they are not set (credentials from a profile or \
             a role do not reach it)"
        );
    }
    let videos_template =
        (c.http.max_video_mb > 0 && signed).then(|| orchestrator::check_video::Template {
            orders: l.orders.clone(),
            ..check_template(c, recognizer.clone(), inventory.clone(), l.detector.clone())
        });
    let listener = http::bind(c.http.bind).await.map_err(|e| (1, e))?;
    let embedded = start_embedded_s3(c).await.map_err(|e| (2, e))?;
    let metrics = Arc::new(Metrics::new());
    let store = Store::connect(
        c.storage.endpoint.as_deref(),
        &c.storage.region,
        c.storage.force_path_style,
    )
    .await;
    // Expected orders: the API's, kept in the results bucket, over the orders file.
    let expected = ExpectedOrders::new(
        store.clone(),
        c.storage.results_bucket().to_owned(),
        c.storage.results_prefix.clone(),
        inventory.clone(),
        l.orders,
    );
    let consumer = Consumer::new(ConsumerDeps {
        store,
        settings: consumer_settings(c),
        recognizer,
        orders: Arc::new(Orders::default()),
        inventory,
        metrics: metrics.clone(),
        detector: l.detector,
        expected: Some(expected.clone()),
    });
    if c.processing.claim && duty.processing {
        use orchestrator::consume::claim::ConditionalPut;
        match consumer.check_conditional_put().await {
            Ok(ConditionalPut::Honoured) => {}
            Ok(ConditionalPut::Ignored) => {
                return Err((
                    2,
                    "storage: the S3 store ignores If-None-Match (a conditional PUT \
                     overwrote an existing object), so claims cannot keep two orchestrators \
                     from processing one order: use a store that honours it (MinIO, AWS S3, \
                     the embedded server) or set processing.claim = false when only one \
                     orchestrator uses the bucket"
                        .into(),
                ));
            }
            // A store that is down at start must not keep the stations from recording.
            Err(e) => tracing::warn!("cannot check the store's conditional PUT yet: {e}"),
        }
    }
    let supervisor = if duty.pipelines {
        Some(
            Supervisor::start_with_cameras(supervise_settings(c), storage_target(c), {
                let mine = duty.pipelines_of(&station_ids(c));
                station_specs(c)
                    .into_iter()
                    .filter(|(s, _)| mine.contains(&s.id.as_str()))
                    .collect()
            })
            .map_err(|e| (2, e))?,
        )
    } else {
        None
    };
    let shutdown = Shutdown::new();
    let events = events::setup::build(
        &c.events,
        l.event_secrets,
        OutboxPlace {
            store: consumer.store().clone(),
            bucket: c.storage.results_bucket().to_owned(),
            prefix: c.storage.results_prefix.clone(),
        },
        &consume::default_owner(),
        shutdown.listener(),
    )
    .map_err(|e| (2, e))?;
    events.start_delivery(&shutdown.listener());
    consumer.set_events(events.clone());
    if let Some(s) = &supervisor {
        let s = s.clone();
        tokio::spawn(events::station::watch(
            events.clone(),
            move || s.statuses(),
            STATION_WATCH,
            shutdown.listener(),
        ));
    }
    // Retention, where orders are processed: its passes stop between two requests on
    // shutdown. Replicas that share a bucket delete the same keys; a delete is idempotent.
    let retention_task = duty.processing.then(|| {
        tokio::spawn(
            orchestrator::retention::Retention::new(
                consumer.store().clone(),
                orchestrator::retention::Settings::from_config(c),
                metrics.clone(),
            )
            .run(shutdown.listener()),
        )
    });
    let consumer = duty.processing.then_some(consumer);
    if let (Some(supervisor), Some(consumer)) = (&supervisor, &consumer) {
        let c = consumer.clone();
        supervisor.on_order_stored(Box::new(move |s, o| c.hint(s, o)));
        let sup = supervisor.clone();
        consumer.on_marker(Box::new(move |s| sup.note_progress(s)));
    }
    // The configuration's stations: reloaded on SIGHUP, when the file changes and on
    // POST /api/reload.
    let (config_reload, config_reloads) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(
        orchestrator::reload::Reloader {
            path: l.path.clone(),
            current: c.clone(),
            duty,
            supervisor: supervisor.clone(),
            consumer: consumer.clone(),
            specs_of: Box::new(station_specs),
        }
        .run(config_reloads, shutdown.listener()),
    );
    // orders_file: reloaded when it changes and on SIGHUP.
    let (reload, reloads) = tokio::sync::mpsc::unbounded_channel();
    let hup_reload = config_reload.clone();
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the configuration and orders_file");
            let _ = hup_reload.send(orchestrator::reload::Request {
                why: "SIGHUP",
                reply: None,
            });
            if reload.send(()).is_err() {
                break;
            }
        }
    });
    let expected = duty.processing.then_some(expected);
    if let Some(expected) = &expected {
        tokio::spawn(expected.clone().watch_orders_file(
            c.orders_file.clone(),
            expected::ORDERS_FILE_CHECK,
            reloads,
            shutdown.listener(),
        ));
    }
    let consumer_task = consumer
        .clone()
        .map(|c| tokio::spawn(c.run(shutdown.listener())));
    let videos_dir = orchestrator::check_video::scratch_root();
    let videos = videos_template.map(|t| {
        orchestrator::videos::Videos::start(
            t,
            videos_dir.clone(),
            u64::from(c.http.max_video_mb) << 20,
            shutdown.listener(),
        )
    });
    let state = Arc::new(AppState {
        supervisor: supervisor.clone(),
        consumer: consumer.clone(),
        metrics,
        expected,
        auth: l.auth,
        events: Some(events),
        videos,
        reload: Some(config_reload),
    });
    tracing::info!(
        role = %duty.role,
        shard = %duty.shard,
        stations = c.stations.len(),
        pipelines = supervisor.as_ref().map_or(0, |s| s.statuses().len()),
        processing = duty.processing,
        http = %c.http.bind,
        https = c.http.tls_cert.is_some(),
        version = orchestrator::BUILD,
        "orchestrator started"
    );
    let http_task = match l.tls {
        Some(acceptor) => tokio::spawn(http::serve_tls(
            listener,
            state,
            acceptor,
            shutdown.listener(),
        )),
        None => tokio::spawn(http::serve(listener, state, shutdown.listener())),
    };
    let sig = signals.recv().await;
    tracing::info!("{sig} received: stopping");
    if let Some(supervisor) = &supervisor {
        supervisor.shutdown().await;
    }
    // Markers flushed by the stopping pipelines are picked up before the consumer stops.
    if let Some(consumer) = &consumer {
        for id in c.stations.iter().map(|s| s.id.clone()) {
            let _ = consumer.poll_station(&id).await;
        }
    }
    shutdown.trigger();
    if let Some(task) = consumer_task {
        let _ = task.await;
    }
    let _ = http_task.await;
    // Uploads not checked yet go with the process (their state was in memory only).
    let _ = std::fs::remove_dir_all(&videos_dir);
    if let Some(task) = retention_task {
        let _ = task.await;
    }
    if let Some(s3) = embedded {
        s3.shutdown().await;
    }
    tracing::info!("orchestrator stopped");
    Ok(())
}

/// How often station states are looked at for `station.state` events.
const STATION_WATCH: Duration = Duration::from_millis(500);

/// `storage.embedded_root`: an S3 server (s3s-fs, real SigV4 checks) inside this process,
/// checking requests against the same AWS credentials the pipelines and we sign with.
async fn start_embedded_s3(c: &Config) -> Result<Option<oa_s3server::S3Server>, String> {
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
    let buckets = [Some(&c.storage.bucket), c.storage.results_bucket.as_ref()];
    let options = oa_s3server::Options {
        addr,
        buckets: buckets.into_iter().flatten().cloned().collect(),
        // Runs for months: no log of PUTs growing with each one.
        record_puts: false,
        ..oa_s3server::Options::new(root, access, secret)
    };
    let server = oa_s3server::S3Server::start(options)
        .await
        .map_err(|e| format!("storage.embedded_root: cannot serve S3 on {addr}: {e}"))?;
    tracing::info!(
        endpoint = %server.endpoint(),
        root = %root.display(),
        "embedded S3 server started"
    );
    Ok(Some(server))
}
