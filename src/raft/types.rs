//! The openraft type configuration and the replicated entry format.
//!
//! A log entry carries Redis commands as argument vectors rather than a typed enum: Redis
//! decides some errors when a command runs (`LRANGE k a b` inside `MULTI` answers
//! `-ERR value is not an integer` at `EXEC`), so the pure core must parse at apply time to
//! give the same answers. The entry also carries the leader's clock (`stamp_ms`), which
//! `apply` uses as "now" so expiry is identical on every replica.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::snapshot_file::SavedBody;
use crate::keyspace::Reply;

/// Where a node can be reached; replicated in the membership so any node can find the
/// leader's admin endpoints without a separate directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// gRPC address: Raft transport and admin API.
    pub grpc: String,
    /// RESP admin listener.
    pub resp: String,
}

impl std::fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "grpc={} resp={}", self.grpc, self.resp)
    }
}

/// A key observed by `WATCH`, with the version (log index of its last change) seen then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedKey {
    pub db: u8,
    pub key: Bytes,
    pub version: u64,
}

/// What one log entry asks the state machine to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// One command (`RPUSH`, `DEL`, `PUBLISH`, …) in database `db`.
    Command { db: u8, argv: Vec<Bytes> },
    /// `MULTI … EXEC`: applied atomically, aborted if a watched key changed.
    Exec { db: u8, queued: Vec<Vec<Bytes>>, watched: Vec<WatchedKey> },
    /// Several clients' operations proposed together by the leader, applied in order; the
    /// reply is an array with each op's reply. Batching concurrent writes into one entry is
    /// what makes the log's fsync and hand-offs cost per batch rather than per write.
    Batch(Vec<Op>),
    /// Leader-proposed removal of every key whose deadline has passed (a Redis master's
    /// `DEL` of expired keys), so replicas free memory identically.
    Sweep,
    /// An op from one node's proposer as written by data format 1, when a proposer had one
    /// proposal in flight: still decoded and applied by the rules of then (a repeat of the
    /// node's latest tag is answered, anything else applied). New proposals are `Sequenced`.
    Tagged { origin: Origin, op: Box<Op> },
    /// An op from one node's proposer, numbered so it is applied at most once however many of
    /// the node's proposals are in flight: after an ambiguous failure (the leader died or the
    /// call broke after sending) the proposer sends the same op again, and the state machine
    /// answers a number it already applied with the reply it gave then. `settled_below` is
    /// the proposer's promise that it answered every lower number and will not send one again,
    /// which lets the state machine forget their replies. Last variant: entries written before
    /// it still decode.
    Sequenced { origin: Origin, settled_below: u64, op: Box<Op> },
}

/// Who proposed an op: a node's process (`boot` is random per start) and its proposal number,
/// increasing within one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub node: u64,
    pub boot: u64,
    pub seq: u64,
}

/// A replicated entry: the operation plus the proposing leader's wall clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub stamp_ms: u64,
    pub op: Op,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.op.fmt(f)
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Command { db, argv } => {
                let name = argv.first().map(|a| String::from_utf8_lossy(a)).unwrap_or_default();
                write!(f, "{name} (db {db}, {} args)", argv.len().saturating_sub(1))
            }
            Op::Exec { queued, .. } => write!(f, "EXEC ({} commands)", queued.len()),
            Op::Batch(ops) => write!(f, "batch of {} ops", ops.len()),
            Op::Sweep => f.write_str("expiry sweep"),
            Op::Tagged { origin, op } | Op::Sequenced { origin, op, .. } => {
                write!(f, "{op} from node {} #{}", origin.node, origin.seq)
            }
        }
    }
}

openraft::declare_raft_types!(
    /// hipache-raft's openraft configuration.
    pub TypeConfig:
        D = Request,
        R = Reply,
        NodeId = u64,
        Node = NodeInfo,
        SnapshotData = SnapshotData,
);

/// A snapshot's body as openraft carries it between the state machine and the network.
#[derive(Debug, Clone)]
pub enum SnapshotData {
    /// In memory: received from a leader, or none (a built snapshot's, whose meta is all
    /// openraft takes).
    Received(Vec<u8>),
    /// This node's snapshot file, read only when a follower is sent it.
    Saved(SavedBody),
}

impl Default for SnapshotData {
    fn default() -> SnapshotData {
        SnapshotData::Received(Vec::new())
    }
}

impl SnapshotData {
    /// The body's bytes (a saved one is read from its file: blocking).
    pub fn into_bytes(self) -> std::io::Result<Vec<u8>> {
        match self {
            SnapshotData::Received(bytes) => Ok(bytes),
            SnapshotData::Saved(body) => body.read_all(),
        }
    }
}

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type Vote = openraft::Vote<u64>;
pub type StoredMembership = openraft::StoredMembership<u64, NodeInfo>;
pub type SnapshotMeta = openraft::SnapshotMeta<u64, NodeInfo>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
pub type StorageError = openraft::StorageError<u64>;
