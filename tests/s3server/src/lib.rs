//! A real S3 endpoint for tests and demos: `s3s-fs` (buckets are directories under a
//! root) served over HTTP on loopback, with SigV4 authentication against one key pair.
//!
//! Tests need three things a plain `s3s-fs` does not give them:
//! * an outage they control: [`S3Server::stop`] closes the listener *and* drops every open
//!   connection, so clients see refused connections and reset requests, and
//!   [`S3Server::restart`] brings the same port back with the same data;
//! * the order in which PUTs *completed* ([`S3Server::put_log`]), so that "the marker is
//!   stored after every frame of its order" is checked without relying on timing;
//! * conditional creation (`If-None-Match: *`) that is atomic with respect to other
//!   conditional PUTs, which `s3s-fs` checks and writes in two steps.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3, S3Request, S3Response, S3Result};
use tokio::runtime::Runtime;
use tokio::sync::watch;

/// One successful PutObject, in completion order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutRecord {
    /// 0-based position in the log.
    pub seq: u64,
    pub bucket: String,
    pub key: String,
}

/// `s3s_fs::FileSystem` plus a log of completed PUTs.
struct RecordingFs {
    fs: s3s_fs::FileSystem,
    log: Arc<Mutex<Vec<PutRecord>>>,
    /// Serialises conditional PUTs so that check-then-write cannot interleave between
    /// two claimants of the same key.
    conditional: tokio::sync::Mutex<()>,
}

impl RecordingFs {
    fn record(&self, bucket: String, key: String) {
        let mut log = self.log.lock().unwrap();
        let seq = log.len() as u64;
        log.push(PutRecord { seq, bucket, key });
    }
}

#[async_trait::async_trait]
impl S3 for RecordingFs {
    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let bucket = req.input.bucket.clone();
        let key = req.input.key.clone();
        let conditional = req.input.if_none_match.is_some() || req.input.if_match.is_some();
        let out = if conditional {
            let _guard = self.conditional.lock().await;
            self.fs.put_object(req).await?
        } else {
            self.fs.put_object(req).await?
        };
        // Recorded after the object is on disk and before the client sees the response,
        // so a PUT issued after another's response is always logged after it.
        self.record(bucket, key);
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
        self.fs.list_objects_v2(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.fs.delete_object(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.fs.delete_objects(req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.fs.copy_object(req).await
    }
}

/// The listener and its connections, while serving.
struct Serving {
    shutdown: watch::Sender<bool>,
    /// Signalled by the accept loop once the listener is closed.
    closed: std::sync::mpsc::Receiver<()>,
}

/// An S3 endpoint on `127.0.0.1` backed by a directory.
pub struct S3Server {
    runtime: Option<Runtime>,
    root: PathBuf,
    addr: SocketAddr,
    service: S3Service,
    log: Arc<Mutex<Vec<PutRecord>>>,
    connections: Arc<AtomicUsize>,
    serving: Mutex<Option<Serving>>,
}

impl S3Server {
    /// Serves `root` on an ephemeral loopback port; requests must be signed with
    /// `access_key` / `secret_key`.
    pub fn start(root: &Path, access_key: &str, secret_key: &str) -> io::Result<S3Server> {
        Self::start_on(root, "127.0.0.1:0".parse().unwrap(), access_key, secret_key)
    }

    /// Serves `root` on `addr` (port 0 picks a free port).
    pub fn start_on(
        root: &Path,
        addr: SocketAddr,
        access_key: &str,
        secret_key: &str,
    ) -> io::Result<S3Server> {
        std::fs::create_dir_all(root)?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| io::Error::other(format!("{e:?}")))?;
        let mut builder = S3ServiceBuilder::new(RecordingFs {
            fs,
            log: log.clone(),
            conditional: tokio::sync::Mutex::new(()),
        });
        builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
        let service = builder.build();

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("oa-s3-server")
            .enable_all()
            .build()?;

        let listener = std::net::TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let server = S3Server {
            runtime: Some(runtime),
            root: root.to_owned(),
            addr,
            service,
            log,
            connections: Arc::new(AtomicUsize::new(0)),
            serving: Mutex::new(None),
        };
        server.serve(listener)?;
        Ok(server)
    }

    fn runtime(&self) -> &Runtime {
        self.runtime.as_ref().expect("runtime lives until drop")
    }

    fn serve(&self, listener: std::net::TcpListener) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        let listener = {
            let _enter = self.runtime().enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let (shutdown, mut shutdown_rx) = watch::channel(false);
        let (closed_tx, closed) = std::sync::mpsc::channel();
        let service = self.service.clone();
        let connections = self.connections.clone();
        self.runtime().spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let socket = tokio::select! {
                    res = listener.accept() => match res {
                        Ok((socket, _)) => socket,
                        // Running out of descriptors and the like: keep serving.
                        Err(_) => continue,
                    },
                    _ = shutdown_rx.wait_for(|stop| *stop) => break,
                };
                let _ = socket.set_nodelay(true);
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                let mut stop = shutdown_rx.clone();
                let connections = connections.clone();
                connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    // Dropping the connection mid-request is the point: clients must see
                    // the outage, not a graceful drain.
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.wait_for(|stop| *stop) => {}
                    }
                    connections.fetch_sub(1, Ordering::SeqCst);
                });
            }
            drop(listener);
            let _ = closed_tx.send(());
        });
        *self.serving.lock().unwrap() = Some(Serving { shutdown, closed });
        Ok(())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the server is listening.
    pub fn is_running(&self) -> bool {
        self.serving.lock().unwrap().is_some()
    }

    /// Stops listening and drops every open connection; returns once both are done
    /// (bounded to a few seconds). Data and the PUT log are kept for [`Self::restart`].
    pub fn stop(&self) {
        let Some(serving) = self.serving.lock().unwrap().take() else {
            return;
        };
        let _ = serving.shutdown.send(true);
        let _ = serving.closed.recv_timeout(Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.connections.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Listens again on the same port, serving the same data.
    pub fn restart(&self) -> io::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        // Rebinding can race the kernel releasing the old socket for a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match std::net::TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        };
        self.serve(listener)
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

    /// Keys of successful PutObject calls, in completion order.
    pub fn put_log(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.key.clone())
            .collect()
    }

    /// Successful PutObject calls with their bucket and sequence number.
    pub fn put_records(&self) -> Vec<PutRecord> {
        self.log.lock().unwrap().clone()
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

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
        // The owner may be inside another runtime, where a blocking shutdown panics.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
