//! The hyper path's backend connections: one hyper-util client per proxy worker.
//!
//! One per worker, like the fast path's pool: a connection's task runs on the worker that
//! opened it, so using it never wakes another thread, and no lock is shared by every request
//! (Pingora shares one pool across threads for more reuse; nginx keeps one per worker, as here).
//! Hipache opened a new backend connection per request whatever `httpKeepAlive` said (§1.1).
//! Here `httpKeepAlive: true` keeps up to `maxSockets` idle connections per backend and worker,
//! and `false` closes each after its request.

use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::Body;
use super::tls::{self, TlsError};

pub type Backends = Client<HttpsConnector<HttpConnector>, Body>;

/// How long an idle pooled connection is kept; below common backend keep-alive timeouts
/// (nginx 75 s, Node 5 s is the outlier and hyper retries a request that lost that race).
const POOL_IDLE: Duration = Duration::from_secs(60);

pub fn build(connect_timeout: Option<Duration>, idle_per_backend: usize) -> Result<Backends, TlsError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(connect_timeout);
    http.set_keepalive(Some(Duration::from_secs(60)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls::backend_client_config()?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        // Without a timer the idle timeout is not enforced (hyper-util rustdoc).
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(idle_per_backend)
        .build(connector))
}
