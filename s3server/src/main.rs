//! `oa-s3-server`: the S3 endpoint of `oa_s3server` as a process, for demos, benchmarks and
//! shell tests.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use oa_cli::{LogFormat, init_logging};
use oa_s3server::{Options, S3Server};
use tokio::signal::unix::{SignalKind, signal};

/// Serves DIR over the S3 protocol (each bucket is a directory), requiring SigV4 requests
/// signed with one key pair.
///
/// Prints `listening on http://ADDR:PORT` on stdout once ready; on SIGINT or SIGTERM stops
/// accepting, lets the requests in flight finish and exits.
#[derive(Parser)]
#[command(version, after_help = CREDENTIALS)]
struct Args {
    /// Directory holding the buckets (created if missing)
    #[arg(long, value_name = "DIR")]
    root: PathBuf,
    /// Address to listen on; port 0 picks a free port
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Create this bucket at start (repeatable)
    #[arg(long = "bucket", value_name = "NAME")]
    buckets: Vec<String>,
    /// Access key requests must be signed with [default: $AWS_ACCESS_KEY_ID]
    #[arg(
        long,
        value_name = "KEY",
        env = "OA_S3_ACCESS_KEY",
        hide_env_values = true
    )]
    access_key: Option<String>,
    /// Log lines on stderr as text or JSON; RUST_LOG sets the levels [default level: info]
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    log_format: LogFormat,
}

/// The secret has no flag: a command line is visible to every user in `ps`.
const CREDENTIALS: &str = "\
The secret key comes from the environment only: OA_S3_SECRET_KEY, else
AWS_SECRET_ACCESS_KEY. With the AWS variables set, AWS clients on this machine sign with
the same key pair the server checks.";

/// The first of `names` set to a non-empty value.
fn from_env(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

fn key_pair(args: &Args) -> Result<(String, String), &'static str> {
    let access_key = args
        .access_key
        .clone()
        .filter(|k| !k.is_empty())
        .or_else(|| from_env(&["AWS_ACCESS_KEY_ID"]))
        .ok_or("no access key: set --access-key, OA_S3_ACCESS_KEY or AWS_ACCESS_KEY_ID")?;
    let secret_key = from_env(&["OA_S3_SECRET_KEY", "AWS_SECRET_ACCESS_KEY"])
        .ok_or("no secret key: set OA_S3_SECRET_KEY or AWS_SECRET_ACCESS_KEY")?;
    Ok((access_key, secret_key))
}

async fn run(args: Args, (access_key, secret_key): (String, String)) -> Result<(), String> {
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let server = S3Server::start(Options {
        addr: args.addr,
        buckets: args.buckets,
        // Runs for months: no log of PUTs growing with each one.
        record_puts: false,
        ..Options::new(&args.root, access_key, secret_key)
    })
    .await
    .map_err(|e| format!("cannot serve {} on {}: {e}", args.root.display(), args.addr))?;

    // Scripts wait for this exact line, so it goes to stdout whatever the log settings.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", server.endpoint())
        .and_then(|()| stdout.flush())
        .map_err(|e| e.to_string())?;
    drop(stdout);
    let sig = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!("{sig} received: stopping");
    server.shutdown().await;
    Ok(())
}

/// glibc's allocator tuned for a server of months: its blocking threads (file I/O) each got
/// an arena that kept the largest listing buffers it had seen, so RSS followed the size of
/// the bucket (measured: 11.3 -> 15.6 MB over 30 min of a 2-station soak, with 0.8 MB of
/// it in use). Two arenas and fixed thresholds give the freed memory back.
fn tune_allocator() {
    let set = |var: &str, param: libc::c_int, value: libc::c_int| {
        if std::env::var_os(var).is_none() {
            // SAFETY: mallopt only tunes the allocator; called before any thread exists.
            unsafe { libc::mallopt(param, value) };
        }
    };
    set("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 2);
    set("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, 128 * 1024);
    set("MALLOC_TRIM_THRESHOLD_", libc::M_TRIM_THRESHOLD, 128 * 1024);
}

fn main() -> ExitCode {
    tune_allocator();
    let args = Args::parse();
    init_logging(args.log_format, "info");
    let keys = match key_pair(&args) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args, keys)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
