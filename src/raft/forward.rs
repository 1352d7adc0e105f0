//! Running admin operations on the leader, from any node.
//!
//! redis-cli cannot follow redirects, so a follower forwards on the client's behalf: the
//! operation travels to the leader's gRPC `Forward` call (a channel pool apart from Raft
//! replication, as openraft's maintainers advise), the leader runs it and the follower relays
//! the answer. After an ambiguous failure (the leader died, the call timed out or broke after
//! sending) a write is sent again, to the next leader, only when it is numbered (`Op::Sequenced`,
//! what the proposer sends): the state machine answers a number it already applied with its first
//! reply, so a retried write is applied once. Other writes are never re-sent.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::types::{NodeInfo, Op};
use crate::keyspace::Reply;

/// What a follower asks the leader to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Forwarded {
    /// Propose and apply; the leader stamps the entry with its clock.
    Write(Op),
    /// Linearizable reads: one ReadIndex on the leader, then every command against its
    /// applied keyspace (so the commands see one state).
    Read {
        db: u8,
        cmds: Vec<Vec<Bytes>>,
    },
    /// WATCH: the keys' versions at a linearizable point.
    Versions {
        db: u8,
        keys: Vec<Bytes>,
    },
    /// Add a node as learner, wait for it to catch up, then make it a voter.
    AddNode {
        id: u64,
        info: NodeInfo,
    },
    RemoveNode {
        id: u64,
    },
}

impl Forwarded {
    /// Safe to send again after a call that may have reached the leader: reads change nothing,
    /// and a numbered write is applied at most once (`Op::Sequenced`).
    pub fn replayable(&self) -> bool {
        match self {
            Forwarded::Write(op) => matches!(op, Op::Tagged { .. } | Op::Sequenced { .. }),
            Forwarded::Read { .. } | Forwarded::Versions { .. } => true,
            Forwarded::AddNode { .. } | Forwarded::RemoveNode { .. } => false,
        }
    }
}

/// The leader's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Answer {
    Written {
        reply: Reply,
        index: u64,
    },
    Read(Vec<Reply>),
    Versions(Vec<u64>),
    MembershipChanged {
        index: u64,
    },
    /// The receiver is not the leader (any more): try `leader`, or wait for an election.
    NotLeader {
        leader: Option<(u64, NodeInfo)>,
    },
    /// A failure that is certain to have changed nothing (e.g. a bad membership change).
    Refused(String),
}
