//! One `gst-launch-1.0` child: how it is started, signalled and described when it ends.
//!
//! The child runs in its own process group, so that SIGINT and SIGKILL reach everything it
//! started, with `PR_SET_PDEATHSIG = SIGKILL`, so that a SIGKILLed orchestrator leaves no
//! child. Children are spawned from one long-lived thread because the parent-death signal
//! follows the *thread* that forked.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How every child is started.
#[derive(Debug, Clone)]
pub struct Launch {
    pub gst_launch: PathBuf,
    /// Extra `GST_PLUGIN_PATH`.
    pub plugin_path: Option<PathBuf>,
}

impl Launch {
    /// `gst-launch-1.0 -e -m ARGS` with its output piped, line-buffered and untranslated.
    pub fn command(&self, args: &[String]) -> tokio::process::Command {
        // gst-launch prints with stdio, fully buffered on a pipe: line-buffer it through
        // coreutils' stdbuf (an exec, same PID) so readiness and progress are seen live.
        let stdbuf = std::path::Path::new("/usr/bin/stdbuf");
        let mut cmd = if stdbuf.exists() {
            let mut c = tokio::process::Command::new(stdbuf);
            c.arg("-oL").arg(&self.gst_launch);
            c
        } else {
            tokio::process::Command::new(&self.gst_launch)
        };
        // Only what a pipeline needs: the orchestrator's own secrets (a VLM API key, API
        // tokens) stay with it.
        cmd.env_clear()
            .envs(std::env::vars_os().filter(|(k, _)| k.to_str().is_some_and(passed_to_child)));
        cmd.arg("-e")
            .arg("-m")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // The lines we parse are gettext-translated: read them in one language.
            .env("LC_ALL", "C")
            .env("GST_DEBUG_NO_COLOR", "1")
            .process_group(0)
            .kill_on_drop(true);
        if let Some(p) = &self.plugin_path {
            cmd.env("GST_PLUGIN_PATH", p);
        }
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // glibc's default of 8 malloc arenas per core keeps memory freed by one
            // streaming thread away from the others; 2 arenas cut a pipeline's peak RSS by
            // ~10 MiB.
            cmd.env("MALLOC_ARENA_MAX", "2");
        }
        if std::env::var_os("GST_DEBUG").is_none() {
            // Warnings and errors of the elements reach our log; nothing is parsed from it.
            cmd.env("GST_DEBUG", "2");
        }
        cmd
    }

    /// [`Launch::command`] with `env` set on top: a station's own variables (its camera's
    /// `OA_CAMERA_USER` / `OA_CAMERA_PASSWORD`), which are never inherited.
    pub fn command_with_env(
        &self,
        args: &[String],
        env: &[(&'static str, String)],
    ) -> tokio::process::Command {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        cmd
    }
}

/// The environment variables a station pipeline gets from the orchestrator's.
/// `OA_CAMERA_USER` and `OA_CAMERA_PASSWORD` are not among them: each station's are set
/// explicitly ([`Launch::command_with_env`]), so that one station never gets another's.
pub fn passed_to_child(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "PATH",
        "HOME",
        "USER",
        "TMPDIR",
        "TZ",
        "XDG_RUNTIME_DIR",
        "LD_LIBRARY_PATH",
        "MALLOC_ARENA_MAX",
        "ORT_DYLIB_PATH",
        "OA_MODEL_DIR",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    ];
    // AWS_*: the sink's credentials and region (the standard chain); GST_*: the plugin
    // path, registry and debug settings.
    EXACT.contains(&name) || name.starts_with("AWS_") || name.starts_with("GST_")
}

type SpawnRequest = (
    tokio::process::Command,
    std::sync::mpsc::SyncSender<std::io::Result<tokio::process::Child>>,
);

/// The thread children are forked from; it lives as long as the supervisor.
#[derive(Clone)]
pub struct Spawner(std::sync::mpsc::Sender<SpawnRequest>);

impl Spawner {
    pub(crate) fn new() -> Spawner {
        let (tx, rx) = std::sync::mpsc::channel::<SpawnRequest>();
        let handle = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("oa-spawner".into())
            .spawn(move || {
                let _enter = handle.enter();
                while let Ok((mut cmd, reply)) = rx.recv() {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawner thread starts");
        Spawner(tx)
    }

    pub async fn spawn(
        &self,
        mut cmd: tokio::process::Command,
    ) -> std::io::Result<tokio::process::Child> {
        let parent = nix::unistd::getpid();
        // SAFETY: the closure runs between fork and exec and makes only async-signal-safe
        // system calls (prctl, getppid); it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                // The parent may have died before prctl took effect.
                if nix::unistd::getppid() != parent {
                    return Err(std::io::Error::other("the orchestrator is gone"));
                }
                Ok(())
            });
        }
        let (reply_tx, reply_rx) = std::sync::mpsc::sync_channel(1);
        self.0
            .send((cmd, reply_tx))
            .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
        tokio::task::spawn_blocking(move || reply_rx.recv())
            .await
            .map_err(std::io::Error::other)?
            .map_err(|_| std::io::Error::other("spawner thread is gone"))?
    }
}

/// Sends `sig` to the process group the child leads; a group already gone is fine.
pub fn signal_group(pgid: u32, sig: Signal) {
    if let Ok(pgid) = i32::try_from(pgid) {
        let _ = killpg(Pid::from_raw(pgid), sig);
    }
}

/// `exit code 1`, `killed by signal 9`.
pub fn describe_exit(s: std::process::ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_child_gets_storage_and_gstreamer_settings_not_other_secrets() {
        for kept in [
            "AWS_SECRET_ACCESS_KEY",
            "AWS_PROFILE",
            "GST_PLUGIN_PATH",
            "PATH",
        ] {
            assert!(super::passed_to_child(kept), "{kept}");
        }
        for dropped in [
            "VLM_API_KEY",
            "OPENAI_API_KEY",
            "OA_API_TOKENS",
            "SECRET",
            "OA_CAMERA_USER",
            "OA_CAMERA_PASSWORD",
        ] {
            assert!(!super::passed_to_child(dropped), "{dropped}");
        }
    }
}
