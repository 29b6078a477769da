//! The one place that sets up ONNX Runtime: the process-wide environment, the options every
//! session of this project is built with, and where the models are found.
//!
//! Both the PP-OCR engine and the orchestrator's YOLO detector build their sessions here,
//! so a change of threads or memory settings (the figures in docs/benchmarks.md depend on
//! them) applies to every model at once.

use ort::session::Session;
pub use ort::session::builder::GraphOptimizationLevel;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where ONNX Runtime is loaded from when `ORT_DYLIB_PATH` is not set.
pub const DEFAULT_ORT_DYLIB: &str = match option_env!("OA_ORT_DYLIB_PATH") {
    Some(p) => p,
    None => concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../.deps/onnxruntime/libonnxruntime.so"
    ),
};

/// Where the models are looked for when neither the caller nor `OA_MODEL_DIR` names a
/// folder: the checkout's `models/`, filled by scripts/setup.sh.
pub const DEFAULT_MODEL_DIR: &str = match option_env!("OA_DEFAULT_MODEL_DIR") {
    Some(p) => p,
    None => concat!(env!("CARGO_MANIFEST_DIR"), "/../models"),
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// ONNX Runtime itself could not be loaded.
    Runtime(String),
    /// The model at `path` could not be turned into a session.
    Model { path: PathBuf, cause: String },
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Runtime(m) => f.write_str(m),
            SessionError::Model { path, cause } => {
                write!(f, "cannot load model {}: {cause}", path.display())
            }
        }
    }
}

impl std::error::Error for SessionError {}

/// The model folder: `explicit`, else `OA_MODEL_DIR`, else [`DEFAULT_MODEL_DIR`].
pub fn resolve_model_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os("OA_MODEL_DIR") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_MODEL_DIR),
    }
}

/// The process-wide ONNX Runtime environment, loading the shared library on first use
/// from `ORT_DYLIB_PATH` or [`DEFAULT_ORT_DYLIB`]. ONNX Runtime allows one environment per
/// process, so it lives for the rest of the process; a failure is remembered too.
pub fn ort_environment() -> Result<&'static ort::environment::Environment, SessionError> {
    static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = match std::env::var_os("ORT_DYLIB_PATH") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => PathBuf::from(DEFAULT_ORT_DYLIB),
        };
        if !path.exists() {
            return Err(format!(
                "ONNX Runtime library {} does not exist (set ORT_DYLIB_PATH or run scripts/setup.sh)",
                path.display()
            ));
        }
        ort::init_from(&path)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", path.display()))?
            .with_name("orderaccuracy")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))
    })
    .as_ref()
    .map_err(|e| SessionError::Runtime(e.clone()))
}

/// How a session is built. The defaults are what every model of the project runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    /// Intra-op threads (at least 1).
    pub intra_threads: usize,
    pub optimization: GraphOptimizationLevel,
    /// ONNX Runtime's CPU arena allocator. On: peak memory is lower for our models, the
    /// arena keeps what the first run needed (docs/benchmarks.md, `bench_ort_memory`).
    pub cpu_arena: bool,
    /// Memory pattern planning; goes with the arena.
    pub memory_pattern: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            intra_threads: 1,
            optimization: GraphOptimizationLevel::Level3,
            cpu_arena: true,
            memory_pattern: true,
        }
    }
}

impl SessionOptions {
    pub fn with_intra_threads(mut self, threads: usize) -> Self {
        self.intra_threads = threads;
        self
    }

    pub fn with_optimization(mut self, level: GraphOptimizationLevel) -> Self {
        self.optimization = level;
        self
    }

    /// Turns the CPU arena and memory pattern on or off together.
    pub fn with_arena(mut self, on: bool) -> Self {
        self.cpu_arena = on;
        self.memory_pattern = on;
        self
    }

    /// Builds a session of the ONNX model at `path` in the process-wide environment.
    pub fn load(&self, path: &Path) -> Result<Session, SessionError> {
        let env = ort_environment()?;
        let mut builder = Session::builder(env)
            .map_err(cannot_load(path))?
            .with_optimization_level(self.optimization)
            .map_err(cannot_load(path))?
            .with_intra_threads(self.intra_threads.max(1))
            .map_err(cannot_load(path))?
            // One model runs one graph at a time: parallelism is intra-op only.
            .with_inter_threads(1)
            .map_err(cannot_load(path))?
            // Spinning workers would burn a core between frames on a machine shared by
            // several stations.
            .with_intra_op_spinning(false)
            .map_err(cannot_load(path))?;
        if !self.memory_pattern {
            builder = builder
                .with_memory_pattern(false)
                .map_err(cannot_load(path))?;
        }
        if !self.cpu_arena {
            builder = builder
                .with_execution_providers([ort::ep::CPU::default()
                    .with_arena_allocator(false)
                    .build()])
                .map_err(cannot_load(path))?;
        }
        builder.commit_from_file(path).map_err(cannot_load(path))
    }
}

fn cannot_load<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> SessionError + '_ {
    move |e| SessionError::Model {
        path: path.to_path_buf(),
        cause: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_dir_resolution_prefers_explicit() {
        assert_eq!(
            resolve_model_dir(Some(Path::new("/x"))),
            PathBuf::from("/x")
        );
    }

    #[test]
    fn arena_switch_moves_both_settings() {
        let off = SessionOptions::default().with_arena(false);
        assert!(!off.cpu_arena && !off.memory_pattern);
        assert_eq!(off.with_arena(true), SessionOptions::default());
    }

    #[test]
    fn a_missing_model_names_its_path() {
        let Err(e) = SessionOptions::default().load(Path::new("/nonexistent/m.onnx")) else {
            panic!("a missing model loads");
        };
        // Without ONNX Runtime the environment error comes first; either names the cause.
        let e = e.to_string();
        assert!(
            e.contains("/nonexistent/m.onnx") || e.contains("ONNX Runtime"),
            "{e}"
        );
    }
}
