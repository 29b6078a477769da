//! Logs through `tracing`: levels, `RUST_LOG`, text or JSON lines on stderr. The AWS SDK
//! and ONNX Runtime emit `tracing` events too; they show at `warn` and above unless
//! `RUST_LOG` asks for more.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-12-01T20:15:00.123Z  INFO station=counter-1: pipeline started pid=42`
    #[default]
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

/// Our own crates at `info`, everybody else's at `warn`; `RUST_LOG` overrides.
pub const DEFAULT_FILTER: &str = "warn,orchestrator=info,oa_ocr=info,oa_s3server=info";

/// Installs the global subscriber. Called once by a binary's `main`; a second call (tests
/// that start several servers in one process) keeps the first.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
