//! The proxy's options from a configuration: the one place the data plane's settings are
//! read from the file format.

use super::{AccessLog, Config};
use crate::proxy::access_log;
use crate::proxy::{HttpsListener, ProxyOptions};

impl Config {
    /// The proxy's options from the `server`, `http`, `https` and `driver` sections.
    pub fn proxy_options(&self) -> ProxyOptions {
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
            access_log: match &s.access_log {
                AccessLog::Off => None,
                AccessLog::Stdout => Some(access_log::Target::Stdout),
                AccessLog::File(p) => Some(access_log::Target::File(p.clone())),
            },
            static_dir: s.static_dir.clone(),
            shutdown_timeout: s.shutdown_timeout,
            routing: config.driver.routing_keys(),
        }
    }
}
