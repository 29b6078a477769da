//! Logs through `tracing` ([`oa_cli::init_logging`]): levels, `RUST_LOG`, text or JSON
//! lines on stderr. The AWS SDK and ONNX Runtime emit `tracing` events too; they show at
//! `warn` and above unless `RUST_LOG` asks for more.

pub use oa_cli::LogFormat;

/// Our own crates at `info`, everybody else's at `warn`; `RUST_LOG` overrides.
pub const DEFAULT_FILTER: &str = "warn,orchestrator=info,oa_ocr=info,oa_s3server=info";

/// Installs the global subscriber. Called once by a binary's `main`; a second call (tests
/// that start several servers in one process) keeps the first.
pub fn init(format: LogFormat) {
    oa_cli::init_logging(format, DEFAULT_FILTER);
}
