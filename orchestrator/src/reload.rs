//! Reloading the configuration while everything runs (SIGHUP, a change of the file,
//! `POST /api/reload`): the station list is applied at once by [`Supervisor::reload`]
//! (stations added start, removed stop with their open order completed, changed restart
//! alone; the others keep their pipeline) and given to the consumer; a section that can
//! only change with a restart is named as such and left as it runs. An invalid file is
//! refused as a whole, naming the field, and the running configuration is kept.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::consume::Consumer;
use crate::roles::Duty;
use crate::shutdown::Stopping;
use crate::supervise::camera::CameraEnv;
use crate::supervise::{Reloaded, StationSpec, Supervisor};

/// How often the file's modification time is looked at.
pub const FILE_CHECK: Duration = Duration::from_secs(2);

/// What a reload did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Outcome {
    /// The stations of this process's pipelines (none without pipelines).
    #[schema(value_type = Object)]
    pub stations: Reloaded,
    /// Sections that changed in the file and take effect only after a restart.
    pub needs_restart: Vec<&'static str>,
}

/// A reload asked for; the answer goes back on `reply` when there is one.
pub struct Request {
    pub why: &'static str,
    pub reply: Option<oneshot::Sender<Result<Outcome, String>>>,
}

/// The sections of `new` that differ from `old` and need a restart to take effect.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut differs = |name: &'static str, changed: bool| {
        if changed {
            out.push(name);
        }
    };
    differs("storage", old.storage != new.storage);
    differs("recognition", old.recognition != new.recognition);
    differs("orders_file", old.orders_file != new.orders_file);
    differs("inventory_file", old.inventory_file != new.inventory_file);
    differs("http", old.http != new.http);
    differs("supervision", old.supervision != new.supervision);
    differs("processing", old.processing != new.processing);
    differs("selection", old.selection != new.selection);
    differs("events", old.events != new.events);
    differs("retention", old.retention != new.retention);
    out
}

/// The stations of a configuration, as the supervisor runs them.
pub type SpecsOf = Box<dyn Fn(&Config) -> Vec<(StationSpec, CameraEnv)> + Send + Sync>;

/// What applies a reload.
pub struct Reloader {
    pub path: PathBuf,
    pub current: Config,
    pub duty: Duty,
    pub supervisor: Option<Arc<Supervisor>>,
    pub consumer: Option<Arc<Consumer>>,
    /// The stations of a configuration, as the supervisor runs them.
    pub specs_of: SpecsOf,
}

impl Reloader {
    /// Serves reloads until `stopping`; the file is watched too.
    pub async fn run(
        mut self,
        mut requests: mpsc::UnboundedReceiver<Request>,
        mut stopping: Stopping,
    ) {
        let mut seen = modified(&self.path);
        let mut tick = tokio::time::interval(FILE_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let req = tokio::select! {
                r = requests.recv() => match r {
                    Some(r) => r,
                    None => break,
                },
                _ = tick.tick() => {
                    let now = modified(&self.path);
                    if now == seen {
                        continue;
                    }
                    Request { why: "the file changed", reply: None }
                }
                _ = stopping.wait() => break,
            };
            seen = modified(&self.path);
            let out = self.reload(req.why).await;
            if let Some(reply) = req.reply {
                let _ = reply.send(out);
            }
        }
    }

    async fn reload(&mut self, why: &str) -> Result<Outcome, String> {
        let new = match Config::load(&self.path) {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("invalid configuration: {e}; the running configuration is kept");
                tracing::error!(path = %self.path.display(), "reload ({why}) refused: {msg}");
                return Err(msg);
            }
        };
        let needs_restart = needs_restart(&self.current, &new);
        let ids: Vec<&str> = new.stations.iter().map(|s| s.id.as_str()).collect();
        let mine = self.duty.pipelines_of(&ids);
        let specs: Vec<(StationSpec, CameraEnv)> = (self.specs_of)(&new)
            .into_iter()
            .filter(|(s, _)| mine.contains(&s.id.as_str()))
            .collect();
        let stations = match &self.supervisor {
            Some(sup) => match sup.reload(specs).await {
                Ok(r) => r,
                Err(e) => {
                    let msg = format!("{e}; the running configuration is kept");
                    tracing::error!(path = %self.path.display(), "reload ({why}) refused: {msg}");
                    return Err(msg);
                }
            },
            None => Reloaded::default(),
        };
        if let Some(consumer) = &self.consumer {
            // A removed station's last marker (its open order, completed on stop) is
            // picked up before the station is dropped.
            for id in &stations.removed {
                let _ = consumer.poll_station(id).await;
            }
            consumer.set_stations(new.stations.iter().map(|s| s.id.clone()).collect());
        }
        for section in &needs_restart {
            tracing::warn!(
                path = %self.path.display(),
                "reload: [{section}] changed; it takes effect at the next restart"
            );
        }
        tracing::info!(
            path = %self.path.display(),
            revision = stations.revision,
            added = ?stations.added,
            removed = ?stations.removed,
            changed = ?stations.changed,
            unchanged = stations.unchanged.len(),
            "configuration reloaded ({why})"
        );
        // What does not need a restart is in force; the rest stays as it runs.
        self.current = Config {
            stations: new.stations,
            ..self.current.clone()
        };
        Ok(Outcome {
            stations,
            needs_restart,
        })
    }
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_sections_that_differ_need_a_restart() {
        let old = Config::default();
        assert!(needs_restart(&old, &old.clone()).is_empty());
        let mut new = old.clone();
        new.http.bind = "127.0.0.1:9999".parse().unwrap();
        new.processing.frames_per_order += 1;
        new.stations = vec![];
        assert_eq!(needs_restart(&old, &new), ["http", "processing"]);
    }
}
