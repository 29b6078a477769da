//! What the project's binaries (`orchestrator`, `oa-s3-server`, `station-sim`) share on
//! the command line: the `--log-format` value and the `tracing` subscriber it selects.
//! Logs are text or JSON lines on stderr, with levels and `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-12-01T20:15:00.123Z  INFO station=counter-1: pipeline started pid=42`
    #[default]
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

/// Installs the global subscriber: `RUST_LOG` if set, else `default_filter` (an
/// `EnvFilter` directive such as `"info"`); colours only on a terminal. Called once by a
/// binary's `main`; a second call (tests that start several servers in one process) keeps
/// the first.
pub fn init_logging(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
