//! A real S3 server (s3s-fs with SigV4 on 127.0.0.1) for the clients under test, and the
//! environment those clients read their credentials from.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use oa_s3server::{Options, S3Server};

/// The key pair the tests' server checks and their clients sign with.
pub const ACCESS_KEY: &str = "oa-test-access";
pub const SECRET_KEY: &str = "oa-test-secret-key";
/// The bucket the tests store frames in.
pub const BUCKET: &str = "frames";

/// Once per process: the AWS SDK's environment credentials set to [`ACCESS_KEY`] and
/// [`SECRET_KEY`] (no session token, no profile, no EC2 metadata look-up), GStreamer
/// initialised and `register` called (e.g. a plugin's `plugin_register_static`).
pub fn init_with_credentials(register: fn() -> Result<(), gst::glib::BoolError>) {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // SAFETY: Once holds every other caller until the variables are set, and the tests
        // that read them call this first.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
            std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
            std::env::remove_var("AWS_SESSION_TOKEN");
            std::env::remove_var("AWS_PROFILE");
        }
        gst::init().unwrap();
        register().unwrap();
    });
}

/// A folder for one test's server under the system's temp dir, `oa-{tag}-{pid}-{n}`: unique
/// per process and call, and empty (whatever an earlier run left there is removed).
pub fn scratch_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "oa-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// An S3 server with its buckets, and the runtime it runs on (dropped after it). Derefs to
/// the [`S3Server`].
pub struct TestS3 {
    server: S3Server,
    rt: tokio::runtime::Runtime,
}

impl TestS3 {
    /// Serves `root` with `buckets`, signed with the given keys, on a runtime of its own.
    pub fn start(
        root: impl Into<PathBuf>,
        access_key: &str,
        secret_key: &str,
        buckets: &[&str],
    ) -> TestS3 {
        TestS3::start_on(
            tokio::runtime::Runtime::new().unwrap(),
            root,
            access_key,
            secret_key,
            buckets,
        )
    }

    /// As [`TestS3::start`], on `rt` (e.g. one with workers of its own for a benchmark).
    pub fn start_on(
        rt: tokio::runtime::Runtime,
        root: impl Into<PathBuf>,
        access_key: &str,
        secret_key: &str,
        buckets: &[&str],
    ) -> TestS3 {
        let server = rt
            .block_on(S3Server::start(Options {
                buckets: buckets.iter().map(|b| (*b).to_owned()).collect(),
                ..Options::new(root, access_key, secret_key)
            }))
            .expect("the S3 server starts");
        TestS3 { server, rt }
    }

    /// Shuts the server down gracefully ([`S3Server::shutdown`]).
    pub fn shutdown(self) {
        self.rt.block_on(self.server.shutdown());
    }

    /// Runs `f` (e.g. [`S3Server::stop`]) on the server's runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

impl Deref for TestS3 {
    type Target = S3Server;

    fn deref(&self) -> &S3Server {
        &self.server
    }
}

/// A [`TestS3`] serving [`BUCKET`] from a [`scratch_dir`] of its own, stopped and its folder
/// removed on drop. Derefs to the [`TestS3`] (and so to the [`S3Server`]).
pub struct ScratchS3(TestS3);

impl ScratchS3 {
    /// Starts a server in a new [`scratch_dir`]`(tag)`, checking [`ACCESS_KEY`] and
    /// [`SECRET_KEY`].
    pub fn start(tag: &str) -> ScratchS3 {
        ScratchS3::start_with_secret(tag, SECRET_KEY)
    }

    /// As [`ScratchS3::start`], checking `secret_key` instead (e.g. one the clients under
    /// test do not sign with).
    pub fn start_with_secret(tag: &str, secret_key: &str) -> ScratchS3 {
        ScratchS3(TestS3::start(
            scratch_dir(tag),
            ACCESS_KEY,
            secret_key,
            &[BUCKET],
        ))
    }

    /// Stops serving ([`S3Server::stop`]): the stored objects stay.
    pub fn stop(&self) {
        self.0.block_on(self.0.stop());
    }

    /// Serves again after [`ScratchS3::stop`] ([`S3Server::restart`]).
    pub fn restart(&self) {
        self.0
            .block_on(self.0.restart())
            .expect("the S3 server restarts");
    }
}

impl Deref for ScratchS3 {
    type Target = TestS3;

    fn deref(&self) -> &TestS3 {
        &self.0
    }
}

impl Drop for ScratchS3 {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(self.0.root());
    }
}
