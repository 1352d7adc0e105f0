//! What the proxy needs from the configuration, in its own terms: `main` fills it from
//! [`crate::config::Config`], so the data plane does not depend on the file format.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::access_log;
use crate::config::{AccessLog, Config};
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
    /// Idle pooled connections kept per backend (`server.maxSockets`).
    pub max_sockets: usize,
    pub access_log: Option<access_log::Target>,
    /// `server.staticDir`; `None` uses the bundled pages.
    pub static_dir: Option<PathBuf>,
    pub shutdown_timeout: Duration,
    /// Prometheus listener (`cluster.metrics`).
    pub metrics: Option<SocketAddr>,
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

impl ProxyOptions {
    pub fn from_config(config: &Config) -> ProxyOptions {
        let s = &config.server;
        ProxyOptions {
            http: config.http.iter().map(|l| l.addr).collect(),
            https: config
                .https
                .iter()
                .map(|l| HttpsListener {
                    addr: l.addr,
                    cert: l.cert.clone(),
                    key: l.key.clone(),
                    ca: l.ca.clone(),
                    passphrase: l.passphrase.is_some(),
                    honor_cipher_order: l.honor_cipher_order,
                })
                .collect(),
            tcp_timeout: s.tcp_timeout,
            connect_timeout: s.connect_timeout,
            backend_timeout: s.backend_timeout,
            retry_on_error: s.retry_on_error,
            dead_backend_ttl: s.dead_backend_ttl,
            http_keep_alive: s.http_keep_alive,
            max_sockets: s.max_sockets,
            access_log: match &s.access_log {
                AccessLog::Off => None,
                AccessLog::Stdout => Some(access_log::Target::Stdout),
                AccessLog::File(p) => Some(access_log::Target::File(p.clone())),
            },
            static_dir: s.static_dir.clone(),
            shutdown_timeout: s.shutdown_timeout,
            metrics: config.cluster.metrics,
            routing: config.driver.routing_keys(),
        }
    }
}
