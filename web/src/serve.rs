//! The accept loop: axum's own `serve` gives hyper no timer, so a client that opens connections
//! and never finishes its headers would hold them (and their file descriptors) forever, before
//! any token is looked at. Here every connection must send its headers in time and counts
//! against a cap.
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Long enough for a client on a slow link, short enough that idle sockets do not pile up.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` until `shutdown` completes. Connections beyond `max_connections` are closed at
/// once rather than queued: a queue of sockets is what the cap is there to prevent.
pub async fn serve(listener: TcpListener, app: Router, max_connections: usize, shutdown: impl std::future::Future<Output = ()>) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(max_connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of descriptors or a connection reset while queued: the next one may do.
                Err(e) if is_transient(&e) => { tokio::time::sleep(Duration::from_millis(50)).await; continue; }
                Err(e) => return Err(e),
            },
            () = &mut shutdown => return Ok(()),
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = conn.await;
            drop(slot);
        });
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock) || e.raw_os_error().is_some_and(|c| c == 24 || c == 23)
}
