//! The proxy's request metrics (exported by the node's Prometheus listener, `crate::metrics`).
//!
//! Handles are registered once and kept, so the request path only touches atomics (no name
//! hashing per request). Labels are bounded (status class, error kind): no per-host label,
//! which would be unbounded cardinality at 1,000,000 frontends.

use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

/// The response latency histogram's name (its buckets are set where the exporter starts).
pub const RESPONSE_HEAD_SECONDS: &str = "hipache_response_head_seconds";

/// Why an attempt at a backend failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendError {
    /// Refused, unreachable, or the connect timeout fired: the backend is marked dead.
    Connect,
    /// No response head within `backendTimeout`: marked dead, as Hipache's TCP timeout did.
    Timeout,
    /// Reset or closed mid-exchange: retried when possible, not marked.
    Other,
}

#[derive(Clone)]
pub struct Metrics {
    by_class: [Counter; 5],
    latency: Histogram,
    backend_errors: [Counter; 3],
    pub dead_marks: Counter,
    pub retries: Counter,
    /// Per worker (`worker` label), so an uneven spread over the workers shows.
    pub open_connections: Gauge,
    pub open_websockets: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers the handles; without an installed recorder they are no-ops.
    pub fn new() -> Metrics {
        let class = |c: &'static str| counter!("hipache_requests_total", "class" => c);
        let error = |k: &'static str| counter!("hipache_backend_errors_total", "kind" => k);
        Metrics {
            by_class: [class("1xx"), class("2xx"), class("3xx"), class("4xx"), class("5xx")],
            latency: histogram!(RESPONSE_HEAD_SECONDS),
            backend_errors: [error("connect"), error("timeout"), error("other")],
            dead_marks: counter!("hipache_dead_marks_total"),
            retries: counter!("hipache_retries_total"),
            open_connections: gauge!("hipache_open_connections", "worker" => "0"),
            open_websockets: gauge!("hipache_open_websockets"),
        }
    }

    /// One response head sent to a client, and how long it took from the request's start.
    pub fn response(&self, status: u16, elapsed: Duration) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.by_class[class].increment(1);
        self.latency.record(elapsed.as_secs_f64());
    }

    /// The same handles, but for worker `index`'s own open-connections gauge.
    pub fn for_worker(&self, index: usize) -> Metrics {
        Metrics { open_connections: gauge!("hipache_open_connections", "worker" => index.to_string()), ..self.clone() }
    }

    pub fn backend_error(&self, kind: BackendError) {
        self.backend_errors[kind as usize].increment(1);
    }
}
