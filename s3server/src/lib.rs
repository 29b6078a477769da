//! An S3 endpoint backed by a directory: `s3s-fs` (buckets are directories under a root)
//! served over HTTP with SigV4 authentication against one key pair. The orchestrator
//! embeds it (`storage.embedded_root`) so that a single machine needs no MinIO; the
//! `oa-s3-server` binary serves it as a process; tests run against it.
//!
//! The server runs on the caller's tokio runtime: [`S3Server::start`] spawns its accept
//! loop there and [`S3Server::shutdown`] stops accepting and lets in-flight requests
//! finish. Sync code drives both through a runtime of its own:
//!
//! ```no_run
//! use oa_s3server::{Options, S3Server};
//! let rt = tokio::runtime::Runtime::new().unwrap();
//! let server = rt
//!     .block_on(S3Server::start(Options::new("/tmp/s3", "access", "secret-key")))
//!     .unwrap();
//! println!("{}", server.endpoint());
//! rt.block_on(server.shutdown());
//! ```
//!
//! Beyond a plain `s3s-fs`, conditional creation (`If-None-Match: *`) is atomic with
//! respect to other conditional PUTs, which `s3s-fs` checks and writes in two steps: the
//! orchestrator's claims rely on it (see docs/architecture.md, storage contract).
//!
//! With the `testing` feature, tests also get:
//! * an outage they control: `S3Server::stop` closes the listener *and* drops every open
//!   connection, so clients see refused connections and reset requests, and
//!   `S3Server::restart` brings the same port back with the same data;
//! * the order in which PUTs *completed* (`S3Server::put_log`), so that "the marker is
//!   stored after every frame of its order" is checked without relying on timing.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
#[cfg(any(test, feature = "testing"))]
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3, S3Request, S3Response, S3Result};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

mod listing;
mod sidecars;
#[cfg(test)]
mod tests;

/// What [`S3Server::start`] serves, and how.
///
/// No `Debug`: it holds the secret key.
#[derive(Clone)]
pub struct Options {
    /// Directory holding the buckets; created if missing.
    pub root: PathBuf,
    /// Where to listen; port 0 picks a free port (see [`S3Server::addr`]).
    pub addr: SocketAddr,
    /// Requests must be SigV4-signed with this key pair.
    pub access_key: String,
    pub secret_key: String,
    /// Buckets created at start (existing ones are kept).
    pub buckets: Vec<String>,
    /// How long [`S3Server::shutdown`] waits for in-flight requests before dropping them.
    pub drain_timeout: Duration,
    /// Keep the log of completed PUTs that tests read (`S3Server::put_log`, feature
    /// `testing`). It grows with every PUT, so a long-running server turns it off: the
    /// workspace builds the binaries with the tests' features.
    pub record_puts: bool,
}

impl Options {
    /// `root` on a free loopback port, no buckets, 5 s to drain at shutdown.
    pub fn new(
        root: impl Into<PathBuf>,
        access_key: impl Into<String>,
        secret_key: impl Into<String>,
    ) -> Options {
        Options {
            root: root.into(),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            buckets: Vec::new(),
            drain_timeout: Duration::from_secs(5),
            record_puts: true,
        }
    }
}

/// One successful PutObject, in completion order.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutRecord {
    /// 0-based position in the log.
    pub seq: u64,
    pub bucket: String,
    pub key: String,
}

#[cfg(any(test, feature = "testing"))]
type PutLog = Arc<Mutex<Vec<PutRecord>>>;

/// `s3s_fs::FileSystem` with atomic conditional PUTs (and, for tests, a log of PUTs).
struct Store {
    fs: s3s_fs::FileSystem,
    /// The directory holding the buckets (what `fs` serves).
    root: PathBuf,
    /// Serialises conditional PUTs so that check-then-write cannot interleave between
    /// two claimants of the same key.
    conditional: tokio::sync::Mutex<()>,
    #[cfg(any(test, feature = "testing"))]
    log: Option<PutLog>,
}

#[async_trait::async_trait]
impl S3 for Store {
    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        #[cfg(any(test, feature = "testing"))]
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let conditional = req.input.if_none_match.is_some() || req.input.if_match.is_some();
        let out = if conditional {
            let _guard = self.conditional.lock().await;
            self.fs.put_object(req).await?
        } else {
            self.fs.put_object(req).await?
        };
        // Recorded after the object is on disk and before the client sees the response,
        // so a PUT issued after another's response is always logged after it.
        #[cfg(any(test, feature = "testing"))]
        if let Some(log) = &self.log {
            let mut log = log.lock().unwrap();
            let seq = log.len() as u64;
            log.push(PutRecord { seq, bucket, key });
        }
        Ok(out)
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.fs.create_bucket(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.fs.delete_bucket(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.fs.list_buckets(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.fs.get_bucket_location(req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.fs.get_object(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.fs.head_object(req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.fs.list_objects(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = &req.input;
        let bucket_root = self.root.join(&input.bucket);
        // With a delimiter (rare: one LIST per reused order number) and for the errors
        // of a missing bucket, s3s-fs answers as it does.
        if input.delimiter.is_some() || !bucket_root.is_dir() {
            return self.fs.list_objects_v2(req).await;
        }
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let prefix = prefix.trim_start_matches('/').to_owned();
        let max_keys = input.max_keys.unwrap_or(1000).max(0);
        let start_after = match (&input.continuation_token, &input.start_after) {
            (Some(ct), Some(sa)) => Some(if ct >= sa { ct.clone() } else { sa.clone() }),
            (Some(ct), None) => Some(ct.clone()),
            (None, Some(sa)) => Some(sa.clone()),
            (None, None) => None,
        };
        let max = usize::try_from(max_keys).unwrap_or(1000);
        let (entries, more) = tokio::task::spawn_blocking(move || {
            listing::page(&bucket_root, &prefix, start_after.as_deref(), max)
        })
        .await
        .map_err(|e| s3s::s3_error!(InternalError, "listing task: {e}"))?
        .map_err(|e| s3s::s3_error!(InternalError, "listing: {e}"))?;
        let is_truncated = max > 0 && more;
        let next_continuation_token = if is_truncated {
            entries.last().map(|e| e.key.clone())
        } else {
            None
        };
        let key_count = i32::try_from(entries.len()).unwrap_or(i32::MAX);
        let contents: Vec<Object> = entries
            .into_iter()
            .map(|e| Object {
                key: Some(e.key),
                last_modified: Some(Timestamp::from(e.modified)),
                size: Some(i64::try_from(e.size).unwrap_or(i64::MAX)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListObjectsV2Output {
            key_count: Some(key_count),
            max_keys: Some(max_keys),
            is_truncated: Some(is_truncated),
            contents: (!contents.is_empty()).then_some(contents),
            continuation_token: input.continuation_token,
            next_continuation_token,
            encoding_type: input.encoding_type,
            name: Some(input.bucket),
            prefix: input.prefix,
            start_after: input.start_after,
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let out = self.fs.delete_object(req).await?;
        sidecars::remove(&self.root, &bucket, &key);
        Ok(out)
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let bucket = req.input.bucket.clone();
        let out = self.fs.delete_objects(req).await?;
        for d in out.output.deleted.iter().flatten() {
            if let Some(key) = &d.key {
                sidecars::remove(&self.root, &bucket, key);
            }
        }
        Ok(out)
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.fs.copy_object(req).await
    }
}

/// How the accept loop ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Halt {
    /// Stop accepting, let in-flight requests finish (bounded), close idle connections.
    Drain(Duration),
    /// Drop the listener and every connection at once, as a crash would.
    Abort,
}

/// The accept loop while serving. Dropping it (with the server) halts the loop as
/// [`Halt::Abort`] does.
struct Serving {
    halt: oneshot::Sender<Halt>,
    task: JoinHandle<()>,
}

/// An S3 endpoint backed by a directory, served on the caller's tokio runtime.
///
/// Dropping it drops the listener and every open connection without waiting; call
/// [`Self::shutdown`] to let in-flight requests finish.
pub struct S3Server {
    root: PathBuf,
    addr: SocketAddr,
    service: S3Service,
    drain_timeout: Duration,
    serving: Mutex<Option<Serving>>,
    #[cfg(any(test, feature = "testing"))]
    log: PutLog,
}

impl S3Server {
    /// Binds `options.addr`, creates the buckets and starts serving on the current tokio
    /// runtime (which must keep running while the server is used: a multi-thread runtime,
    /// or a current-thread one that the caller keeps driving).
    pub async fn start(options: Options) -> io::Result<S3Server> {
        let Options {
            root,
            addr,
            access_key,
            secret_key,
            buckets,
            drain_timeout,
            record_puts,
        } = options;
        #[cfg(not(any(test, feature = "testing")))]
        let _ = record_puts;
        std::fs::create_dir_all(&root)?;
        // In the background: a store of months holds millions of them, in one folder.
        let sweep_root = root.clone();
        tokio::task::spawn_blocking(move || match sidecars::sweep(&sweep_root) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                root = %sweep_root.display(),
                "removed {n} side file(s) of objects deleted before this version removed them"
            ),
            Err(e) => tracing::warn!(root = %sweep_root.display(), "cannot sweep side files: {e}"),
        });
        #[cfg(any(test, feature = "testing"))]
        let log = PutLog::default();
        let fs = s3s_fs::FileSystem::new(&root).map_err(|e| io::Error::other(format!("{e:?}")))?;
        let mut builder = S3ServiceBuilder::new(Store {
            fs,
            root: root.clone(),
            conditional: tokio::sync::Mutex::new(()),
            #[cfg(any(test, feature = "testing"))]
            log: record_puts.then(|| log.clone()),
        });
        builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
        let listener = TcpListener::bind(addr).await?;
        let server = S3Server {
            root,
            addr: listener.local_addr()?,
            service: builder.build(),
            drain_timeout,
            serving: Mutex::new(None),
            #[cfg(any(test, feature = "testing"))]
            log,
        };
        for bucket in &buckets {
            server.create_bucket(bucket)?;
        }
        server.serve(listener);
        tracing::debug!(endpoint = %server.endpoint(), root = %server.root.display(), "serving S3");
        Ok(server)
    }

    fn serve(&self, listener: TcpListener) {
        let (halt, halted) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, self.service.clone(), halted));
        *self.serving.lock().unwrap() = Some(Serving { halt, task });
    }

    /// Halts the accept loop and waits for it; false if it was not running.
    async fn halt(&self, how: Halt) -> bool {
        // Taken out before awaiting: the std mutex is never held across an await.
        let Some(serving) = self.serving.lock().unwrap().take() else {
            return false;
        };
        let _ = serving.halt.send(how);
        let _ = serving.task.await;
        true
    }

    /// Stops accepting connections, lets the requests in flight finish (up to
    /// [`Options::drain_timeout`], then drops them) and closes every connection.
    pub async fn shutdown(self) {
        self.halt(Halt::Drain(self.drain_timeout)).await;
    }

    /// `http://HOST:PORT`, with the port actually bound.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates a bucket (a directory under the root); succeeds if it exists.
    pub fn create_bucket(&self, name: &str) -> io::Result<()> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !name.starts_with('.');
        if !valid {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid bucket name {name:?}"),
            ));
        }
        std::fs::create_dir_all(self.root.join(name))
    }

    /// Path of an object on disk (whether or not it exists).
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.join(bucket).join(key)
    }

    /// Body of a stored object, read from disk.
    pub fn read_object(&self, bucket: &str, key: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.object_path(bucket, key))
    }
}

/// Outage hooks and the PUT log, for tests.
#[cfg(any(test, feature = "testing"))]
impl S3Server {
    /// Whether the server is listening.
    pub fn is_running(&self) -> bool {
        self.serving.lock().unwrap().is_some()
    }

    /// Closes the listener and drops every open connection, mid-request or not; returns
    /// once both are done. Data and the PUT log are kept for [`Self::restart`].
    pub async fn stop(&self) {
        self.halt(Halt::Abort).await;
    }

    /// Listens again on the same port, serving the same data.
    pub async fn restart(&self) -> io::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        // Rebinding can race the kernel releasing the old socket for a moment.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e)
                    if e.kind() == io::ErrorKind::AddrInUse
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        };
        self.serve(listener);
        Ok(())
    }

    /// Keys of successful PutObject calls, in completion order.
    pub fn put_log(&self) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter().map(|r| r.key.clone()).collect()
    }

    /// Successful PutObject calls with their bucket and sequence number.
    pub fn put_records(&self) -> Vec<PutRecord> {
        self.log.lock().unwrap().clone()
    }
}

async fn accept_loop(
    listener: TcpListener,
    service: S3Service,
    mut halted: oneshot::Receiver<Halt>,
) {
    let http = ConnBuilder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let how = loop {
        tokio::select! {
            res = listener.accept() => match res {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    let conn = http
                        .serve_connection(TokioIo::new(socket), service.clone())
                        .into_owned();
                    let conn = graceful.watch(conn);
                    connections.spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(%peer, "S3 connection ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    // Out of descriptors and the like: keep serving, without spinning.
                    tracing::warn!("S3 server cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reaps finished connections so the set stays as large as the open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            // A dropped sender means the server itself was dropped.
            how = &mut halted => break how.unwrap_or(Halt::Abort),
        }
    };
    drop(listener);
    if let Halt::Drain(limit) = how
        && tokio::time::timeout(limit, graceful.shutdown())
            .await
            .is_err()
    {
        tracing::warn!("S3 requests still in flight after {limit:?}: dropped");
    }
    // Aborts what is left and waits until every connection is closed.
    connections.shutdown().await;
}
