//! Support for the end-to-end tests: a loopback RTSP camera showing order slips from a
//! subtitle script, station pipelines started with `gst-launch-1.0 -e` from the files in
//! `pipelines/`, and a reader for what the S3 server stored.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gst_rtsp_server::prelude::*;
use oa_contract::{LaunchMessage, Manifest, ParsedKey, parse_key, parse_launch_line};

pub const ACCESS_KEY: &str = "e2e-access";
pub const SECRET_KEY: &str = "e2e-secret-key-0123456789";
pub const BUCKET: &str = "frames";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Folder holding `libgstorderaccuracy.so`, built by `cargo build --release`.
pub fn plugin_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("release");
    assert!(
        dir.join("libgstorderaccuracy.so").exists(),
        "{} has no libgstorderaccuracy.so: run `cargo build --release` (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// A temporary folder removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "oa-e2e-{tag}-{}-{}",
            std::process::id(),
            oa_now_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn oa_now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// One slip on screen: `text` from `start_s` to `end_s` seconds.
pub struct Slip<'a> {
    pub start_s: f64,
    pub end_s: f64,
    pub text: &'a str,
}

fn srt_time(s: f64) -> String {
    let ms = (s * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02},{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Writes a SubRip script that `textoverlay` renders as the order slips.
pub fn write_srt(path: &Path, slips: &[Slip]) {
    let mut f = std::fs::File::create(path).unwrap();
    for (i, s) in slips.iter().enumerate() {
        writeln!(
            f,
            "{}\n{} --> {}\n{}\n",
            i + 1,
            srt_time(s.start_s),
            srt_time(s.end_s),
            s.text
        )
        .unwrap();
    }
}

/// An RTSP camera on 127.0.0.1: a white 1280x720 scene with the slips of a subtitle
/// script, H.264, served by gst-rtsp-server from its own GLib main loop.
pub struct RtspCamera {
    url: String,
    main_loop: glib::MainLoop,
    thread: Option<std::thread::JoinHandle<Result<(), glib::BoolError>>>,
    /// The server and its listening source, in the loop's own context.
    listening: Option<(
        glib::MainContext,
        glib::SourceId,
        gst_rtsp_server::RTSPServer,
    )>,
}

impl RtspCamera {
    pub fn serve(srt: &Path, fps: u32) -> RtspCamera {
        gst::init().unwrap();
        let ctx = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&ctx), false);
        let server = gst_rtsp_server::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service("0");
        let factory = gst_rtsp_server::RTSPMediaFactory::new();
        factory.set_launch(&format!(
            "( filesrc location=\"{}\" ! subparse ! slip.text_sink \
               videotestsrc is-live=true pattern=white \
               ! video/x-raw,width=1280,height=720,framerate={fps}/1 \
               ! textoverlay name=slip font-desc=\"DejaVu Sans Bold 40\" valignment=top \
                 halignment=left xpad=80 ypad=60 color=0xff000000 shaded-background=false \
                 wait-text=false \
               ! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast \
                 key-int-max={fps} bitrate=2000 \
               ! rtph264pay name=pay0 pt=96 config-interval=1 )",
            srt.display()
        ));
        factory.set_shared(true);
        server
            .mount_points()
            .unwrap()
            .add_factory("/station", factory);
        let source = server.attach(Some(&ctx)).expect("RTSP server attaches");
        let port = server.bound_port();
        assert!(port > 0, "RTSP server did not bind");
        let (loop_ctx, loop2) = (ctx.clone(), main_loop.clone());
        let thread = std::thread::spawn(move || loop_ctx.with_thread_default(|| loop2.run()));
        RtspCamera {
            url: format!("rtsp://127.0.0.1:{port}/station"),
            main_loop,
            thread: Some(thread),
            listening: Some((ctx, source, server)),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for RtspCamera {
    fn drop(&mut self) {
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Stop listening before the server goes away (the source lives in our own context,
        // not the default one that SourceId::remove looks in).
        if let Some((ctx, source, _server)) = self.listening.take()
            && let Some(source) = ctx.find_source_by_id(&source)
        {
            source.destroy();
        }
    }
}

/// Fills a file of `pipelines/` with the given values.
pub fn station_pipeline(file: &str, values: &[(&'static str, String)]) -> String {
    let template = std::fs::read_to_string(repo_root().join("pipelines").join(file)).unwrap();
    let values: BTreeMap<&str, String> = values.iter().cloned().collect();
    oa_contract::render_pipeline(&template, &values).unwrap()
}

/// A file of `pipelines/` as station `station_1` reading `source`, the full frame as
/// ROI, orders ending after 10 s without a slip, frames stored in [`BUCKET`] at `endpoint`
/// (no prefix) by pipeline instance `instance`.
pub fn station_1_pipeline(
    file: &str,
    source: String,
    endpoint: String,
    instance: String,
) -> String {
    station_pipeline(
        file,
        &[
            ("source", source),
            ("station_id", "station_1".into()),
            ("roi", String::new()),
            ("idle_timeout_ms", "10000".into()),
            ("endpoint", endpoint),
            ("bucket", BUCKET.into()),
            ("prefix", String::new()),
            ("pipeline_instance", instance),
            ("reuse_after_s", "1800".into()),
        ],
    )
}

/// A `gst-launch-1.0 -e` child with its output in a log file.
pub struct Launch {
    child: Child,
    log: PathBuf,
    /// Where stdout goes when the bus messages are printed (`-m`).
    messages: Option<PathBuf>,
}

impl Launch {
    pub fn start(pipeline: &str, log: PathBuf) -> Launch {
        Launch::spawn(pipeline, log, None)
    }

    /// As the orchestrator runs a station: `-m` under `LC_ALL=C`, with stdout (the bus
    /// messages) in `messages`, apart from the debug log so that no line is split by it.
    pub fn start_with_messages(pipeline: &str, log: PathBuf, messages: PathBuf) -> Launch {
        Launch::spawn(pipeline, log, Some(messages))
    }

    fn spawn(pipeline: &str, log: PathBuf, messages: Option<PathBuf>) -> Launch {
        let mut out = std::fs::File::create(&log).unwrap();
        writeln!(out, "pipeline: {pipeline}").unwrap();
        let stdout = match &messages {
            Some(path) => std::fs::File::create(path).unwrap(),
            None => out.try_clone().unwrap(),
        };
        let mut command = Command::new("gst-launch-1.0");
        command.arg("-e");
        if messages.is_some() {
            command.arg("-m").env("LC_ALL", "C");
        }
        let child = command
            .args(oa_contract::pipeline_args(pipeline))
            .env("GST_PLUGIN_PATH", plugin_dir())
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env(
                "GST_DEBUG",
                std::env::var("GST_DEBUG")
                    .unwrap_or("ocrsegment:4,eosmarker:4,minioframesink:4".into()),
            )
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(out)
            .spawn()
            .expect("gst-launch-1.0 starts (apt package gstreamer1.0-tools)");
        Launch {
            child,
            log,
            messages,
        }
    }

    /// The bus messages printed so far, read with the orchestrator's own parser (a line
    /// still being written is left for the next call).
    pub fn messages(&self) -> Vec<LaunchMessage> {
        let path = self
            .messages
            .as_ref()
            .expect("started with start_with_messages");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete.lines().filter_map(parse_launch_line).collect()
    }

    pub fn interrupt(&self) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
    }

    /// Waits for the child to exit; kills it and fails past `limit`.
    pub fn wait(mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "gst-launch-1.0 did not exit within {limit:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fails the test with the log if the child already exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "gst-launch-1.0 exited early ({status}); log:\n{}",
                self.log_text()
            );
        }
    }

    pub fn log_text(&self) -> String {
        let mut text = std::fs::read_to_string(&self.log).unwrap_or_default();
        if let Some(messages) = &self.messages {
            text.push_str("\n-- stdout:\n");
            text.push_str(&std::fs::read_to_string(messages).unwrap_or_default());
        }
        text
    }
}

impl Drop for Launch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One order as stored: its manifest and the frame keys present in the bucket.
#[derive(Debug)]
pub struct StoredOrder {
    pub manifest: Option<Manifest>,
    pub frame_keys: Vec<String>,
}

/// Everything under `bucket` of the server's root, grouped by order; panics on a key
/// that is not part of the contract.
pub fn stored_orders(bucket_dir: &Path) -> BTreeMap<String, StoredOrder> {
    let mut orders: BTreeMap<String, StoredOrder> = BTreeMap::new();
    let mut stack = vec![bucket_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let key = path
                .strip_prefix(bucket_dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            // s3s-fs keeps its own bookkeeping files next to objects.
            if key.starts_with('.') || key.contains("/.") {
                continue;
            }
            // The station index lists orders; it is checked as a contract key of its
            // own and holds no frames.
            if oa_contract::parse_index_key("", &key).is_some() {
                continue;
            }
            match parse_key("", &key) {
                Ok(ParsedKey::Frame { order, .. }) => orders
                    .entry(order)
                    .or_insert_with(|| StoredOrder {
                        manifest: None,
                        frame_keys: vec![],
                    })
                    .frame_keys
                    .push(key),
                Ok(ParsedKey::Marker { order, .. }) => {
                    let body = std::fs::read(&path).unwrap();
                    let manifest = Manifest::from_json(&body)
                        .unwrap_or_else(|e| panic!("bad manifest {key}: {e}"));
                    orders
                        .entry(order)
                        .or_insert_with(|| StoredOrder {
                            manifest: None,
                            frame_keys: vec![],
                        })
                        .manifest = Some(manifest);
                }
                Err(e) => panic!("{key} is not a contract key: {e}"),
            }
        }
    }
    for o in orders.values_mut() {
        o.frame_keys.sort();
    }
    orders
}
