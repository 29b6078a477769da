//! Recordings uploaded to be checked (`POST /api/videos`): each is checked as
//! `orchestrator check-video` checks a file ([`crate::check_video`]), one at a time in
//! upload order, by one worker task; its progress and report are kept in memory for the
//! newest [`KEEP_JOBS`] uploads. The uploaded file and the check's frames are removed when
//! its check ends.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::check_video::{CheckError, Template};
use crate::shutdown::Stopping;

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Uploads whose state is kept (queued, running and finished together).
pub const KEEP_JOBS: usize = 32;
/// Uploads waiting for their check at most; another is refused (503).
pub const MAX_QUEUED: usize = 4;

/// The containers a check plays, by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Matroska,
    Mp4,
    MpegTs,
    Avi,
    H264,
}

impl Container {
    /// The container of a file that starts with `head` (its first 376 bytes or fewer).
    pub fn sniff(head: &[u8]) -> Option<Container> {
        if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
            Some(Container::Matroska)
        } else if head.len() >= 8 && &head[4..8] == b"ftyp" {
            Some(Container::Mp4)
        } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"AVI " {
            Some(Container::Avi)
        } else if head.len() >= 189 && head[0] == 0x47 && head[188] == 0x47 {
            Some(Container::MpegTs)
        } else if head.starts_with(&[0, 0, 0, 1]) || head.starts_with(&[0, 0, 1]) {
            Some(Container::H264)
        } else {
            None
        }
    }

    /// What the refusal of any other file names.
    pub const KNOWN: &'static str =
        "Matroska/WebM, MP4/QuickTime, MPEG-TS, AVI or a raw H.264 stream";

    pub fn extension(self) -> &'static str {
        match self {
            Container::Matroska => "mkv",
            Container::Mp4 => "mp4",
            Container::MpegTs => "ts",
            Container::Avi => "avi",
            Container::H264 => "h264",
        }
    }
}

/// Where an upload's check stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    /// No report: the file could not be played, held no slip, or the check failed.
    Failed,
}

/// One upload, as `GET /api/videos/{id}` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Job {
    pub id: String,
    pub station_id: Option<String>,
    /// The `name` the upload gave, for people.
    pub name: Option<String>,
    pub bytes: u64,
    pub status: JobStatus,
    /// Seconds of video read (1 frame/s) and orders stored so far.
    pub video_s: u64,
    pub orders_stored: usize,
    pub uploaded_unix_ms: u64,
    pub started_unix_ms: Option<u64>,
    pub finished_unix_ms: Option<u64>,
    /// When done: the report, as `check-video --json` prints it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub report: Option<serde_json::Value>,
    /// When failed: why, and its kind (`unplayable`, `no-order`, `failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub error_kind: Option<&'static str>,
}

/// Why an upload was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    UnknownStation(String),
    Busy,
}

struct Queued {
    id: String,
    file: PathBuf,
}

/// The uploads and their checks.
pub struct Videos {
    template: Template,
    /// Where uploads are written before their check.
    dir: PathBuf,
    pub max_bytes: u64,
    jobs: Mutex<VecDeque<Job>>,
    queue: mpsc::UnboundedSender<Queued>,
    next: std::sync::atomic::AtomicU64,
    /// Uploads admitted whose body is still coming: they count against [`MAX_QUEUED`].
    uploading: Arc<std::sync::atomic::AtomicUsize>,
    /// Fired on shutdown: uploads in flight end (503).
    pub stopping: Stopping,
}

/// A slot of the queue held by an upload in flight; given back when dropped.
pub struct Slot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Videos {
    /// The service and its worker, which ends when `stopping` fires (a running check is
    /// stopped: its pipeline killed, its folder removed).
    pub fn start(
        template: Template,
        dir: PathBuf,
        max_bytes: u64,
        stopping: Stopping,
    ) -> Arc<Videos> {
        let (queue, mut jobs) = mpsc::unbounded_channel::<Queued>();
        let videos = Arc::new(Videos {
            template,
            dir,
            max_bytes,
            jobs: Mutex::new(VecDeque::new()),
            queue,
            next: std::sync::atomic::AtomicU64::new(1),
            uploading: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            stopping: stopping.clone(),
        });
        let worker = videos.clone();
        tokio::spawn(async move {
            let mut stopping = stopping;
            loop {
                let job = tokio::select! {
                    j = jobs.recv() => match j { Some(j) => j, None => break },
                    _ = stopping.wait() => break,
                };
                tokio::select! {
                    _ = worker.check(&job) => {}
                    _ = stopping.wait() => {
                        worker.finish(&job.id, Err(CheckError::Failed("the orchestrator stopped".into())));
                        let _ = std::fs::remove_file(&job.file);
                        break;
                    }
                }
                let _ = std::fs::remove_file(&job.file);
            }
        });
        videos
    }

    /// A fresh upload ID and its slot in the queue (held while the body comes); refused
    /// for an unknown station or a full queue (before the body is read).
    pub fn admit(&self, station: Option<&str>) -> Result<(String, Slot), Refused> {
        if let Some(id) = station
            && !self.template.stations.iter().any(|s| s.id == id)
        {
            return Err(Refused::UnknownStation(format!(
                "station {id:?} is not in the configuration (it has {})",
                self.template
                    .stations
                    .iter()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let jobs = self.jobs.lock().unwrap();
        let queued = jobs
            .iter()
            .filter(|j| j.status == JobStatus::Queued)
            .count();
        // Counted and taken under the jobs' lock, so that two uploads cannot both take
        // the last slot.
        let uploading = self.uploading.load(std::sync::atomic::Ordering::SeqCst);
        if queued + uploading >= MAX_QUEUED {
            return Err(Refused::Busy);
        }
        self.uploading
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let slot = Slot(self.uploading.clone());
        drop(jobs);
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok((format!("v{}-{n}", unix_ms()), slot))
    }

    /// Where the upload of `id` is written.
    pub fn upload_path(&self, id: &str, container: Container) -> PathBuf {
        self.dir.join(format!("{id}.{}", container.extension()))
    }

    pub fn upload_dir(&self) -> &Path {
        &self.dir
    }

    /// Queues the check of an uploaded file; its slot passes to the queued job.
    pub fn queue(
        &self,
        slot: Slot,
        id: String,
        file: PathBuf,
        station: Option<String>,
        name: Option<String>,
        bytes: u64,
    ) -> Job {
        let job = Job {
            id: id.clone(),
            station_id: station,
            name,
            bytes,
            status: JobStatus::Queued,
            video_s: 0,
            orders_stored: 0,
            uploaded_unix_ms: unix_ms(),
            started_unix_ms: None,
            finished_unix_ms: None,
            report: None,
            error: None,
            error_kind: None,
        };
        {
            let mut jobs = self.jobs.lock().unwrap();
            jobs.push_back(job.clone());
            drop(slot);
            // The oldest finished ones go first; queued and running ones stay.
            while jobs.len() > KEEP_JOBS {
                match jobs
                    .iter()
                    .position(|j| matches!(j.status, JobStatus::Done | JobStatus::Failed))
                {
                    Some(i) => {
                        jobs.remove(i);
                    }
                    None => break,
                }
            }
        }
        if let Err(e) = self.queue.send(Queued { id, file }) {
            // The worker has ended (the orchestrator stops): nothing will check it.
            let _ = std::fs::remove_file(&e.0.file);
            self.finish(
                &e.0.id,
                Err(CheckError::Failed("the orchestrator is stopping".into())),
            );
            return self.get(&e.0.id).unwrap_or(job);
        }
        job
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        self.jobs
            .lock()
            .unwrap()
            .iter()
            .find(|j| j.id == id)
            .cloned()
    }

    /// Newest first, without their reports.
    pub fn list(&self) -> Vec<Job> {
        self.jobs
            .lock()
            .unwrap()
            .iter()
            .rev()
            .map(|j| Job {
                report: None,
                ..j.clone()
            })
            .collect()
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Job)) {
        if let Some(j) = self.jobs.lock().unwrap().iter_mut().find(|j| j.id == id) {
            f(j);
        }
    }

    async fn check(self: &Arc<Self>, job: &Queued) {
        let station = self.get(&job.id).and_then(|j| j.station_id);
        self.update(&job.id, |j| {
            j.status = JobStatus::Running;
            j.started_unix_ms = Some(unix_ms());
        });
        let root = self.dir.join(format!("{}.check", job.id));
        let check = self
            .template
            .check(job.file.clone(), station.as_deref(), None, root, false);
        let mut check = match check {
            Ok(c) => c,
            Err(e) => return self.finish(&job.id, Err(CheckError::Failed(e))),
        };
        let me = Arc::downgrade(self);
        let id = job.id.clone();
        check.on_progress = Some(Arc::new(move |video_s, stored| {
            if let Some(me) = me.upgrade() {
                me.update(&id, |j| {
                    j.video_s = video_s;
                    j.orders_stored = stored;
                });
            }
        }));
        tracing::info!(video = %job.id, "checking an uploaded recording");
        let out = check.run().await;
        self.finish(&job.id, out.map(|r| crate::check_video::to_json(&r)));
    }

    fn finish(&self, id: &str, out: Result<serde_json::Value, CheckError>) {
        match &out {
            Ok(_) => tracing::info!(video = %id, "uploaded recording checked"),
            Err(e) => tracing::warn!(video = %id, "uploaded recording not checked: {e}"),
        }
        self.update(id, |j| {
            j.finished_unix_ms = Some(unix_ms());
            match out {
                Ok(report) => {
                    j.status = JobStatus::Done;
                    j.report = Some(report);
                }
                Err(e) => {
                    j.status = JobStatus::Failed;
                    j.error_kind = Some(match e {
                        CheckError::Unplayable(_) => "unplayable",
                        CheckError::NoOrder(_) => "no-order",
                        CheckError::Failed(_) => "failed",
                    });
                    j.error = Some(e.to_string());
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_told_by_their_first_bytes() {
        assert_eq!(
            Container::sniff(&[0x1A, 0x45, 0xDF, 0xA3, 1]),
            Some(Container::Matroska)
        );
        assert_eq!(
            Container::sniff(b"\0\0\0\x20ftypisom"),
            Some(Container::Mp4)
        );
        assert_eq!(
            Container::sniff(b"RIFF\0\0\0\0AVI LIST"),
            Some(Container::Avi)
        );
        let mut ts = vec![0u8; 376];
        ts[0] = 0x47;
        ts[188] = 0x47;
        assert_eq!(Container::sniff(&ts), Some(Container::MpegTs));
        assert_eq!(Container::sniff(&[0, 0, 0, 1, 0x67]), Some(Container::H264));
        assert_eq!(Container::sniff(b"<html>"), None);
        assert_eq!(
            Container::sniff(&[0x47; 10]),
            None,
            "one TS sync byte is not enough"
        );
        assert_eq!(Container::sniff(&[]), None);
    }
}
