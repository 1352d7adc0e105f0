//! Prometheus metrics (`cluster.metrics`, path `/metrics`).
//!
//! Handles are registered once and kept, so the request path only touches atomics (no name
//! hashing per request). Labels are bounded (status class, error kind): no per-host label,
//! which would be unbounded cardinality at 1,000,000 frontends.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::raft::RaftNode;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot start the metrics listener on {addr}: {source}")]
    Install { addr: SocketAddr, source: metrics_exporter_prometheus::BuildError },
}

/// Latency buckets (seconds): sub-millisecond proxying up to slow backends.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

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
            latency: histogram!("hipache_response_head_seconds"),
            backend_errors: [error("connect"), error("timeout"), error("other")],
            dead_marks: counter!("hipache_dead_marks_total"),
            retries: counter!("hipache_retries_total"),
            open_connections: gauge!("hipache_open_connections"),
            open_websockets: gauge!("hipache_open_websockets"),
        }
    }

    /// One response head sent to a client, and how long it took from the request's start.
    pub fn response(&self, status: u16, elapsed: Duration) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.by_class[class].increment(1);
        self.latency.record(elapsed.as_secs_f64());
    }

    pub fn backend_error(&self, kind: BackendError) {
        self.backend_errors[kind as usize].increment(1);
    }
}

/// Installs the Prometheus recorder and its HTTP listener. Must run inside the runtime.
pub fn install(addr: SocketAddr) -> Result<(), MetricsError> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("hipache_response_head_seconds".into()),
            &LATENCY_BUCKETS,
        )
        .and_then(|b| b.install())
        .map_err(|source| MetricsError::Install { addr, source })
}

/// Copies the node's Raft position into gauges once a second, until the node is gone.
pub fn spawn_raft_gauges(node: &Arc<RaftNode>) {
    let node: Weak<RaftNode> = Arc::downgrade(node);
    tokio::spawn(async move {
        let term = gauge!("hipache_raft_term");
        let leader = gauge!("hipache_raft_leader_id");
        let is_leader = gauge!("hipache_raft_is_leader");
        let commit = gauge!("hipache_raft_commit_index");
        let applied = gauge!("hipache_raft_applied_index");
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let Some(node) = node.upgrade() else { return };
            let s = node.status();
            term.set(s.term as f64);
            leader.set(s.leader.map_or(-1.0, |l| l as f64));
            is_leader.set(if s.leader == Some(s.id) { 1.0 } else { 0.0 });
            commit.set(s.commit_index as f64);
            applied.set(s.applied_index as f64);
        }
    });
}
