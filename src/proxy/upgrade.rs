//! WebSocket (any HTTP/1.1 `Upgrade`) tunnels (§3.12).
//!
//! The upgrade request goes through the normal handler — same lookup, same headers
//! (`X-Forwarded-*` included, unlike Hipache), same retry on connect failure since it has no
//! body. A failed lookup is answered with a normal error response and the connection is
//! closed by hyper (Hipache left the socket hanging). When the backend answers `101`, both
//! sides are upgraded and joined here. The tunnel holds no reference to the routing view, so
//! it survives any routing change, including a rewrite of its own frontend. Like Hipache,
//! tunnels have no idle timeout.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::metrics::Metrics;

/// Joins the client's and the backend's upgraded connections in a background task.
pub fn tunnel(client: OnUpgrade, backend: OnUpgrade, metrics: Metrics) {
    tokio::spawn(async move {
        let (client, backend) = match tokio::try_join!(client, backend) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        metrics.open_websockets.increment(1.0);
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        match tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            Ok((up, down)) => tracing::debug!(up, down, "tunnel closed"),
            // Resets are how most WebSockets end; never fatal (Hipache could crash, §3.12).
            Err(e) => tracing::debug!(error = %e, "tunnel ended with an error"),
        }
        metrics.open_websockets.decrement(1.0);
    });
}
