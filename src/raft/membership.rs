//! Membership changes: adding a node (as learner, then voter), removing one, and a new node
//! asking to be added (`join`).

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;

use super::forward::{Answer, Forwarded};
use super::leader::unexpected;
use super::node::{NodeError, RaftNode};
use super::types::NodeInfo;
use crate::proto::raft_v1::JoinRequest;

impl RaftNode {
    /// Adds `id` as a learner, waits for it to catch up, then promotes it to voter. Returns
    /// the leader's id.
    pub async fn add_node(&self, id: u64, info: NodeInfo) -> Result<u64, NodeError> {
        self.membership(Forwarded::AddNode { id, info }).await
    }

    pub async fn remove_node(&self, id: u64) -> Result<u64, NodeError> {
        self.membership(Forwarded::RemoveNode { id }).await?;
        if !self.status().members.iter().any(|(m, ..)| *m == id) {
            return Ok(self.status().leader.unwrap_or(self.id));
        }
        // The leader removed itself: it is a learner now (see `shrink`) and steps down; the
        // next leader takes it out of the membership.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.status().leader.is_none_or(|l| l == id) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.membership(Forwarded::RemoveNode { id }).await
    }

    async fn membership(&self, op: Forwarded) -> Result<u64, NodeError> {
        match self.on_leader(op).await? {
            Answer::MembershipChanged { .. } => Ok(self.status().leader.unwrap_or(self.id)),
            other => Err(unexpected(other)),
        }
    }

    /// Adds `id` (on the leader) as a learner, waits for it to catch up, then makes it a voter.
    pub(super) async fn grow(&self, id: u64, info: NodeInfo) -> Result<Answer, NodeError> {
        let _one_at_a_time = self.membership_lock.lock().await;
        if self.voters().contains(&id) {
            let known = self.status().members.into_iter().find(|(m, ..)| *m == id).map(|(_, n, _)| n);
            return Ok(match known {
                Some(n) if n == info => Answer::MembershipChanged { index: 0 },
                _ => Answer::Refused(format!("node id {id} is already a member with other addresses")),
            });
        }
        if let Err(e) = while_in_progress(|| self.raft.add_learner(id, info.clone(), true)).await {
            return self.refusal(e);
        }
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id]))).await
    }

    async fn change(&self, change: ChangeMembers<u64, NodeInfo>) -> Result<Answer, NodeError> {
        match while_in_progress(|| self.raft.change_membership(change.clone(), false)).await {
            Ok(resp) => Ok(Answer::MembershipChanged { index: resp.log_id.index }),
            Err(e) => self.refusal(e),
        }
    }

    /// Removes `id` (on the leader): a voter is first demoted (joint consensus), then dropped.
    pub(super) async fn shrink(&self, id: u64) -> Result<Answer, NodeError> {
        let _one_at_a_time = self.membership_lock.lock().await;
        let voters: BTreeSet<u64> = self.voters();
        if !voters.contains(&id) && !self.status().members.iter().any(|(m, ..)| *m == id) {
            return Ok(Answer::Refused(format!("node {id} is not a member")));
        }
        if voters.len() == 1 && voters.contains(&id) {
            return Ok(Answer::Refused(format!("node {id} is the only voter and cannot be removed")));
        }
        let change = ChangeMembers::RemoveNodes(BTreeSet::from([id]));
        let change = if voters.contains(&id) { ChangeMembers::RemoveVoters(BTreeSet::from([id])) } else { change };
        let first = self.change(change).await?;
        if !matches!(first, Answer::MembershipChanged { .. }) || !voters.contains(&id) {
            return Ok(first);
        }
        if id == self.id {
            // A leader that has made itself a learner must not append another membership entry:
            // openraft 0.9 panics ("Only leader is allowed to call update_effective_membership")
            // and the node's Raft stops. It steps down by itself; `remove_node` has the next
            // leader drop it.
            return Ok(first);
        }
        // Removing a voter first demotes it (joint consensus); then drop it entirely.
        self.change(ChangeMembers::RemoveNodes(BTreeSet::from([id]))).await
    }

    /// Asks the nodes at `addrs` (gRPC) to add this node; retries while none answers, fails
    /// at once when the cluster refuses (wrong secret).
    pub async fn join(&self, addrs: &[String], info: &NodeInfo, patience: Duration) -> Result<u64, NodeError> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut last = String::from("no join address given");
        while tokio::time::Instant::now() < deadline {
            for addr in addrs {
                let mut client = match self.channels.client(addr) {
                    Ok(c) => c,
                    Err(e) => return Err(NodeError::Refused(e.to_string())),
                };
                let req = JoinRequest { node_id: self.id, grpc_addr: info.grpc.clone(), resp_addr: info.resp.clone() };
                let asked = tokio::select! {
                    asked = client.join(self.channels.request(req, Duration::from_secs(60))) => asked,
                    // Added from outside meanwhile (`cluster add-node` on a member, when the
                    // join targets are out of reach): nothing left to ask.
                    leader = self.added() => return Ok(leader),
                };
                match asked {
                    Ok(resp) => return Ok(resp.into_inner().leader_id),
                    Err(s) if s.code() == tonic::Code::Unauthenticated => {
                        return Err(NodeError::Unauthenticated(format!(
                            "{addr} refused to add node {}: {}",
                            self.id,
                            s.message()
                        )));
                    }
                    Err(s) if s.code() == tonic::Code::InvalidArgument => {
                        return Err(NodeError::Refused(format!(
                            "{addr} refused to add node {}: {}",
                            self.id,
                            s.message()
                        )));
                    }
                    Err(s) => last = format!("{addr}: {}", s.message()),
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(NodeError::Refused(format!("could not join the cluster: {last}")))
    }

    /// Resolves once this node is a member with a known leader (polling: openraft has no
    /// membership notification that a learner could await).
    async fn added(&self) -> u64 {
        loop {
            if self.is_initialized().await {
                if let Some(leader) = self.status().leader {
                    return leader;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs a membership call, waiting out a change still in progress (a previous joint
/// configuration that has not committed yet), for at most about ten seconds.
async fn while_in_progress<T, F, Fut>(call: F) -> Result<T, RaftError<u64, ClientWriteError<u64, NodeInfo>>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, RaftError<u64, ClientWriteError<u64, NodeInfo>>>>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(_))))
                if tries < 200 =>
            {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}
