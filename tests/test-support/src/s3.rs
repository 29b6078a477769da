//! A real S3 server (s3s-fs with SigV4 on 127.0.0.1) for the clients under test, and the
//! environment those clients read their credentials from.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Once;

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
