//! `oa-s3-server`: the test S3 endpoint as a process, for demos and shell tests.
//!
//! Credentials come from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` so that they never
//! show up in `ps`; the same variables then let AWS clients on this machine sign requests.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use oa_s3server::S3Server;

const USAGE: &str = "\
Usage: oa-s3-server --root DIR [--addr 127.0.0.1:0] [--bucket NAME ...]

Serves DIR over the S3 protocol (each bucket is a directory), requiring SigV4 requests
signed with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment.
Prints `listening on http://ADDR:PORT` once ready; stops on SIGINT or SIGTERM.

Options:
  --root DIR       directory holding the buckets (created if missing)
  --addr ADDR      address to listen on [default: 127.0.0.1:0, a free port]
  --bucket NAME    create this bucket at start (repeatable)
  -h, --help       print this help
";

struct Args {
    root: PathBuf,
    addr: SocketAddr,
    buckets: Vec<String>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut root = None;
    let mut addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut buckets = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--root" => root = Some(PathBuf::from(value("--root")?)),
            "--addr" => {
                let v = value("--addr")?;
                addr = v
                    .parse()
                    .map_err(|e| format!("--addr {v:?} is not HOST:PORT: {e}"))?;
            }
            "--bucket" => buckets.push(value("--bucket")?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let root = root.ok_or("--root is required")?;
    Ok(Some(Args {
        root,
        addr,
        buckets,
    }))
}

fn credential(name: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(format!("{name} must be set in the environment")),
    }
}

fn run() -> Result<(), String> {
    let Some(args) = parse_args()? else {
        print!("{USAGE}");
        return Ok(());
    };
    let access_key = credential("AWS_ACCESS_KEY_ID")?;
    let secret_key = credential("AWS_SECRET_ACCESS_KEY")?;
    let server = S3Server::start_on(&args.root, args.addr, &access_key, &secret_key)
        .map_err(|e| format!("cannot serve {}: {e}", args.root.display()))?;
    for bucket in &args.buckets {
        server
            .create_bucket(bucket)
            .map_err(|e| format!("cannot create bucket {bucket:?}: {e}"))?;
    }

    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    signals.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {}", server.endpoint())
            .and_then(|()| stdout.flush())
            .map_err(|e| e.to_string())?;
        drop(stdout);
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok::<(), String>(())
    })?;
    server.stop();
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oa-s3-server: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
