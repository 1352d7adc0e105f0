//! Passive health checking: marking a failing backend dead (§2.3, §3.6, §3.7).
//!
//! Order matters (§9.3): the backend is excluded in the node-local overlay *first*, so the
//! retry of this very request and the next request on this node already skip it; then one
//! Raft entry (`SADD` + `EXPIRE` + `PUBLISH`, one `MULTI`) is proposed from a spawned task,
//! never blocking the request. A backend already marked and fresh is not proposed again:
//! a burst of failures costs one Raft write.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::metrics::{BackendError, Metrics};
use super::now_ms;
use super::view::SharedView;
use crate::raft::{Op, RaftNode};
use crate::routing::backend::Frontend;
use crate::routing::RoutingKeys;

/// Backend statuses that count as dead: 501, 502, 504–599. 500 and 503 are relayed without
/// marking (Hipache 0.3.x behaviour, kept: §3.7, §9.2).
pub fn is_dead_status(status: u16) -> bool {
    matches!(status, 501 | 502 | 504..=599)
}

#[derive(Clone)]
pub struct DeadMarker {
    pub view: Arc<SharedView>,
    pub node: Arc<RaftNode>,
    pub ttl: Duration,
    pub metrics: Metrics,
    /// The node's runtime: the mark's Raft write runs there, not on the proxy worker that
    /// saw the failure, so Raft's connections and tasks stay on the runtime that outlives
    /// the workers.
    pub raft_runtime: tokio::runtime::Handle,
}

impl DeadMarker {
    /// A backend answered: 501, 502 and 504–599 mark it (§3.7); the response is relayed anyway.
    pub fn answered(&self, host: &[u8], frontend: &Frontend, idx: usize, status: u16) {
        if is_dead_status(status) {
            self.mark(host, frontend, idx);
        }
    }

    /// An attempt failed before a response: counted, and the backend marked when the failure
    /// says it is down (connect refused or timed out, no response head in time), not after a
    /// reset, which may be the connection's fault rather than the backend's (§3.6).
    pub fn failed(&self, host: &[u8], frontend: &Frontend, idx: usize, kind: BackendError) {
        self.metrics.backend_error(kind);
        if kind != BackendError::Other {
            self.mark(host, frontend, idx);
        }
    }

    /// Marks backend `idx` of `frontend` dead for requests to `host`. A lone backend is never
    /// marked (§2.3.1).
    pub fn mark(&self, host: &[u8], frontend: &Frontend, idx: usize) {
        let len = frontend.backend_count();
        if len <= 1 {
            return;
        }
        let now = now_ms();
        let host = Bytes::copy_from_slice(host);
        let url = frontend.backend(idx).url;
        // While an external checker is alive it owns `dead:*`: publish only (§2.3.4).
        let passive = !self.view.load().hchecker_active(now);
        if passive && !self.view.mark_local(&host, idx, self.ttl, now) {
            return;
        }
        tracing::warn!(host = %String::from_utf8_lossy(&host), backend = %String::from_utf8_lossy(&url), idx, "backend is dead");
        self.metrics.dead_marks.increment(1);
        let op = mark_op(self.view.keys(), &host, &url, idx, len, self.ttl, passive);
        let node = self.node.clone();
        self.raft_runtime.spawn(async move {
            if let Err(e) = node.write(op).await {
                tracing::warn!(error = %e, "dead mark not replicated; kept node-local until its TTL");
            }
        });
    }
}

/// The replicated mark: Hipache's `mark` transaction (docs/hipache-behaviour.md §2.2), in the
/// routing database, on the prefixed `dead:` key; the `dead` channel is never prefixed.
fn mark_op(keys: &RoutingKeys, host: &Bytes, url: &Bytes, idx: usize, len: usize, ttl: Duration, passive: bool) -> Op {
    let dead_key = keys.dead_key(host);
    let idx_arg = Bytes::from(idx.to_string());
    let mut queued = Vec::with_capacity(3);
    if passive {
        // `EXPIRE` takes whole seconds; round up so the mark never ends before the TTL.
        let secs = ttl.as_millis().div_ceil(1000).max(1);
        queued.push(vec![Bytes::from_static(b"SADD"), dead_key.clone(), idx_arg]);
        queued.push(vec![Bytes::from_static(b"EXPIRE"), dead_key, Bytes::from(secs.to_string())]);
    }
    let message =
        [host.as_ref(), b";", url, b";", idx.to_string().as_bytes(), b";", len.to_string().as_bytes()].concat();
    queued.push(vec![Bytes::from_static(b"PUBLISH"), Bytes::from_static(b"dead"), Bytes::from(message)]);
    Op::Exec { db: keys.db as u8, queued, watched: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_statuses() {
        let dead: Vec<u16> = (400..600).filter(|&s| is_dead_status(s)).collect();
        assert_eq!(dead[..2], [501, 502]);
        assert!(!dead.contains(&500) && !dead.contains(&503));
        assert!(dead.contains(&504) && dead.contains(&599));
        assert_eq!(dead.len(), 2 + 96);
    }

    #[test]
    fn mark_transaction() {
        let keys = RoutingKeys::default();
        let op =
            mark_op(&keys, &Bytes::from("a.com"), &Bytes::from("http://x:1"), 1, 2, Duration::from_millis(1500), true);
        let Op::Exec { db: 0, queued, watched } = op else { panic!("not an exec") };
        assert!(watched.is_empty());
        let text: Vec<Vec<&[u8]>> = queued.iter().map(|c| c.iter().map(|a| a.as_ref()).collect()).collect();
        assert_eq!(
            text,
            vec![
                vec![b"SADD".as_slice(), b"dead:a.com", b"1"],
                vec![b"EXPIRE".as_slice(), b"dead:a.com", b"2"],
                vec![b"PUBLISH".as_slice(), b"dead", b"a.com;http://x:1;1;2"],
            ]
        );
        let Op::Exec { queued, .. } =
            mark_op(&keys, &Bytes::from("a"), &Bytes::from("u"), 0, 2, Duration::from_secs(1), false)
        else {
            panic!("not an exec")
        };
        assert_eq!(queued.len(), 1, "publish only while a checker is active");
        let prefixed = RoutingKeys { db: 3, prefix: Bytes::from("hip_") };
        let Op::Exec { db: 3, queued, .. } =
            mark_op(&prefixed, &Bytes::from("a"), &Bytes::from("u"), 0, 2, Duration::from_secs(1), true)
        else {
            panic!("not an exec in the driver's database")
        };
        assert_eq!(queued[0][1], "hip_dead:a");
        assert_eq!(queued[2][1], "dead", "the channel is not prefixed");
    }
}
