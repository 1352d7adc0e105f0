//! Active expiry: the leader's sweep of keys whose deadline has passed.

use std::time::Duration;

use super::forward::Forwarded;
use super::node::{now_ms, RaftNode};
use super::types::Op;

/// On the leader, proposes an expiry sweep whenever a key's deadline has passed, the way a
/// Redis master sends `DEL` for expired keys to its replicas. Reads already hide expired keys
/// by the local clock; the sweep frees them identically on every replica.
pub(super) async fn sweep_expired(node: std::sync::Weak<RaftNode>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(node) = node.upgrade() else { return };
        let due = node.local().next_deadline().is_some_and(|d| d <= now_ms());
        if due && node.is_leader() {
            if let Err(e) = node.run_as_leader(Forwarded::Write(Op::Sweep)).await {
                tracing::debug!(error = %e, "expiry sweep not proposed");
            }
        }
    }
}
