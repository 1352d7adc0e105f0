//! The node facade: the only door from RESP, gRPC and the proxy into Raft.
//!
//! Everything outside `raft/` talks to [`RaftNode`] with our own types (`Op`, `Reply`,
//! `Keyspace`), so openraft stays an implementation detail of this directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use openraft::error::{ChangeMembershipError, CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, Config, ServerState, SnapshotPolicy};
use tokio::sync::{mpsc, oneshot};

use super::durable::Durable;
use super::forward::{Answer, Forwarded};
use super::log_store::{self, LogStore};
use super::network::{decode, encode, Channels, Network};
use super::state_machine::{Applied, StateMachine};
use super::types::{NodeInfo, Op, Origin, Raft, Request};
use crate::peer_tls::PeerTls;
use crate::proto::raft_v1::{AppliedRequest, Blob, JoinRequest};
use crate::pubsub::PubSub;
use crate::routes::{Keyspace, Reply};
use crate::secret::Secret;

/// How long a forwarded call may take before the client is told the outcome is unknown.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// Leader hops and elections a call waits through before answering TRYAGAIN.
const MAX_ATTEMPTS: usize = 8;
/// How long a call waits for a leader other than the one that just failed before trying
/// again anyway (that leader may have been slow rather than gone): two election timeouts.
const NEW_LEADER_PATIENCE: Duration = Duration::from_secs(3);
/// How long a write taken on a follower waits for that follower to apply it before answering
/// anyway (the write is committed either way; only read-your-writes on this node is at stake).
const LOCAL_APPLY_PATIENCE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    #[error("cannot open the data directory {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
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
    /// The request was refused without changing anything (bad membership change, wrong secret).
    #[error("{0}")]
    Refused(String),
    #[error("raft stopped: {0}")]
    Fatal(String),
}

/// Maps a node error to the gRPC status admin clients and peers see.
pub fn status_of(e: NodeError) -> tonic::Status {
    match &e {
        NodeError::NoLeader | NodeError::Unavailable { .. } | NodeError::NotLeader { .. } => {
            tonic::Status::unavailable(e.to_string())
        }
        NodeError::Removed(_) => tonic::Status::failed_precondition(e.to_string()),
        NodeError::Refused(m) if m.contains("secret") => tonic::Status::unauthenticated(m.clone()),
        NodeError::Refused(_) => tonic::Status::invalid_argument(e.to_string()),
        _ => tonic::Status::internal(e.to_string()),
    }
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
    channels: Channels,
    /// One membership change at a time on this leader: Raft allows no overlapping changes.
    membership_lock: tokio::sync::Mutex<()>,
    /// Writes waiting to be proposed; see `propose_batches`.
    proposals: mpsc::UnboundedSender<Proposal>,
    /// This process's proposal tags (`Op::Tagged`): random per start, then numbered.
    boot: u64,
    next_seq: AtomicU64,
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
        let durable = Durable::open(&db, &path).map_err(|e| open_err(sled::Error::Io(e)))?;
        let found = log_store::data_format(&durable).map_err(open_err)?;
        if found > log_store::DATA_FORMAT {
            return Err(NodeError::NewerFormat { path: path.clone(), found, supported: log_store::DATA_FORMAT });
        }
        let log = LogStore::open(&durable).map_err(open_err)?;
        let replay_upto = log.last_index().map_err(open_err)?.unwrap_or(0);
        let committed = log.committed_index();
        let applied = Applied::new(pubsub, opts.node_id);
        let sm = StateMachine::open(&durable, applied.clone(), replay_upto)
            .map_err(|e| NodeError::Storage(e.to_string()))?;

        let config = Config {
            cluster_name: "hipache-raft".into(),
            heartbeat_interval: 150,
            election_timeout_min: 750,
            election_timeout_max: 1500,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_interval(opts.snapshot_threshold, opts.node_id)),
            // Keep some log behind a snapshot so a follower that is slightly behind catches
            // up from the log instead of being sent a whole snapshot.
            max_in_snapshot_log_to_keep: opts.snapshot_threshold.min(1000),
            max_payload_entries: 1024,
            ..Default::default()
        };
        let config = Arc::new(config.validate().map_err(|e| NodeError::Fatal(e.to_string()))?);
        let channels = Channels::new(opts.secret.clone(), opts.tls.clone());
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
            next_seq: AtomicU64::new(1),
            _db: db,
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
    pub fn applied(&self) -> &Arc<Applied> {
        &self.applied
    }

    /// The keyspace as applied on this node (possibly behind the leader).
    pub fn local(&self) -> Arc<Keyspace> {
        self.applied.keyspace.load_full()
    }

    pub(super) fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Proposes `op` through the leader and waits until it is durable and applied there.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn write(&self, op: Op) -> Result<Written, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.proposals.send((op, tx)).map_err(|_| NodeError::Fatal("the proposer stopped".into()))?;
        rx.await.map_err(|_| NodeError::Fatal("the proposer dropped a write".into()))?
    }

    /// Proposes several writes in order, as one client's pipeline: they join the proposer's
    /// queue back to back, so they travel in as few entries as the batch size allows (one for
    /// up to 1,024) instead of one Raft round each, and are applied in the order given.
    /// Each gets its own reply, as if sent alone.
    pub async fn write_many(&self, ops: Vec<Op>) -> Vec<Result<Written, NodeError>> {
        let mut answers = Vec::with_capacity(ops.len());
        for op in ops {
            let (tx, rx) = oneshot::channel();
            let sent = self.proposals.send((op, tx)).is_ok();
            answers.push(sent.then_some(rx));
        }
        let mut replies = Vec::with_capacity(answers.len());
        for answer in answers {
            replies.push(match answer {
                Some(rx) => rx.await.unwrap_or_else(|_| Err(NodeError::Fatal("the proposer dropped a write".into()))),
                None => Err(NodeError::Fatal("the proposer stopped".into())),
            });
        }
        replies
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

    /// Adds `id` as a learner, waits for it to catch up, then promotes it to voter. Returns
    /// the leader's id.
    pub async fn add_node(&self, id: u64, info: NodeInfo) -> Result<u64, NodeError> {
        self.membership(Forwarded::AddNode { id, info }).await
    }

    pub async fn remove_node(&self, id: u64) -> Result<u64, NodeError> {
        self.membership(Forwarded::RemoveNode { id }).await
    }

    async fn membership(&self, op: Forwarded) -> Result<u64, NodeError> {
        match self.on_leader(op).await? {
            Answer::MembershipChanged { .. } => Ok(self.status().leader.unwrap_or(self.id)),
            other => Err(unexpected(other)),
        }
    }

    /// Runs `op` on the current leader: here if this node leads, else over gRPC. Hops to a
    /// new leader and waits out elections, at most `MAX_ATTEMPTS` calls.
    async fn on_leader(&self, op: Forwarded) -> Result<Answer, NodeError> {
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
            let answer = match target {
                None => {
                    self.wait_for_leader(Duration::from_secs(3)).await.ok();
                    continue;
                }
                Some((id, _)) if id == self.id => self.run_as_leader(op.clone()).await?,
                Some((id, info)) => match self.forward(id, &info, &op).await {
                    Err(e @ NodeError::Unavailable { .. }) if op.replayable() => {
                        tracing::info!(error = %e, "leader call failed; trying again after the election");
                        if matches!(op, Forwarded::Write(_)) {
                            ambiguous = Some(e);
                        }
                        Answer::NotLeader { leader: None }
                    }
                    other => other?,
                },
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
            Err(s) if s.code() == tonic::Code::Unauthenticated => Err(NodeError::Refused(s.message().to_string())),
            Err(s) => Err(unavailable(s.message().to_string())),
        }
    }

    /// Runs a (possibly forwarded) operation with this node as leader; answers `NotLeader`
    /// when it is not.
    pub(super) async fn run_as_leader(&self, op: Forwarded) -> Result<Answer, NodeError> {
        match op {
            Forwarded::Write(op) => {
                let req = Request { stamp_ms: now_ms(), op };
                match self.raft.client_write(req).await {
                    Ok(resp) => Ok(Answer::Written { reply: resp.data, index: resp.log_id.index }),
                    Err(e) => self.refusal(e),
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
            Forwarded::AddNode { id, info } => {
                let _one_at_a_time = self.membership_lock.lock().await;
                self.grow(id, info).await
            }
            Forwarded::RemoveNode { id } => {
                let _one_at_a_time = self.membership_lock.lock().await;
                let voters: BTreeSet<u64> = self.voters();
                if !voters.contains(&id) && !self.status().members.iter().any(|(m, ..)| *m == id) {
                    return Ok(Answer::Refused(format!("node {id} is not a member")));
                }
                if voters.len() == 1 && voters.contains(&id) {
                    return Ok(Answer::Refused(format!("node {id} is the only voter and cannot be removed")));
                }
                let change = ChangeMembers::RemoveNodes(BTreeSet::from([id]));
                let change =
                    if voters.contains(&id) { ChangeMembers::RemoveVoters(BTreeSet::from([id])) } else { change };
                let first = self.change(change).await?;
                if !matches!(first, Answer::MembershipChanged { .. }) || !voters.contains(&id) {
                    return Ok(first);
                }
                // Removing a voter first demotes it (joint consensus); then drop it entirely.
                self.change(ChangeMembers::RemoveNodes(BTreeSet::from([id]))).await
            }
        }
    }

    async fn grow(&self, id: u64, info: NodeInfo) -> Result<Answer, NodeError> {
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

    /// What a failed proposal or membership change tells the caller: try the leader named,
    /// or nothing changed and why, or the node stopped.
    fn refusal(&self, e: RaftError<u64, ClientWriteError<u64, NodeInfo>>) -> Result<Answer, NodeError> {
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
            Ok(_) => Ok(None),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Ok(Some(self.not_leader(f.leader_id, f.leader_node)))
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => {
                Ok(Some(Answer::NotLeader { leader: None }))
            }
            Err(RaftError::Fatal(f)) => Err(NodeError::Fatal(f.to_string())),
        }
    }

    fn not_leader(&self, id: Option<u64>, node: Option<NodeInfo>) -> Answer {
        match (id, node) {
            (Some(id), Some(node)) if id != self.id => Answer::NotLeader { leader: Some((id, node)) },
            _ => Answer::NotLeader { leader: None },
        }
    }

    /// The leader as this node knows it, with its addresses.
    fn leader(&self) -> Option<(u64, NodeInfo)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let info = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, info))
    }

    fn voters(&self) -> BTreeSet<u64> {
        self.raft.metrics().borrow().membership_config.membership().voter_ids().collect()
    }

    /// True once a membership without this node has been applied here.
    fn is_removed(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        m.membership_config.log_id().is_some() && membership.get_node(&self.id).is_none()
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
                    Err(s) if matches!(s.code(), tonic::Code::Unauthenticated | tonic::Code::InvalidArgument) => {
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
            members: Vec::new(),
        })
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

    /// Waits (bounded) until this node has applied `index`. The leader answers a forwarded
    /// write once IT has applied it; the client must also find it on the node it talked to:
    /// its local reads, its proxy, and `WAIT n`, which counts only the OTHER nodes.
    async fn applied_here(&self, index: u64) {
        let wait = self.raft.wait(Some(LOCAL_APPLY_PATIENCE));
        if let Err(e) = wait.applied_index_at_least(Some(index), "write applied here").await {
            tracing::warn!(index, error = %e, "answering a committed write this node has not applied yet");
        }
    }

    /// Waits (bounded) until a leader other than `old` is known; returns either way.
    async fn wait_for_new_leader(&self, old: Option<u64>, timeout: Duration) {
        let known = |m: &openraft::RaftMetrics<u64, NodeInfo>| m.current_leader.is_some() && m.current_leader != old;
        if self.raft.wait(Some(timeout)).metrics(known, "a new leader").await.is_err() {
            tracing::debug!(?old, "no other leader in time; trying again");
        }
    }

    fn is_sole_voter(&self) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        let voters: Vec<u64> = metrics.membership_config.membership().voter_ids().collect();
        voters == [self.id]
    }

    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
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

/// A write waiting to be proposed, and where its answer goes.
type Proposal = (Op, oneshot::Sender<Result<Written, NodeError>>);

/// Most writes one entry carries.
const MAX_BATCH: usize = 1024;
/// Batches on their way (to the leader, through the log) at once. While one is in flight, new
/// writes queue up and go out together in the next batch: under load each forward and each
/// Raft round (fsync, replication, apply) carries many clients' writes instead of one, as etcd
/// batches proposals. Batching at the node that took the write also makes a follower forward
/// one gRPC call per batch, not per write. One in flight measured best (docs/benchmarks.md:
/// 40.8k RPUSH/s on one node against 22.8k with four): bigger batches, fewer rounds.
const IN_FLIGHT: usize = 1;

/// Longest a batch waits for the writers the previous round answered (see `propose_batches`).
/// tokio's timer ticks in milliseconds, so this is at most about 2 ms.
const GATHER: Duration = Duration::from_millis(1);

async fn propose_batches(node: std::sync::Weak<RaftNode>, mut queued: mpsc::UnboundedReceiver<Proposal>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut batch = Vec::new();
    // Writers in the batch that was in flight. Closed-loop clients (redis-benchmark, a
    // health checker marking backends) send their next write as soon as they are answered:
    // proposing at once would send only the writes that queued meanwhile, and the clients
    // would split into two groups taking turns, each round carrying half of them (measured:
    // 24 writes per entry with 50 clients). Waiting briefly for as many writes as were
    // answered keeps them in one round. A lone writer is never delayed: its write is the one
    // the previous round answered.
    let mut answered = 0;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let waiting = queued.len();
        if queued.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let want = (waiting + answered).min(MAX_BATCH);
        if batch.len() < want {
            let gather = async {
                while batch.len() < want {
                    let room = want - batch.len();
                    if queued.recv_many(&mut batch, room).await == 0 {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(GATHER, gather).await;
        }
        let proposals = std::mem::take(&mut batch);
        answered = proposals.len();
        let Some(node) = node.upgrade() else { return };
        tokio::spawn(async move {
            node.propose(proposals).await;
            drop(slot);
        });
    }
}

impl RaftNode {
    /// Proposes one entry for `proposals` (a plain op when alone, else an `Op::Batch`) through
    /// the leader and hands each write its own reply.
    async fn propose(&self, proposals: Vec<Proposal>) {
        let (mut ops, senders): (Vec<Op>, Vec<_>) = proposals.into_iter().unzip();
        let n = ops.len();
        let op = match ops.pop() {
            Some(op) if ops.is_empty() => op,
            Some(last) => {
                ops.push(last);
                Op::Batch(ops)
            }
            None => return,
        };
        let origin = Origin { node: self.id, boot: self.boot, seq: self.next_seq.fetch_add(1, Ordering::Relaxed) };
        let op = Op::Tagged { origin, op: Box::new(op) };
        let replies: Vec<Result<Written, NodeError>> = match self.on_leader(Forwarded::Write(op)).await {
            Ok(Answer::Written { reply, index }) => {
                self.applied_here(index).await;
                let reply = self.applied.own_reply(origin.boot, origin.seq).unwrap_or(reply);
                let replies = match reply {
                    Reply::Array(items) if n > 1 && items.len() == n => items,
                    single if n == 1 => vec![single],
                    other => vec![Reply::err(format!("ERR unexpected batch reply {other:?}")); n],
                };
                replies.into_iter().map(|reply| Ok(Written { reply, index })).collect()
            }
            Ok(other) => {
                let e = unexpected(other);
                (0..n).map(|_| Err(e.clone())).collect()
            }
            Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
        };
        for (tx, reply) in senders.into_iter().zip(replies) {
            let _ = tx.send(reply);
        }
    }
}

fn unexpected(answer: Answer) -> NodeError {
    NodeError::Fatal(format!("unexpected answer from the leader: {answer:?}"))
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
            if let Err(e) = node.run_as_leader(Forwarded::Write(Op::Sweep)).await {
                tracing::debug!(error = %e, "expiry sweep not proposed");
            }
        }
    }
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
