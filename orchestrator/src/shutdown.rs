//! Stopping: one trigger, many listeners. The binary triggers it on SIGINT or SIGTERM;
//! the supervisor, the consumer and the HTTP server each wait on a listener and finish
//! what they hold (pipelines get EOS, in-flight orders and requests complete).
//! SIGHUP is another matter ([`Hangups`]): it asks for the orders file to be reloaded.

use tokio::sync::watch;

/// The trigger; dropping it also counts as a stop.
#[derive(Debug)]
pub struct Shutdown(watch::Sender<bool>);

/// A listener; cheap to clone.
#[derive(Debug, Clone)]
pub struct Stopping(watch::Receiver<bool>);

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown(watch::channel(false).0)
    }

    pub fn listener(&self) -> Stopping {
        Stopping(self.0.subscribe())
    }

    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Stopping {
    /// Whether the stop was triggered.
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the stop is triggered or its trigger is gone.
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }
}

/// A listener from a bare watch channel (tests and embedders that own one).
impl From<watch::Receiver<bool>> for Stopping {
    fn from(rx: watch::Receiver<bool>) -> Stopping {
        Stopping(rx)
    }
}

/// SIGINT and SIGTERM, caught from the moment this is made (not from the first wait).
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next one and names it.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// SIGHUP, caught from the moment this is made (from then on it no longer ends the
/// process): a request to reload the orders file. Separate from [`Signals`], which it
/// leaves as it is.
pub struct Hangups(tokio::signal::unix::Signal);

impl Hangups {
    pub fn new() -> std::io::Result<Hangups> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Hangups(signal(SignalKind::hangup())?))
    }

    /// Waits for the next SIGHUP; `None` once no more can come.
    pub async fn recv(&mut self) -> Option<()> {
        self.0.recv().await
    }
}
