//! The proxy's options from a configuration: the one place the data plane's settings are
//! read from the file format.

use super::{AccessLog, Config};
use crate::proxy::access_log;
use crate::proxy::{HttpsListener, ProxyOptions};

/// Descriptors kept for everything but client connections: the Raft log and snapshot files,
/// peers, RESP and gRPC admin clients, the access log.
const RESERVED_FILES: u64 = 256;

/// `server.maxConnections` when the file does not say: half of the descriptors left after
/// [`RESERVED_FILES`], since each proxied connection may hold a backend connection too. So the
/// proxy stops accepting (new connections wait in the backlog) before `accept` fails with
/// EMFILE, which would leave the listener spinning and every other socket failing too.
pub fn default_max_connections(open_files_limit: u64) -> usize {
    usize::try_from(open_files_limit.saturating_sub(RESERVED_FILES) / 2).unwrap_or(usize::MAX).max(16)
}

impl Config {
    /// The proxy's options from the `server`, `http`, `https` and `driver` sections;
    /// `open_files_limit` is the process's descriptor limit (`RLIMIT_NOFILE`), for the default
    /// connection limit.
    pub fn proxy_options(&self, open_files_limit: u64) -> ProxyOptions {
        let config = self;
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
            // `available_parallelism` honours the CPU affinity mask and cgroup quota, so a
            // node pinned with `taskset` or limited by a container gets as many as it may use.
            workers: s.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            access_log: match &s.access_log {
                AccessLog::Off => None,
                AccessLog::Stdout => Some(access_log::Target::Stdout),
                AccessLog::File(p) => Some(access_log::Target::File(p.clone())),
            },
            static_dir: s.static_dir.clone(),
            shutdown_timeout: s.shutdown_timeout,
            header_timeout: s.header_timeout,
            max_header_size: s.max_header_size,
            max_retry_body: s.max_retry_body,
            max_connections: s.max_connections.unwrap_or_else(|| default_max_connections(open_files_limit)),
            routing: config.driver.routing_keys(),
        }
    }
}
