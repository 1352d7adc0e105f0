//! The node facade: the only door from RESP, gRPC and the proxy into Raft.
//!
//! Everything outside `raft/` talks to [`RaftNode`] with our own types (`Op`, `Reply`,
//! `Keyspace`), so openraft stays an implementation detail of this directory. This file holds
//! the node's state, its start, reads and status; the rest of its methods live by topic:
//! `proposer.rs` (writes, batched), `leader.rs` (running an operation on the leader),
//! `membership.rs` (adding and removing nodes, joining), `replicas.rs` (WAIT) and
//! `expiry.rs` (the leader's expiry sweep).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use openraft::{Config, ServerState, SnapshotPolicy};
use tokio::sync::mpsc;

use super::data_dir::{self, DataDirError};
use super::disk::DiskGuard;
use super::expiry::sweep_expired;
use super::forward::{Answer, Forwarded};
use super::leader::unexpected;
use super::log_store::{self, LogStore};
use super::network::{Channels, Network};
use super::proposer::{propose_batches, Proposal, Sequencer};
use super::snapshot_file::SnapshotFile;
use super::state_machine::{Applied, AppliedState, ApplyListener, StateMachine};
use super::types::{NodeInfo, Raft};
use crate::keyspace::{Keyspace, Reply};
use crate::peer_tls::PeerTls;
use crate::pubsub::PubSub;
use crate::secret::Secret;

#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    #[error("cannot open the data directory {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error(
        "the data directory {path} was written in data format {found} by a newer hipache-raft; \
         this build reads formats up to {supported}: run the newer build on it"
    )]
    NewerFormat { path: PathBuf, found: u32, supported: u32 },
    #[error("raft storage: {0}")]
    Storage(String),
    /// No leader is known right now (election under way): the client may retry.
    #[error("no leader is known right now, try again")]
    NoLeader,
    /// This node is not the leader; `leader` says who is, when known.
    #[error("this node is not the leader")]
    NotLeader { leader: Option<(u64, NodeInfo)> },
    /// The leader could not be reached; a write may or may not have been applied.
    #[error("the leader (node {leader}) did not answer: {message}; the outcome is unknown")]
    Unavailable { leader: u64, message: String },
    /// This node was removed from the cluster's membership.
    #[error("node {0} was removed from the cluster and no longer accepts writes or reads")]
    Removed(u64),
    /// The request was refused without changing anything (a bad membership change).
    #[error("{0}")]
    Refused(String),
    /// A peer refused this node's credentials (`cluster.secret` or its TLS certificate).
    #[error("{0}")]
    Unauthenticated(String),
    #[error("raft stopped: {0}")]
    Fatal(String),
    /// The data dir's file system has less free space than `cluster.diskReserve`.
    #[error(
        "disk full: the data directory's file system ({}) has {free} bytes free, below cluster.diskReserve ({reserve}); \
         writes are refused until space is freed, reads and routing go on",
        dir.display()
    )]
    DiskFull { dir: PathBuf, free: u64, reserve: u64 },
}

/// A write as applied: its reply and the log index it was applied at (WAIT).
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub reply: Reply,
    pub index: u64,
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
    pub secret: Secret,
    /// Mutual TLS towards peers (`cluster.tls`), if configured.
    pub tls: Option<PeerTls>,
    /// Where connections to peers leave from: the gRPC listener's address when it is a specific
    /// one, so peers and firewalls between nodes see each node at the address it listens on
    /// (the kernel would pick the route's address, e.g. 127.0.0.1 for every node of a
    /// cluster spread over 127.0.0.x, whose traffic a partition could then not tell apart).
    pub source_ip: Option<std::net::IpAddr>,
    /// Free bytes the data dir's file system must keep for writes to be taken
    /// (`cluster.diskReserve`); 0 turns the guard off.
    pub disk_reserve: u64,
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
    /// Writes this node took whose outcome is not settled yet (`RaftNode::unsettled`).
    pub writes_in_flight: usize,
    pub members: Vec<(u64, NodeInfo, bool)>,
}

pub struct RaftNode {
    pub(super) id: u64,
    pub(super) raft: Raft,
    pub(super) applied: Arc<Applied>,
    pub(super) committed: Arc<AtomicU64>,
    pub(super) channels: Channels,
    /// One membership change at a time on this leader: Raft allows no overlapping changes.
    pub(super) membership_lock: tokio::sync::Mutex<()>,
    /// Writes waiting to be proposed; see `propose_batches`.
    pub(super) proposals: mpsc::UnboundedSender<Proposal>,
    /// This process's proposal numbers (`Op::Sequenced`): `boot` is random per start.
    pub(super) boot: u64,
    pub(super) sequencer: Sequencer,
    /// Writes taken by this node and not settled yet: queued for the proposer or being
    /// proposed, retries included. A write whose client gave up (timed out, disconnected) is
    /// still here until the proposer gets its outcome, and may still be applied until then.
    pub(super) unsettled: AtomicUsize,
    /// Refuses writes while the data dir's disk is nearly full.
    pub(super) disk: DiskGuard,
}

/// Wall-clock milliseconds: the stamp a leader puts on entries and the "now" of local reads.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl RaftNode {
    /// Opens (or creates, or migrates) the node's data dir and starts Raft. A node with no state and
    /// no `join` list initialises itself as a one-member cluster.
    pub async fn start(opts: NodeOptions, pubsub: Arc<PubSub>) -> Result<Arc<RaftNode>, NodeError> {
        let path = opts.data_dir.clone();
        let open_err = |reason: String| NodeError::Open { path: path.clone(), reason };
        match data_dir::prepare(&path).await {
            Ok(_) => {}
            Err(DataDirError::Newer { found, supported }) => {
                return Err(NodeError::NewerFormat { path: path.clone(), found, supported })
            }
            Err(e) => return Err(open_err(e.to_string())),
        }
        let wal = path.join(log_store::WAL_DIR);
        let log = LogStore::open(&wal).map_err(|e| open_err(format!("{}: {e}", wal.display())))?;
        let replay_upto = log.last_index().unwrap_or(0);
        let committed = log.committed_index();
        let applied = Applied::new(pubsub, opts.node_id);
        let sm = StateMachine::open(SnapshotFile::new(&opts.data_dir), applied.clone(), replay_upto)
            .map_err(|e| NodeError::Storage(e.to_string()))?;

        let config = Config {
            cluster_name: "hipache-raft".into(),
            heartbeat_interval: 150,
            election_timeout_min: 750,
            election_timeout_max: 1500,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_interval(opts.snapshot_threshold, opts.node_id)),
            // Keep some log behind a snapshot so a follower that is slightly behind catches
            // up from the log instead of being sent a whole snapshot. Entries, not writes: a
            // pipeline's entry holds up to 1,024 writes, and the log caches recent entries in
            // memory, so 100 (up to ~100,000 writes) rather than the 1,000 kept before pipelines.
            max_in_snapshot_log_to_keep: opts.snapshot_threshold.min(100),
            max_payload_entries: 1024,
            ..Default::default()
        };
        let config = Arc::new(config.validate().map_err(|e| NodeError::Fatal(e.to_string()))?);
        let channels = Channels::new(opts.secret.clone(), opts.tls.clone(), opts.source_ip);
        let network = Network::new(channels.clone());
        let raft =
            Raft::new(opts.node_id, config, network, log, sm).await.map_err(|e| NodeError::Fatal(e.to_string()))?;

        let (proposals, queued) = mpsc::unbounded_channel();
        let node = Arc::new(RaftNode {
            id: opts.node_id,
            proposals,
            raft,
            applied,
            committed,
            channels,
            membership_lock: tokio::sync::Mutex::new(()),
            boot: rand::random(),
            sequencer: Sequencer::default(),
            unsettled: AtomicUsize::new(0),
            disk: DiskGuard::new(opts.data_dir.clone(), opts.disk_reserve),
        });
        let initialise =
            opts.join.is_empty() && !node.raft.is_initialized().await.map_err(|e| NodeError::Fatal(e.to_string()))?;
        if initialise {
            let members = BTreeMap::from([(opts.node_id, opts.info.clone())]);
            node.raft.initialize(members).await.map_err(|e| NodeError::Fatal(e.to_string()))?;
        }
        // A cluster whose only voter is this node elects it within an election timeout; wait
        // for that, so the first client after start-up is served rather than told TRYAGAIN.
        // (Right after `initialize` the metrics may not show the new membership yet.)
        if initialise || node.is_sole_voter() {
            node.wait_for_leader(Duration::from_secs(10)).await?;
        }
        tokio::spawn(propose_batches(Arc::downgrade(&node), queued));
        tokio::spawn(sweep_expired(Arc::downgrade(&node)));
        tokio::spawn(snapshot_when_due(Arc::downgrade(&node), node.applied.clone()));
        Ok(node)
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// True once this node has a membership: it initialised a cluster or was added to one.
    pub async fn is_initialized(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(false)
    }

    /// The state machine's outputs: local keyspace, pub/sub hub, apply listeners.
    /// The pub/sub hub of this node's subscribers (deliveries happen on apply).
    pub fn pubsub(&self) -> &Arc<PubSub> {
        &self.applied.pubsub
    }

    /// Registers a listener for applied batches; it is first told the current state.
    pub fn add_apply_listener(&self, listener: Arc<dyn ApplyListener>) {
        self.applied.add_listener(listener);
    }

    /// The applied state of this node (possibly behind the leader): index and keyspace of
    /// the same batch.
    pub fn applied_state(&self) -> Arc<AppliedState> {
        self.applied.state()
    }

    /// The keyspace as applied on this node (possibly behind the leader).
    pub fn local(&self) -> Arc<Keyspace> {
        self.applied.state().keyspace.clone()
    }

    pub(super) fn raft(&self) -> &Raft {
        &self.raft
    }

    /// A linearizable read: the leader confirms its leadership (ReadIndex) and reads.
    pub async fn read(&self, db: usize, argv: Vec<Bytes>) -> Result<Reply, NodeError> {
        let mut replies = self.read_many(db, vec![argv]).await?;
        replies.pop().ok_or_else(|| NodeError::Fatal("the leader answered no reply".into()))
    }

    /// Several reads against one linearizable state.
    pub async fn read_many(&self, db: usize, cmds: Vec<Vec<Bytes>>) -> Result<Vec<Reply>, NodeError> {
        match self.on_leader(Forwarded::Read { db: db as u8, cmds }).await? {
            Answer::Read(replies) => Ok(replies),
            other => Err(unexpected(other)),
        }
    }

    /// WATCH: the keys' versions at a linearizable point.
    pub async fn versions(&self, db: usize, keys: Vec<Bytes>) -> Result<Vec<u64>, NodeError> {
        match self.on_leader(Forwarded::Versions { db: db as u8, keys }).await? {
            Answer::Versions(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    /// The leader as this node knows it, with its addresses.
    pub(super) fn leader(&self) -> Option<(u64, NodeInfo)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let info = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, info))
    }

    pub(super) fn voters(&self) -> BTreeSet<u64> {
        self.raft.metrics().borrow().membership_config.membership().voter_ids().collect()
    }

    /// True once a membership without this node has been applied here.
    pub(super) fn is_removed(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        m.membership_config.log_id().is_some() && membership.get_node(&self.id).is_none()
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
        let members =
            membership.nodes().map(|(id, n)| (*id, n.clone(), membership.voter_ids().any(|v| v == *id))).collect();
        Status {
            id: self.id,
            role,
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index.unwrap_or(0),
            commit_index: self.committed.load(Ordering::Relaxed),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            purged_index: m.purged.map(|l| l.index),
            writes_in_flight: self.unsettled.load(Ordering::Relaxed),
            members,
        }
    }

    /// Stops Raft; what it acknowledged is on disk already.
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

    fn is_sole_voter(&self) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        let voters: Vec<u64> = metrics.membership_config.membership().voter_ids().collect();
        voters == [self.id]
    }

    pub(super) fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }
}

/// Asks openraft for a snapshot whenever the state machine says enough writes piled up since
/// the last one (`state_machine::snapshot_due`); openraft's own policy counts entries only.
async fn snapshot_when_due(node: std::sync::Weak<RaftNode>, applied: Arc<Applied>) {
    loop {
        applied.snapshot_due.notified().await;
        let Some(node) = node.upgrade() else { return };
        if let Err(e) = node.raft.trigger().snapshot().await {
            tracing::warn!(error = %e, "snapshot not triggered");
        }
    }
}

/// Entries between this node's snapshots. Each node encodes its whole keyspace for a snapshot
/// (60 ms of CPU for a 250,000-element list on the bench box); with one interval for all,
/// every node did it at the same log index and writes stalled up to 150 ms while the nodes
/// shared the CPU. Each node's interval is 0–30 % longer by its id, so the snapshots drift apart.
fn snapshot_interval(threshold: u64, node_id: u64) -> u64 {
    let threshold = threshold.max(1);
    threshold + threshold * (node_id % 4) / 10
}

#[cfg(test)]
mod tests {
    use super::snapshot_interval;

    #[test]
    fn nodes_snapshot_at_different_intervals_never_below_the_threshold() {
        let intervals: Vec<u64> = (1..=3).map(|id| snapshot_interval(5000, id)).collect();
        assert_eq!(intervals, [5500, 6000, 6500]);
        assert_eq!(snapshot_interval(5000, 4), 5000);
        assert_eq!(snapshot_interval(0, 3), 1, "a threshold of 0 is refused by the config; still never 0");
    }
}
