//! `WAIT`: how many other members have applied an index, asked of each over gRPC.

use std::time::Duration;

use super::node::{RaftNode, Status};
use super::types::NodeInfo;
use crate::proto::raft_v1::AppliedRequest;

impl RaftNode {
    /// How many OTHER members have applied at least `index` (WAIT), polling until `count`
    /// is reached or `timeout` passes (`None` = no limit, as Redis's WAIT 0).
    pub async fn replicas_applied(&self, index: u64, count: usize, timeout: Option<Duration>) -> usize {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let peers: Vec<(u64, NodeInfo)> =
                self.status().members.into_iter().filter(|(id, ..)| *id != self.id).map(|(id, n, _)| (id, n)).collect();
            let polls = peers.iter().map(|(_, n)| self.peer_applied(&n.grpc));
            let applied = futures::future::join_all(polls).await;
            let n = applied.iter().filter(|a| a.is_some_and(|a| a >= index)).count();
            let expired = deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
            if n >= count || expired || peers.is_empty() {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn peer_applied(&self, addr: &str) -> Option<u64> {
        self.peer_status(addr).await.map(|s| s.applied_index)
    }

    /// Another node's own view of its Raft state (`None` if it does not answer in time).
    pub async fn peer_status(&self, addr: &str) -> Option<Status> {
        let mut client = self.channels.client(addr).ok()?;
        let resp = client.applied(self.channels.request(AppliedRequest {}, Duration::from_millis(500))).await.ok()?;
        let r = resp.into_inner();
        let role = match r.role.as_str() {
            "leader" => "leader",
            "follower" => "follower",
            "candidate" => "candidate",
            "learner" => "learner",
            _ => "unknown",
        };
        Some(Status {
            id: r.node_id,
            role,
            term: r.term,
            leader: (r.leader_id != 0).then_some(r.leader_id),
            last_log_index: r.last_log_index,
            commit_index: r.commit_index,
            applied_index: r.applied_index,
            purged_index: None,
            // Not reported by peers.
            writes_in_flight: 0,
            members: Vec::new(),
        })
    }
}
