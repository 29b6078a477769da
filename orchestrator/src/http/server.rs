//! The connection server under the router, for HTTP and HTTPS alike: hyper's HTTP/1.1
//! with a header-read timeout (a client that trickles its headers is dropped), TLS
//! handshakes bounded, and a graceful stop that answers the requests in flight.

use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::logging::Throttle;
use crate::shutdown::Stopping;

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Nor one that has not sent its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` (over TLS with `tls`) until `stopping`, then stops accepting and returns
/// once the connections in flight are answered (each request is bounded by the router's
/// timeout; streams such as `/api/events` end with `stopping` too).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    mut stopping: Stopping,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let builder = builder.http1_only();
    // Failing every 100 ms while it lasts: one warning a minute.
    let mut refusing = Throttle::default();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => {
                    if let Some(cleared) = refusing.clear(Instant::now()) {
                        tracing::info!("http: accepting connections again{cleared}");
                    }
                    c
                }
                Err(e) => {
                    // Out of file descriptors, typically: do not spin.
                    match refusing.hit(Instant::now()) {
                        Some(r) => tracing::warn!("http: accept: {e}{r}"),
                        None => tracing::debug!("http: accept: {e}"),
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopping.wait() => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let served = match tls {
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                    watcher.watch(conn.into_owned()).await
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, "TLS handshake failed: {e}");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, "http connection: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
