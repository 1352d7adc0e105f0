//! The node facade: the only door from RESP, gRPC and the proxy into Raft.
//!
//! Everything outside `raft/` talks to [`RaftNode`] with our own types (`Op`, `Reply`,
//! `Keyspace`), so openraft stays an implementation detail of this directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{Config, ServerState, SnapshotPolicy};

use super::log_store::LogStore;
use super::network::Network;
use super::state_machine::{Applied, StateMachine};
use super::types::{NodeInfo, Op, Raft, Request};
use crate::pubsub::PubSub;
use crate::routes::{Keyspace, Reply};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot open the data directory {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error("raft storage: {0}")]
    Storage(String),
    /// No leader is known right now (election under way): the client may retry.
    #[error("no leader is known right now, try again")]
    NoLeader,
    /// This node is not the leader; `leader` says who is, when known.
    #[error("this node is not the leader")]
    NotLeader { leader: Option<(u64, NodeInfo)> },
    #[error("raft stopped: {0}")]
    Fatal(String),
}

/// What a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub node_id: u64,
    pub data_dir: PathBuf,
    pub info: NodeInfo,
    /// Build a snapshot (and purge the log) after this many entries.
    pub snapshot_threshold: u64,
    /// Peers to join; empty with an empty data dir means "initialise a one-node cluster".
    pub join: Vec<String>,
}

/// A node's Raft view, for INFO, ROLE and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub id: u64,
    pub role: &'static str,
    pub term: u64,
    pub leader: Option<u64>,
    pub last_log_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// Highest log index removed from the log after a snapshot.
    pub purged_index: Option<u64>,
    pub members: Vec<(u64, NodeInfo, bool)>,
}

pub struct RaftNode {
    id: u64,
    raft: Raft,
    applied: Arc<Applied>,
    committed: Arc<AtomicU64>,
    _db: sled::Db,
}

/// Wall-clock milliseconds: the stamp a leader puts on entries and the "now" of local reads.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl RaftNode {
    /// Opens (or creates) the node's sled database and starts Raft. A node with no state and
    /// no `join` list initialises itself as a one-member cluster.
    pub async fn start(opts: NodeOptions, pubsub: Arc<PubSub>) -> Result<Arc<RaftNode>, NodeError> {
        let path = opts.data_dir.join("raft.sled");
        let open_err = |source| NodeError::Open { path: path.clone(), source };
        std::fs::create_dir_all(&opts.data_dir).map_err(|e| open_err(sled::Error::Io(e)))?;
        // An explicit cache size: sled's counts against the node's memory budget.
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(128 * 1024 * 1024)
            .flush_every_ms(Some(1000))
            .open()
            .map_err(open_err)?;
        let log = LogStore::open(&db).map_err(open_err)?;
        let replay_upto = log.last_index().map_err(open_err)?.unwrap_or(0);
        let committed = log.committed_index();
        let applied = Applied::new(pubsub);
        let sm = StateMachine::open(&db, applied.clone(), replay_upto).map_err(|e| NodeError::Storage(e.to_string()))?;

        let config = Config {
            cluster_name: "hipache-raft".into(),
            heartbeat_interval: 250,
            election_timeout_min: 1000,
            election_timeout_max: 2000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(opts.snapshot_threshold.max(1)),
            // Keep some log behind a snapshot so a follower that is slightly behind catches
            // up from the log instead of being sent a whole snapshot.
            max_in_snapshot_log_to_keep: opts.snapshot_threshold.min(1000),
            max_payload_entries: 1024,
            ..Default::default()
        };
        let config = Arc::new(config.validate().map_err(|e| NodeError::Fatal(e.to_string()))?);
        let raft = Raft::new(opts.node_id, config, Network, log, sm).await.map_err(|e| NodeError::Fatal(e.to_string()))?;

        let node = Arc::new(RaftNode { id: opts.node_id, raft, applied, committed, _db: db });
        if opts.join.is_empty() && !node.raft.is_initialized().await.map_err(|e| NodeError::Fatal(e.to_string()))? {
            let members = BTreeMap::from([(opts.node_id, opts.info.clone())]);
            node.raft.initialize(members).await.map_err(|e| NodeError::Fatal(e.to_string()))?;
        }
        tokio::spawn(sweep_expired(Arc::downgrade(&node)));
        Ok(node)
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// The state machine's outputs: local keyspace, pub/sub hub, apply listeners.
    pub fn applied(&self) -> &Arc<Applied> {
        &self.applied
    }

    /// The keyspace as applied on this node (possibly behind the leader).
    pub fn local(&self) -> Arc<Keyspace> {
        self.applied.keyspace.load_full()
    }

    /// Proposes `op` and waits until it is durable in the log and applied here.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn write(&self, op: Op) -> Result<Reply, NodeError> {
        let req = Request { stamp_ms: now_ms(), op };
        match self.raft.client_write(req).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(self.not_leader(f.leader_id, f.leader_node)),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => Err(NodeError::Fatal(e.to_string())),
            Err(RaftError::Fatal(f)) => Err(NodeError::Fatal(f.to_string())),
        }
    }

    /// Waits until this node may serve a linearizable read (ReadIndex on the leader).
    pub async fn linearize(&self) -> Result<(), NodeError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => Err(self.not_leader(f.leader_id, f.leader_node)),
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => Err(NodeError::NoLeader),
            Err(RaftError::Fatal(f)) => Err(NodeError::Fatal(f.to_string())),
        }
    }

    fn not_leader(&self, id: Option<u64>, node: Option<NodeInfo>) -> NodeError {
        match (id, node) {
            (Some(id), Some(node)) if id != self.id => NodeError::NotLeader { leader: Some((id, node)) },
            _ => NodeError::NoLeader,
        }
    }

    pub fn status(&self) -> Status {
        let m = self.raft.metrics().borrow().clone();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let membership = m.membership_config.membership();
        let members = membership
            .nodes()
            .map(|(id, n)| (*id, n.clone(), membership.voter_ids().any(|v| v == *id)))
            .collect();
        Status {
            id: self.id,
            role,
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index.unwrap_or(0),
            commit_index: self.committed.load(Ordering::Relaxed),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            purged_index: m.purged.map(|l| l.index),
            members,
        }
    }

    /// Stops Raft; the sled database flushes when the last handle drops.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }

    /// Waits (bounded) until some node is known as leader; used by tests and start-up.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64, NodeError> {
        let m = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
            .map_err(|_| NodeError::NoLeader)?;
        m.current_leader.ok_or(NodeError::NoLeader)
    }

    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }
}

/// On the leader, proposes an expiry sweep whenever a key's deadline has passed, the way a
/// Redis master sends `DEL` for expired keys to its replicas. Reads already hide expired keys
/// by the local clock; the sweep frees them identically on every replica.
async fn sweep_expired(node: std::sync::Weak<RaftNode>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(node) = node.upgrade() else { return };
        let due = node.local().next_deadline().is_some_and(|d| d <= now_ms());
        if due && node.is_leader() {
            if let Err(e) = node.write(Op::Sweep).await {
                tracing::debug!(error = %e, "expiry sweep not proposed");
            }
        }
    }
}
