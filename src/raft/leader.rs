//! Routing an operation to the leader: run it here when this node leads, else forward it over
//! gRPC, hopping to a new leader and waiting out elections (`RaftNode::on_leader`).

use std::time::Duration;

use openraft::error::{ChangeMembershipError, CheckIsLeaderError, ClientWriteError, RaftError};

use super::forward::{Answer, Forwarded};
use super::network::{decode, encode};
use super::node::{now_ms, NodeError, RaftNode};
use super::types::{NodeInfo, Op, Request};
use crate::inject::{injected, Bug};
use crate::proto::raft_v1::Blob;

/// How long a forwarded call may take before the client is told the outcome is unknown.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long this node, as leader, waits for one of its writes to commit and apply before
/// treating it as failed with an unknown outcome (retried: numbered writes apply once). Shorter
/// than `FORWARD_TIMEOUT`, so the node that forwarded the write hears why. Without it a write
/// could wait forever: openraft 0.9 answers a deposed leader's pending writes when their log
/// entries are overwritten, but not when a snapshot from the new leader replaces its log,
/// and a leader cut off from its quorum never learns it was deposed until the network heals.
const COMMIT_PATIENCE: Duration = Duration::from_secs(4);
/// Leader hops and elections a call waits through before answering TRYAGAIN.
const MAX_ATTEMPTS: usize = 8;
/// How long a call waits for a leader other than the one that just failed before trying
/// again anyway (that leader may have been slow rather than gone): two election timeouts.
const NEW_LEADER_PATIENCE: Duration = Duration::from_secs(3);
/// Longest a linearizable read waits for the leader to apply its own log (`applied_own_log`);
/// past it the read is retried after an election, as when the leader is unsure.
const READ_BARRIER_PATIENCE: Duration = Duration::from_secs(5);

impl RaftNode {
    /// Runs `op` on the current leader: here if this node leads, else over gRPC. Hops to a
    /// new leader and waits out elections, at most `MAX_ATTEMPTS` calls.
    pub(super) async fn on_leader(&self, mut op: Forwarded) -> Result<Answer, NodeError> {
        if self.is_removed() {
            return Err(NodeError::Removed(self.id));
        }
        let mut hint: Option<(u64, NodeInfo)> = None;
        // A replayable call that may have reached a leader which then failed: sent again, and
        // if no attempt succeeds, the client hears that the outcome is unknown.
        let mut ambiguous: Option<NodeError> = None;
        for _ in 0..MAX_ATTEMPTS {
            let target = hint.take().or_else(|| self.leader());
            let tried = target.as_ref().map(|(id, _)| *id);
            let result = match target {
                None => {
                    self.wait_for_leader(Duration::from_secs(3)).await.ok();
                    continue;
                }
                Some((id, _)) if id == self.id => self.run_as_leader(op.clone()).await,
                Some((id, info)) => self.forward(id, &info, &op).await,
            };
            let answer = match result {
                Err(e @ NodeError::Unavailable { .. }) if op.replayable() => {
                    tracing::info!(error = %e, "leader call failed; trying again after the election");
                    if let Forwarded::Write(write) = &op {
                        ambiguous = Some(e);
                        if injected(Bug::ResendUnnumbered) {
                            if let Op::Sequenced { op: inner, .. } = write {
                                op = Forwarded::Write((**inner).clone());
                            }
                        }
                    }
                    Answer::NotLeader { leader: None }
                }
                other => other?,
            };
            match answer {
                Answer::NotLeader { leader } => {
                    hint = leader;
                    if hint.is_none() {
                        // The leader we tried is gone or unsure, and this node names it until
                        // its own election timeout fires: wait for the next one, however long
                        // the election takes, instead of retrying against the same node.
                        self.wait_for_new_leader(tried, NEW_LEADER_PATIENCE).await;
                    }
                }
                Answer::Refused(message) => return Err(NodeError::Refused(message)),
                other => return Ok(other),
            }
        }
        Err(ambiguous.unwrap_or(NodeError::NoLeader))
    }

    async fn forward(&self, leader: u64, info: &NodeInfo, op: &Forwarded) -> Result<Answer, NodeError> {
        let unavailable = |message: String| NodeError::Unavailable { leader, message };
        let data = encode(&(self.id, op)).map_err(|e| NodeError::Fatal(e.to_string()))?;
        let mut client = self.channels.client(&info.grpc).map_err(|e| unavailable(e.to_string()))?;
        let resp = client.forward(self.channels.request(Blob { data }, FORWARD_TIMEOUT)).await;
        match resp {
            Ok(r) => decode(&r.into_inner().data).map_err(|e| unavailable(e.to_string())),
            // A call whose connection was refused never reached the leader (tonic reports that
            // as "tcp connect error"): retry after the election. Other failures may have reached
            // it: `on_leader` retries those only for replayable calls.
            Err(s) if s.code() == tonic::Code::Unavailable && s.message().contains("tcp connect error") => {
                Ok(Answer::NotLeader { leader: None })
            }
            Err(s) if s.code() == tonic::Code::Unauthenticated => {
                Err(NodeError::Unauthenticated(s.message().to_string()))
            }
            Err(s) => Err(unavailable(s.message().to_string())),
        }
    }

    /// Runs a (possibly forwarded) operation with this node as leader; answers `NotLeader`
    /// when it is not.
    pub(super) async fn run_as_leader(&self, op: Forwarded) -> Result<Answer, NodeError> {
        match op {
            Forwarded::Write(op) => {
                let req = Request { stamp_ms: now_ms(), op };
                match tokio::time::timeout(COMMIT_PATIENCE, self.raft.client_write(req)).await {
                    Ok(Ok(resp)) => Ok(Answer::Written { reply: resp.data, index: resp.log_id.index }),
                    Ok(Err(e)) => self.refusal(e),
                    Err(_) => Err(NodeError::Unavailable {
                        leader: self.id,
                        message: format!("not committed within {COMMIT_PATIENCE:?}; this node may no longer lead"),
                    }),
                }
            }
            Forwarded::Read { db, cmds } => match self.linearize().await? {
                Some(answer) => Ok(answer),
                None => {
                    let ks = self.local();
                    let now = now_ms();
                    Ok(Answer::Read(cmds.iter().map(|argv| ks.read(db as usize, argv, now)).collect()))
                }
            },
            Forwarded::Versions { db, keys } => match self.linearize().await? {
                Some(answer) => Ok(answer),
                None => {
                    let ks = self.local();
                    let now = now_ms();
                    Ok(Answer::Versions(keys.iter().map(|k| ks.version(db as usize, k, now)).collect()))
                }
            },
            Forwarded::AddNode { id, info } => self.grow(id, info).await,
            Forwarded::RemoveNode { id } => self.shrink(id).await,
        }
    }

    /// What a failed proposal or membership change tells the caller: try the leader named,
    /// or nothing changed and why, or the node stopped.
    pub(super) fn refusal(&self, e: RaftError<u64, ClientWriteError<u64, NodeInfo>>) -> Result<Answer, NodeError> {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                Ok(self.not_leader(f.leader_id, f.leader_node))
            }
            // Still in progress after `while_in_progress` gave up: retryable, like an election.
            RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(_))) => {
                Ok(Answer::NotLeader { leader: None })
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => Ok(Answer::Refused(e.to_string())),
            RaftError::Fatal(f) => Err(NodeError::Fatal(f.to_string())),
        }
    }

    /// ReadIndex: `None` when this node may now serve a linearizable read, else the answer
    /// that sends the caller elsewhere.
    async fn linearize(&self) -> Result<Option<Answer>, NodeError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => self.applied_own_log().await,
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Ok(Some(self.not_leader(f.leader_id, f.leader_node)))
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => {
                Ok(Some(Answer::NotLeader { leader: None }))
            }
            Err(RaftError::Fatal(f)) => Err(NodeError::Fatal(f.to_string())),
        }
    }

    /// Waits until this leader has applied everything in its log. openraft 0.9 restores a node
    /// as leader at start-up when its saved vote says it led, with the commit index it saved,
    /// which can be behind what the cluster committed before the crash; the read index
    /// `ensure_linearizable` then gives (that index, or the leader's first entry) can miss
    /// acknowledged writes, and a read right after a restart did (docs/reliability.md, soak).
    /// Every committed entry is in the leader's log, so once all of it is applied none is
    /// missed. A read waits for the writes in flight at most.
    async fn applied_own_log(&self) -> Result<Option<Answer>, NodeError> {
        let Some(last) = self.raft.metrics().borrow().last_log_index else { return Ok(None) };
        let wait = self.raft.wait(Some(READ_BARRIER_PATIENCE));
        match wait.applied_index_at_least(Some(last), "the leader's own log applied").await {
            Ok(_) => Ok(None),
            Err(_) => Ok(Some(Answer::NotLeader { leader: None })),
        }
    }

    fn not_leader(&self, id: Option<u64>, node: Option<NodeInfo>) -> Answer {
        match (id, node) {
            (Some(id), Some(node)) if id != self.id => Answer::NotLeader { leader: Some((id, node)) },
            _ => Answer::NotLeader { leader: None },
        }
    }

    /// Waits (bounded) until a leader other than `old` is known; returns either way.
    pub(super) async fn wait_for_new_leader(&self, old: Option<u64>, timeout: Duration) {
        let known = |m: &openraft::RaftMetrics<u64, NodeInfo>| m.current_leader.is_some() && m.current_leader != old;
        if self.raft.wait(Some(timeout)).metrics(known, "a new leader").await.is_err() {
            tracing::debug!(?old, "no other leader in time; trying again");
        }
    }
}

pub(super) fn unexpected(answer: Answer) -> NodeError {
    NodeError::Fatal(format!("unexpected answer from the leader: {answer:?}"))
}
