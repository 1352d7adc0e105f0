//! Write batching: every write of this node goes through one queue, and the writes waiting
//! together are proposed as one Raft entry (`Op::Batch`), tagged so a retry is applied once.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::forward::{Answer, Forwarded};
use super::leader::unexpected;
use super::node::{NodeError, RaftNode, Written};
use super::types::{Op, Origin};
use crate::keyspace::Reply;

/// How long a write taken on a follower waits for that follower to apply it before answering
/// anyway (the write is committed either way; only read-your-writes on this node is at stake).
const LOCAL_APPLY_PATIENCE: Duration = Duration::from_secs(2);

/// A write waiting to be proposed, and where its answer goes.
pub(super) type Proposal = (Op, oneshot::Sender<Result<Written, NodeError>>);

/// Most writes one entry carries (a pipeline counts each of its writes), unless one proposal
/// alone has more.
pub const MAX_BATCH: usize = 1024;
/// Batches on their way (to the leader, through the log) at once. While they are in flight,
/// new writes queue up and go out together in the next batch: under load each forward and
/// each Raft round (fsync, replication, apply) carries many clients' writes instead of one, as
/// etcd batches proposals. Batching at the node that took the write also makes a follower
/// forward one gRPC call per batch, not per write. Batches in flight together may reach the
/// log in either order, which is safe because each client's writes are in one proposal at a
/// time (a pipeline is one `Op::Batch`, `write_many`), and because `raft::dedup` applies each
/// numbered batch once in any order. Measured (docs/benchmarks.md, 50 clients on one node):
/// four in flight 50.7k RPUSH/s, one 36.6k.
const IN_FLIGHT: usize = 4;

/// Longest a batch waits for the writers the previous round answered (see `propose_batches`).
/// tokio's timer ticks in milliseconds, so this is at most about 2 ms.
const GATHER: Duration = Duration::from_millis(1);

pub(super) async fn propose_batches(node: std::sync::Weak<RaftNode>, mut queued: mpsc::UnboundedReceiver<Proposal>) {
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
        // Proposals left over from the previous batch go first, without waiting.
        if batch.is_empty() && queued.recv_many(&mut batch, MAX_BATCH).await == 0 {
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
        let rest = batch.split_off(fitting(&batch));
        let proposals = std::mem::replace(&mut batch, rest);
        answered = proposals.len();
        let Some(node) = node.upgrade() else { return };
        tokio::spawn(async move {
            node.propose(proposals).await;
            drop(slot);
        });
    }
}

/// How many of `batch`'s proposals, from the front, fit in one entry of at most `MAX_BATCH`
/// writes (at least one).
fn fitting(batch: &[Proposal]) -> usize {
    let mut writes = 0;
    let n = batch.iter().take_while(|(op, _)| {
        writes += match op {
            Op::Batch(ops) => ops.len(),
            _ => 1,
        };
        writes <= MAX_BATCH
    });
    n.count().max(1)
}

/// Numbers this process's proposals and knows which are still awaited: the lowest of those
/// is the `settled_below` each entry carries (see `raft::dedup`).
#[derive(Default)]
pub(super) struct Sequencer(Mutex<Numbers>);

#[derive(Default)]
struct Numbers {
    last: u64,
    awaited: BTreeSet<u64>,
}

/// A proposal's number while it is awaited; settled when dropped.
struct Number<'a> {
    sequencer: &'a Sequencer,
    seq: u64,
    settled_below: u64,
}

impl Sequencer {
    fn begin(&self) -> Number<'_> {
        let mut numbers = self.0.lock().unwrap_or_else(|e| e.into_inner());
        numbers.last += 1;
        let seq = numbers.last;
        numbers.awaited.insert(seq);
        let settled_below = numbers.awaited.first().copied().unwrap_or(seq);
        Number { sequencer: self, seq, settled_below }
    }
}

impl Drop for Number<'_> {
    fn drop(&mut self) {
        self.sequencer.0.lock().unwrap_or_else(|e| e.into_inner()).awaited.remove(&self.seq);
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
        let replies = match self.disk.check() {
            Ok(()) => self.propose_entry(op, n).await,
            Err(e) => vec![Err(e); n],
        };
        self.unsettled.fetch_sub(n, Ordering::Relaxed);
        for (tx, reply) in senders.into_iter().zip(replies) {
            let _ = tx.send(reply);
        }
    }

    /// Numbers `op` (carrying `n` writes), has it applied through the leader and returns each
    /// write's reply.
    async fn propose_entry(&self, op: Op, n: usize) -> Vec<Result<Written, NodeError>> {
        let number = self.sequencer.begin();
        let origin = Origin { node: self.id, boot: self.boot, seq: number.seq };
        let op = Op::Sequenced { origin, settled_below: number.settled_below, op: Box::new(op) };
        match self.on_leader(Forwarded::Write(op)).await {
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
        }
    }
}

impl RaftNode {
    /// Proposes `op` through the leader and waits until it is durable and applied there.
    /// Refused (`DiskFull`) while the data dir's free space is below the reserve: checked once
    /// per proposed entry, not per write (a `statvfs` per write was 4 % of the runtime's CPU
    /// at 50 clients).
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn write(&self, op: Op) -> Result<Written, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.unsettled.fetch_add(1, Ordering::Relaxed);
        if self.proposals.send((op, tx)).is_err() {
            self.unsettled.fetch_sub(1, Ordering::Relaxed);
            return Err(NodeError::Fatal("the proposer stopped".into()));
        }
        rx.await.map_err(|_| NodeError::Fatal("the proposer dropped a write".into()))?
    }

    /// Proposes several writes in order, as one client's pipeline: ONE proposal (an
    /// `Op::Batch`), so they travel together in one entry, applied in the order given, and
    /// nothing else in flight can come between them. Each gets its own reply, as if sent alone.
    pub async fn write_many(&self, mut ops: Vec<Op>) -> Vec<Result<Written, NodeError>> {
        let n = ops.len();
        if n <= 1 {
            return match ops.pop() {
                Some(op) => vec![self.write(op).await],
                None => Vec::new(),
            };
        }
        match self.write(Op::Batch(ops)).await {
            Ok(Written { reply: Reply::Array(items), index }) if items.len() == n => {
                items.into_iter().map(|reply| Ok(Written { reply, index })).collect()
            }
            Ok(Written { reply, index }) => {
                let reply = Reply::err(format!("ERR unexpected pipeline reply {reply:?}"));
                vec![Ok(Written { reply, index }); n]
            }
            Err(e) => vec![Err(e); n],
        }
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
}
