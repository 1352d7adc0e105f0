//! The replicated keyspace as an openraft state machine, persisted as snapshot files
//! (`snapshot_file`).
//!
//! - `apply` runs each entry through the pure core (`keyspace::Keyspace`) in memory only. What
//!   makes a write durable is its log entry (flushed before it commits); the state machine is
//!   persisted by the snapshots openraft asks for every `snapshotThreshold` entries. On start
//!   it loads the latest snapshot and openraft re-applies the log after it. Writing each
//!   changed key to sled on apply, as an earlier version did, re-serialised a whole list per
//!   RPUSH: quadratic in the list's length (redis-benchmark's 100,000 RPUSH to one list).
//! - The in-memory keyspace is a persistent map: publishing it after each batch (local reads,
//!   routing view) and handing it to the snapshot builder are O(1) clones, and the builder
//!   serialises a consistent view while `apply` goes on.
//! - Pub/sub messages are delivered on apply, except for entries that were already in the log
//!   when the process started: a restart replays the log and must not replay messages.

// openraft's StorageError is large, and it is the error type openraft's storage traits require.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use defer_drop::DeferDrop;
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};

use super::dedup::{Admission, Proposers};
use super::snapshot_body::SnapshotBody;
use super::snapshot_file::SnapshotFile;
use super::types::{
    Entry, LogId, Op, Origin, Snapshot, SnapshotData, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::keyspace::{ApplyCtx, Change, Keyspace, Publisher, Reply, Watch, DATABASES};
use crate::pubsub::PubSub;

/// Told about every applied batch, after the new state is published. The proxy's routing
/// view and the gRPC Watch log implement it; it must be quick (it runs on the apply path).
pub trait ApplyListener: Send + Sync {
    /// `changes` lists the keys the batch touched, entry by entry; `reload` means "everything
    /// may have changed" (snapshot installed), so rebuild from `state.keyspace`.
    fn applied(&self, state: &AppliedState, changes: &[Changed], reload: bool);
}

/// A key one log entry changed. Listed per entry, not per applied batch: how openraft groups
/// entries into batches differs from node to node, the entries do not, so a Watch event
/// names the same index on every node.
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    pub index: u64,
    pub change: Change,
}

/// One applied state: the keyspace and the log index it reflects, published together behind
/// one `ArcSwap`, so no reader sees the index of one batch with the keyspace of another (a
/// Watch starting between two separate stores could miss a batch).
#[derive(Debug, Default)]
pub struct AppliedState {
    pub index: u64,
    pub keyspace: Arc<Keyspace>,
}

/// The state machine's outputs that the rest of the node reads.
pub struct Applied {
    /// The state after the last applied batch: local (READONLY) reads, WATCH versions, the
    /// gRPC Watch's starting point.
    state: ArcSwap<AppliedState>,
    pub pubsub: Arc<PubSub>,
    listeners: std::sync::RwLock<Vec<Arc<dyn ApplyListener>>>,
    /// This node's id, to recognise its own proposals among the applied entries.
    node_id: u64,
    /// The replies this node's apply gave to its own proposals not yet taken by the proposer,
    /// by `(boot, seq)`; only those still awaited are kept (see `keep_own_reply`).
    own: std::sync::Mutex<BTreeMap<(u64, u64), Reply>>,
    /// Woken when enough writes were applied since the last snapshot (`snapshot_due`).
    pub snapshot_due: tokio::sync::Notify,
}

impl Applied {
    pub fn new(pubsub: Arc<PubSub>, node_id: u64) -> Arc<Applied> {
        Arc::new(Applied {
            state: ArcSwap::from_pointee(AppliedState::default()),
            pubsub,
            listeners: Default::default(),
            node_id,
            own: Default::default(),
            snapshot_due: tokio::sync::Notify::new(),
        })
    }

    /// The reply this node's apply gave to its own proposal `(boot, seq)`, once applied here.
    /// Apply is deterministic, so it equals the leader's reply except where the answer is
    /// about the node itself: PUBLISH counts the subscribers of the node that took it, as in
    /// Redis Cluster.
    pub fn own_reply(&self, boot: u64, seq: u64) -> Option<Reply> {
        self.own.lock().unwrap_or_else(|e| e.into_inner()).remove(&(boot, seq))
    }

    /// Keeps the reply to this node's proposal `origin`, dropping those its proposer no longer
    /// waits for (numbers below `settled_below`, earlier processes).
    fn keep_own_reply(&self, origin: Origin, settled_below: u64, reply: Reply) {
        let mut own = self.own.lock().unwrap_or_else(|e| e.into_inner());
        own.retain(|&(boot, seq), _| boot == origin.boot && seq >= settled_below);
        own.insert((origin.boot, origin.seq), reply);
    }

    /// The last published state (index and keyspace of the same batch).
    pub fn state(&self) -> Arc<AppliedState> {
        self.state.load_full()
    }

    /// Holding the write lock while the listener loads the current state means no batch
    /// applied meanwhile can slip past it: `publish` stores its state, then waits for the
    /// lock and tells the new listener too (applying a change twice is harmless).
    pub fn add_listener(&self, listener: Arc<dyn ApplyListener>) {
        let mut listeners = self.listeners.write().unwrap_or_else(|e| e.into_inner());
        listener.applied(&self.state.load(), &[], true);
        listeners.push(listener);
    }

    fn publish(&self, keyspace: Keyspace, index: Option<LogId>, changes: &[Changed], reload: bool) {
        let state = Arc::new(AppliedState { index: index.map_or(0, |l| l.index), keyspace: Arc::new(keyspace) });
        let replaced = self.state.swap(state.clone());
        for l in self.listeners.read().unwrap_or_else(|e| e.into_inner()).iter() {
            l.applied(&state, changes, reload);
        }
        // The replaced state may hold the last handle on the path copies that this batch's
        // writes made: freeing them is a third of the cost of a bulk load's apply, so it
        // happens on a background thread, not on the one applying the next batch.
        drop(DeferDrop::new(replaced));
    }
}

pub struct StateMachine {
    snapshot_file: SnapshotFile,
    keyspace: Keyspace,
    proposers: Proposers,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    out: Arc<Applied>,
    /// Entries at or below this index were in the log before this process started.
    replay_upto: u64,
    /// Writes (a batch's ops counted one by one) applied since the state the last snapshot
    /// was built from, and whether `Applied::snapshot_due` was woken for them.
    writes_since_snapshot: u64,
    snapshot_requested: bool,
}

/// The fewest writes between two snapshots that the write count alone triggers.
const MIN_WRITES_BETWEEN_SNAPSHOTS: u64 = 50_000;

/// Whether a snapshot is due after `writes` writes applied since the last one, with `keys`
/// keys in the keyspace, whatever the number of log entries (`snapshotThreshold`).
///
/// An entry holds one write or a whole pipeline of them (up to 1,024), so an entry count
/// alone let the log grow to millions of writes, each replayed at every restart. Counting
/// writes bounds the replay; scaling with the keyspace (an eighth of it) keeps a snapshot,
/// which costs O(keys), at O(1) amortised per write.
fn snapshot_due(writes: u64, keys: u64) -> bool {
    writes >= (keys / 8).max(MIN_WRITES_BETWEEN_SNAPSHOTS)
}

/// Writes an op holds: a batch's ops one by one.
fn writes_in(op: &Op) -> u64 {
    match op {
        Op::Batch(ops) => ops.iter().map(writes_in).sum(),
        Op::Tagged { op, .. } | Op::Sequenced { op, .. } => writes_in(op),
        Op::Command { .. } | Op::Exec { .. } | Op::Sweep => 1,
    }
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(&e).into()
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}

/// Hands PUBLISH to the node's subscribers, or drops it during start-up replay.
struct Delivery<'a> {
    pubsub: &'a PubSub,
    live: bool,
}

impl Publisher for Delivery<'_> {
    fn publish(&mut self, channel: &Bytes, message: &Bytes) -> i64 {
        if self.live {
            self.pubsub.publish(channel, message)
        } else {
            0
        }
    }
}

impl StateMachine {
    /// Loads the latest snapshot (openraft re-applies the log after it); `replay_upto` is the
    /// last log index on disk at start-up.
    pub fn open(
        snapshot_file: SnapshotFile,
        out: Arc<Applied>,
        replay_upto: u64,
    ) -> Result<StateMachine, StorageError> {
        let (body, last_applied, membership) = match snapshot_file.load().map_err(read_err)? {
            Some((meta, body)) => (
                SnapshotBody::decode_from(body.reader(), body.len()).map_err(read_err)?,
                meta.last_log_id,
                meta.last_membership,
            ),
            None => (Keyspace::new().into(), None, StoredMembership::default()),
        };
        let SnapshotBody { keyspace, proposers } = body;
        out.publish(keyspace.clone(), last_applied, &[], true);
        Ok(StateMachine {
            snapshot_file,
            keyspace,
            proposers,
            last_applied,
            membership,
            out,
            replay_upto,
            writes_since_snapshot: 0,
            snapshot_requested: false,
        })
    }

    fn apply_one(&mut self, entry: &Entry) -> Reply {
        self.last_applied = Some(entry.log_id);
        let req = match &entry.payload {
            EntryPayload::Blank => return Reply::ok(),
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                return Reply::ok();
            }
            EntryPayload::Normal(req) => req,
        };
        self.writes_since_snapshot += writes_in(&req.op);
        let index = entry.log_id.index;
        let live = index > self.replay_upto;
        let mut delivery = Delivery { pubsub: &self.out.pubsub, live };
        let mut ctx = ApplyCtx { index, now_ms: req.stamp_ms, publisher: &mut delivery };
        let (origin, settled_below, op, format_1) = match &req.op {
            Op::Sequenced { origin, settled_below, op } => (*origin, *settled_below, op, false),
            Op::Tagged { origin, op } => (*origin, origin.seq, op, true),
            op => return apply_op(&mut self.keyspace, op, &mut ctx),
        };
        match self.proposers.admit(origin, index) {
            // A retry of an op that did land: its reply again, nothing applied or published twice.
            Admission::Repeat(reply) => return reply,
            Admission::Settled if !format_1 => {
                return Reply::err("ERR write arrived after its proposer stopped waiting for it; not applied")
            }
            Admission::Settled | Admission::New => {}
        }
        let reply = apply_op(&mut self.keyspace, op, &mut ctx);
        self.proposers.record(origin, settled_below, index, reply.clone());
        if origin.node == self.out.node_id && live {
            self.out.keep_own_reply(origin, settled_below, reply.clone());
        }
        reply
    }
}

/// One operation against the keyspace; a `Batch` answers an array with one reply per op.
fn apply_op(keyspace: &mut Keyspace, op: &Op, ctx: &mut ApplyCtx<'_>) -> Reply {
    match op {
        Op::Batch(ops) => Reply::Array(ops.iter().map(|op| apply_op(keyspace, op, ctx)).collect()),
        Op::Command { db, argv } => keyspace.apply(*db as usize, argv, ctx),
        Op::Exec { db, queued, watched } => {
            let watched: Vec<Watch> =
                watched.iter().map(|w| Watch { db: w.db as usize, key: w.key.clone(), version: w.version }).collect();
            keyspace.exec(*db as usize, queued, &watched, ctx)
        }
        Op::Sweep => {
            keyspace.sweep(ctx);
            Reply::ok()
        }
        // Only proposers number, and only whole entries; a nested number is just its op.
        Op::Tagged { op, .. } | Op::Sequenced { op, .. } => apply_op(keyspace, op, ctx),
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut changes = Vec::new();
        let replies: Vec<Reply> = entries
            .into_iter()
            .map(|e| {
                let reply = self.apply_one(&e);
                let index = e.log_id.index;
                changes.extend(self.keyspace.take_changes().into_iter().map(|change| Changed { index, change }));
                reply
            })
            .collect();
        self.out.publish(self.keyspace.clone(), self.last_applied, &changes, false);
        let keys = (0..DATABASES).map(|db| self.keyspace.db_stats(db).0 as u64).sum();
        if !self.snapshot_requested && snapshot_due(self.writes_since_snapshot, keys) {
            self.snapshot_requested = true;
            self.out.snapshot_due.notify_one();
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        (self.writes_since_snapshot, self.snapshot_requested) = (0, false);
        SnapshotBuilder {
            snapshot_file: self.snapshot_file.clone(),
            keyspace: self.keyspace.clone(),
            proposers: self.proposers.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError> {
        Ok(Box::default())
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<SnapshotData>) -> Result<(), StorageError> {
        let snapshot =
            tokio::task::spawn_blocking(move || snapshot.into_bytes()).await.map_err(read_err)?.map_err(read_err)?;
        let body = SnapshotBody::decode(&snapshot)
            .map_err(|e| StorageError::from(StorageIOError::read_snapshot(Some(meta.signature()), &e)))?;
        self.keyspace = body.keyspace;
        self.proposers = body.proposers;
        self.keyspace.take_changes();
        (self.writes_since_snapshot, self.snapshot_requested) = (0, false);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        let (file, meta_owned) = (self.snapshot_file.clone(), meta.clone());
        let save = move || save_snapshot(&file, &meta_owned, |w| w.write_all(&snapshot));
        tokio::task::spawn_blocking(save).await.map_err(sm_err)??;
        self.out.publish(self.keyspace.clone(), self.last_applied, &[], true);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let file = self.snapshot_file.clone();
        let loaded = tokio::task::spawn_blocking(move || file.load()).await.map_err(read_err)?.map_err(read_err)?;
        Ok(loaded.map(|(meta, body)| Snapshot { meta, snapshot: Box::new(SnapshotData::Saved(body)) }))
    }
}

/// Makes `meta` with the body `write_body` streams the current snapshot, durably. Blocking.
fn save_snapshot(
    file: &SnapshotFile,
    meta: &SnapshotMeta,
    write_body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), StorageError> {
    if !file.save(meta, write_body).map_err(sm_err)? {
        tracing::info!(snapshot = %meta.snapshot_id, "snapshot not saved: the file holds a later one");
    }
    Ok(())
}

/// A consistent, immutable view of the state machine at one applied index.
pub struct SnapshotBuilder {
    snapshot_file: SnapshotFile,
    keyspace: Keyspace,
    proposers: Proposers,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    /// Serialising a large keyspace takes CPU (about a second for a million frontends) and
    /// the sync waits on the disk: neither may hold one of the runtime's workers (a node may
    /// have only one), so both run on a blocking thread, streaming to the snapshot file. The
    /// CPU burst itself still slows writes while it runs (docs/benchmarks.md).
    ///
    /// The returned snapshot's data is empty: openraft 0.9 takes only the meta of a built
    /// snapshot (`core/sm/worker.rs`) and reads the data back with `get_current_snapshot` when
    /// a follower needs it, so the body is never held in memory whole here.
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let body = SnapshotBody { keyspace: self.keyspace.clone(), proposers: self.proposers.clone() };
        let file = self.snapshot_file.clone();
        let (last_log_id, last_membership) = (self.last_applied, self.membership.clone());
        let build = move || {
            // Unique per build: two builds at one index hold the same state, but openraft
            // tells snapshots apart by id.
            let snapshot_id = match last_log_id {
                Some(l) => format!("{}-{}-{}", l.leader_id, l.index, super::now_ms()),
                None => format!("empty-{}", super::now_ms()),
            };
            let meta = SnapshotMeta { last_log_id, last_membership, snapshot_id };
            // openraft purges the log right after this returns: the snapshot is durable first.
            save_snapshot(&file, &meta, |w| body.encode_to(w))?;
            Ok(Snapshot { meta, snapshot: Box::default() })
        };
        tokio::task::spawn_blocking(build).await.map_err(sm_err)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::{ApplyCtx, NullPublisher, Value};
    use crate::raft::types::Request;

    fn argv(cmd: &[&str]) -> Vec<Bytes> {
        cmd.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect()
    }

    /// A format-1 tag, as proposers wrote them with one proposal in flight.
    fn tagged(seq: u64, cmd: &[&str]) -> Op {
        Op::Tagged { origin: Origin { node: 2, boot: 77, seq }, op: Box::new(Op::Command { db: 0, argv: argv(cmd) }) }
    }

    fn sequenced(boot: u64, seq: u64, settled_below: u64, cmd: &[&str]) -> Op {
        let op = Box::new(Op::Command { db: 0, argv: argv(cmd) });
        Op::Sequenced { origin: Origin { node: 2, boot, seq }, settled_below, op }
    }

    fn entry(index: u64, op: Op) -> Entry {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Request { stamp_ms: 1, op }),
        }
    }

    fn state_machine(dir: &tempfile::TempDir) -> StateMachine {
        let file = SnapshotFile::new(dir.path());
        StateMachine::open(file, Applied::new(Arc::new(PubSub::default()), 1), 0).unwrap()
    }

    fn list(sm: &StateMachine) -> Reply {
        let mut ctx = ApplyCtx { index: 0, now_ms: 1, publisher: &mut NullPublisher };
        sm.keyspace.clone().apply(0, &argv(&["LRANGE", "l", "0", "-1"]), &mut ctx)
    }

    fn bulks(items: &[&str]) -> Reply {
        Reply::Array(items.iter().map(|i| Reply::Bulk(Bytes::copy_from_slice(i.as_bytes()))).collect())
    }

    /// Readers get the index and the keyspace of one batch: a gRPC Watch starting between two
    /// separate stores (the index, then the keyspace) could miss or repeat a batch. Each
    /// published keyspace holds its own index under `i`; a reader racing the publisher checks
    /// every state it loads. (Publishing the keyspace before its index makes it fail.)
    #[test]
    fn readers_get_the_index_and_the_keyspace_of_one_batch() {
        const BATCHES: u64 = 3000;
        let applied = Applied::new(Arc::new(PubSub::default()), 1);
        let reader = {
            let applied = applied.clone();
            std::thread::spawn(move || loop {
                let state = applied.state();
                let i = state.keyspace.get(0, b"i").map(|e| e.value.clone());
                let expected = (state.index > 0).then(|| Value::Str(Box::new(Bytes::from(state.index.to_string()))));
                assert_eq!(i, expected, "index {}", state.index);
                if state.index == BATCHES {
                    return;
                }
            })
        };
        let mut keyspace = Keyspace::new();
        for index in 1..=BATCHES {
            let mut ctx = ApplyCtx { index, now_ms: 1, publisher: &mut NullPublisher };
            keyspace.apply(0, &argv(&["SET", "i", &index.to_string()]), &mut ctx);
            let log_id = LogId::new(openraft::CommittedLeaderId::new(1, 1), index);
            let changes: Vec<Changed> =
                keyspace.take_changes().into_iter().map(|change| Changed { index, change }).collect();
            applied.publish(keyspace.clone(), Some(log_id), &changes, false);
        }
        reader.join().unwrap();
    }

    /// A built snapshot is the current one, and a restart loads the latest built.
    #[tokio::test]
    async fn a_restart_loads_the_latest_snapshot_built() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = state_machine(&dir);
        sm.apply_one(&entry(1, Op::Command { db: 0, argv: argv(&["RPUSH", "l", "a", "b"]) }));
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(list(&state_machine(&dir)), bulks(&["a", "b"]));
        sm.apply_one(&entry(2, Op::Command { db: 0, argv: argv(&["RPUSH", "l", "c"]) }));
        let built = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.snapshot_id, built.meta.snapshot_id);
        drop(sm);
        assert_eq!(list(&state_machine(&dir)), bulks(&["a", "b", "c"]), "restarts from the file");
    }

    #[test]
    fn snapshots_are_due_after_writes_in_proportion_to_the_keyspace() {
        assert!(!snapshot_due(49_999, 0));
        assert!(snapshot_due(50_000, 0), "a small keyspace still snapshots after 50,000 writes");
        assert!(!snapshot_due(124_999, 1_000_000));
        assert!(snapshot_due(125_000, 1_000_000), "an eighth of a million keys");
        let pipeline = Op::Batch(vec![Op::Command { db: 0, argv: argv(&["SET", "a", "1"]) }; 3]);
        assert_eq!(
            writes_in(&Op::Sequenced {
                origin: Origin { node: 1, boot: 1, seq: 1 },
                settled_below: 1,
                op: Box::new(pipeline)
            }),
            3
        );
    }

    #[test]
    fn a_retried_format_1_tag_is_answered_again_not_applied_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = state_machine(&dir);
        // The leader died after committing #1; the proposer sent #1 again to the next leader.
        assert_eq!(sm.apply_one(&entry(1, tagged(1, &["RPUSH", "l", "a"]))), Reply::Int(1));
        assert_eq!(sm.apply_one(&entry(2, tagged(1, &["RPUSH", "l", "a"]))), Reply::Int(1), "same reply");
        assert_eq!(sm.apply_one(&entry(3, tagged(2, &["RPUSH", "l", "b"]))), Reply::Int(2), "the next op applies");
        // Another process of the same node (new boot) starts its own numbering.
        let mut other_boot = tagged(1, &["RPUSH", "l", "c"]);
        if let Op::Tagged { origin, .. } = &mut other_boot {
            origin.boot = 78;
        }
        assert_eq!(sm.apply_one(&entry(4, other_boot)), Reply::Int(3));
        assert_eq!(list(&sm), bulks(&["a", "b", "c"]), "applied once each");
    }

    /// Four proposals in flight at once reach the log out of order, each retried after it had
    /// landed, some retried after later numbers; a late copy arrives after the proposer
    /// settled it; a second process of the node interleaves. Each write is applied once and
    /// every copy gets the first reply. (With format 1's one-tag-per-node rule, the retry of
    /// #1 after #2 applied twice.)
    #[test]
    fn numbered_writes_in_flight_together_apply_once_in_any_order_with_their_first_reply() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = state_machine(&dir);
        let steps: [(Op, Reply); 11] = [
            (sequenced(7, 2, 1, &["RPUSH", "l", "b"]), Reply::Int(1)),
            (sequenced(7, 1, 1, &["RPUSH", "l", "a"]), Reply::Int(2)),
            (sequenced(7, 2, 1, &["RPUSH", "l", "b"]), Reply::Int(1)),
            (sequenced(7, 4, 1, &["RPUSH", "l", "d"]), Reply::Int(3)),
            (sequenced(7, 1, 1, &["RPUSH", "l", "a"]), Reply::Int(2)),
            (sequenced(8, 1, 1, &["RPUSH", "l", "x"]), Reply::Int(4)),
            (sequenced(7, 3, 1, &["RPUSH", "l", "c"]), Reply::Int(5)),
            (sequenced(7, 4, 1, &["RPUSH", "l", "d"]), Reply::Int(3)),
            (sequenced(7, 5, 3, &["RPUSH", "l", "e"]), Reply::Int(6)),
            (sequenced(7, 3, 3, &["RPUSH", "l", "c"]), Reply::Int(5)),
            (sequenced(8, 1, 1, &["RPUSH", "l", "x"]), Reply::Int(4)),
        ];
        for (i, (op, reply)) in steps.into_iter().enumerate() {
            assert_eq!(sm.apply_one(&entry(i as u64 + 1, op.clone())), reply, "step {i}: {op}");
        }
        let late = sm.apply_one(&entry(20, sequenced(7, 2, 1, &["RPUSH", "l", "b"])));
        assert!(matches!(late, Reply::Error(_)), "#2 was settled (answered) before this copy: {late:?}");
        assert_eq!(list(&sm), bulks(&["b", "a", "d", "x", "c", "e"]), "each write applied once");
    }
}
