//! What the proxy needs from the configuration, in its own terms: `config` fills it
//! (`Config::proxy_options`), so the data plane does not depend on the file format.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::access_log;
use crate::routing::RoutingKeys;

#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub http: Vec<SocketAddr>,
    pub https: Vec<HttpsListener>,
    /// Client idle timeout (`server.tcpTimeout`); `None` disables it.
    pub tcp_timeout: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    /// Wait for a backend's response head (`server.backendTimeout`).
    pub backend_timeout: Option<Duration>,
    pub retry_on_error: u32,
    pub dead_backend_ttl: Duration,
    pub http_keep_alive: bool,
    /// Idle pooled connections kept per backend by each worker (`server.maxSockets`).
    pub max_sockets: usize,
    /// Proxy worker threads (`server.workers`), each with its own runtime and sockets.
    pub workers: usize,
    pub access_log: Option<access_log::Target>,
    /// `server.staticDir`; `None` uses the bundled pages.
    pub static_dir: Option<PathBuf>,
    pub shutdown_timeout: Duration,
    /// Deadline for a whole request head (`server.headerTimeout`): 408 past it.
    pub header_timeout: Option<Duration>,
    /// Largest request head (`server.maxHeaderSize`): 431 beyond it.
    pub max_header_size: usize,
    /// Largest request body kept for a retry (`server.maxRetryBody`).
    pub max_retry_body: u64,
    /// Client connections served at once (`server.maxConnections`, or from the fd limit).
    pub max_connections: usize,
    /// The database and prefix of the routing keys (`driver`).
    pub routing: RoutingKeys,
}

impl ProxyOptions {
    /// Idle connections kept per backend by either path: `maxSockets` with
    /// `httpKeepAlive`, none without (each connection closes after its request).
    pub fn idle_per_backend(&self) -> usize {
        if self.http_keep_alive {
            self.max_sockets.max(1)
        } else {
            0
        }
    }
}

#[derive(Debug, Clone)]
pub struct HttpsListener {
    pub addr: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Vec<PathBuf>,
    /// A passphrase was configured: rustls cannot use encrypted keys, so start-up fails
    /// with a clear message instead of a confusing PEM error.
    pub passphrase: bool,
    pub honor_cipher_order: bool,
}
