//! The node's Prometheus listener (`cluster.metrics`, path `/metrics`): the proxy's request
//! metrics (`proxy::metrics`) and the Raft position, in one exporter.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use metrics::gauge;
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::proxy::metrics::RESPONSE_HEAD_SECONDS;
use crate::raft::RaftNode;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot start the metrics listener on {addr}: {source}")]
    Install { addr: SocketAddr, source: metrics_exporter_prometheus::BuildError },
}

/// Latency buckets (seconds): sub-millisecond proxying up to slow backends.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Installs the Prometheus recorder and its HTTP listener. Must run inside the runtime.
pub fn install(addr: SocketAddr) -> Result<(), MetricsError> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(RESPONSE_HEAD_SECONDS.into()),
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
