//! At-most-once application of proposers' writes (`Op::Sequenced`), with any number of a
//! node's proposals in flight at once.
//!
//! A proposer numbers its entries (`seq`, increasing within one process, `boot`) and may send
//! one again after an ambiguous failure. Entries of one proposer can reach the log out of
//! order (two forwards racing to the leader) and a retry can arrive after later numbers were
//! applied, so "the last number seen" cannot tell a retry from a new write. Instead, per
//! proposing process, the state machine keeps the reply of every number it applied that the
//! proposer may still send again, and a high-water mark below which the proposer has promised
//! never to send again (`settled_below`, carried by each entry). Replies below the mark are
//! forgotten, so the table holds about as many replies as the proposer has writes in flight.
//!
//! This is replicated state: it lives in the snapshot, so every replica and a restarted node
//! decide the same way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::types::Origin;
use crate::keyspace::Reply;

/// Processes of one node remembered at once. A node's earlier process can only matter while
/// one of its forwards is still on the wire, so a few restarts back is plenty; the one whose
/// last entry is oldest in the log is forgotten first (deterministic on every replica).
const BOOTS_PER_NODE: usize = 4;

/// What each proposing process had applied, keyed by `(node, boot)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Proposers(BTreeMap<(u64, u64), ProposerLog>);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProposerLog {
    /// Every number below this was answered by the proposer and is never sent again.
    settled_below: u64,
    /// Replies of the applied numbers at or above `settled_below`.
    replies: BTreeMap<u64, Reply>,
    /// Log index of this process's latest entry, to choose which process to forget.
    last_index: u64,
}

/// How an entry's number was received.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Not applied before: apply it.
    New,
    /// Applied before: answer this reply again, apply nothing.
    Repeat(Reply),
    /// Below the proposer's mark and not remembered: a copy that arrived after the proposer
    /// had answered (and stopped waiting for) it. Not applied.
    Settled,
}

impl Proposers {
    /// Decides about the entry at log `index` from `origin`. (A data-format-1 `Op::Tagged`
    /// follows that format's rule instead: its caller applies a `Settled` one.)
    pub fn admit(&mut self, origin: Origin, index: u64) -> Admission {
        let Some(log) = self.0.get_mut(&(origin.node, origin.boot)) else { return Admission::New };
        log.last_index = index;
        match log.replies.get(&origin.seq) {
            Some(reply) => Admission::Repeat(reply.clone()),
            None if origin.seq < log.settled_below => Admission::Settled,
            None => Admission::New,
        }
    }

    /// Records the reply of a `New` entry and moves the proposer's mark up to `settled_below`
    /// (a format-1 tag settles everything below its own number).
    pub fn record(&mut self, origin: Origin, settled_below: u64, index: u64, reply: Reply) {
        let key = (origin.node, origin.boot);
        if !self.0.contains_key(&key) {
            self.forget_old_boots(origin.node);
        }
        let log = self.0.entry(key).or_default();
        log.last_index = index;
        log.replies.insert(origin.seq, reply);
        if settled_below > log.settled_below {
            log.settled_below = settled_below;
            log.replies = log.replies.split_off(&settled_below);
        }
    }

    fn forget_old_boots(&mut self, node: u64) {
        loop {
            let boots = self.0.range((node, 0)..=(node, u64::MAX));
            if boots.clone().count() < BOOTS_PER_NODE {
                return;
            }
            let Some((&oldest, _)) = boots.min_by_key(|(_, log)| log.last_index) else { return };
            self.0.remove(&oldest);
        }
    }

    /// The table as data format 1 kept it: the last tag of each node and its reply.
    pub fn from_last_tags(tags: impl IntoIterator<Item = (u64, u64, u64, Reply)>) -> Proposers {
        let logs = tags.into_iter().map(|(node, boot, seq, reply)| {
            ((node, boot), ProposerLog { settled_below: seq, replies: BTreeMap::from([(seq, reply)]), last_index: 0 })
        });
        Proposers(logs.collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(boot: u64, seq: u64) -> Origin {
        Origin { node: 2, boot, seq }
    }

    #[test]
    fn replies_below_the_mark_are_forgotten_and_their_copies_refused() {
        let mut p = Proposers::default();
        assert_eq!(p.admit(origin(7, 3), 10), Admission::New);
        p.record(origin(7, 3), 1, 10, Reply::Int(3));
        assert_eq!(p.admit(origin(7, 1), 11), Admission::New, "an earlier number still in flight");
        p.record(origin(7, 1), 1, 11, Reply::Int(1));
        p.record(origin(7, 5), 4, 12, Reply::Int(5));
        assert_eq!(p.admit(origin(7, 5), 13), Admission::Repeat(Reply::Int(5)));
        assert_eq!(p.admit(origin(7, 3), 13), Admission::Settled, "below the mark: answered, forgotten");
        assert_eq!(p.admit(origin(7, 4), 13), Admission::New, "at the mark, never applied");
        assert_eq!(p.0[&(2, 7)].replies.len(), 1, "only the replies still awaited are kept");
    }

    #[test]
    fn each_process_of_a_node_numbers_alone_and_only_a_few_are_remembered() {
        let mut p = Proposers::default();
        for boot in 1..=BOOTS_PER_NODE as u64 + 2 {
            p.record(origin(boot, 1), 1, boot * 10, Reply::Int(boot as i64));
        }
        assert_eq!(p.0.len(), BOOTS_PER_NODE);
        assert_eq!(p.admit(origin(1, 1), 100), Admission::New, "the oldest process was forgotten");
        let last = BOOTS_PER_NODE as i64 + 2;
        assert_eq!(p.admit(origin(last as u64, 1), 100), Admission::Repeat(Reply::Int(last)));
    }
}
