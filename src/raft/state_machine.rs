//! The replicated keyspace as an openraft state machine, persisted in sled as snapshots.
//!
//! - `apply` runs each entry through the pure core (`routes::Keyspace`) in memory only. What
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
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use super::durable::Durable;
use super::types::{Entry, LogId, Op, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::pubsub::PubSub;
use crate::routes::{ApplyCtx, Change, Keyspace, Publisher, Reply, Watch};

const SNAPSHOT_META: &[u8] = b"meta";
const SNAPSHOT_DATA: &[u8] = b"data";

/// Told about every applied batch, after the new state is published. The proxy's routing
/// view and the gRPC Watch log implement it; it must be quick (it runs on the apply path).
pub trait ApplyListener: Send + Sync {
    /// `changes` lists the keys the batch touched; `reload` means "everything may have
    /// changed" (snapshot installed), so rebuild from `state.keyspace`.
    fn applied(&self, state: &AppliedState, changes: &[Change], reload: bool);
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
    /// The reply this node's apply gave to its latest own proposal: `(boot, seq, reply)`.
    own: std::sync::Mutex<Option<(u64, u64, Reply)>>,
}

impl Applied {
    pub fn new(pubsub: Arc<PubSub>, node_id: u64) -> Arc<Applied> {
        Arc::new(Applied {
            state: ArcSwap::from_pointee(AppliedState::default()),
            pubsub,
            listeners: Default::default(),
            node_id,
            own: Default::default(),
        })
    }

    /// The reply this node's apply gave to its own proposal `(boot, seq)`, once applied here.
    /// Apply is deterministic, so it equals the leader's reply except where the answer is
    /// about the node itself: PUBLISH counts the subscribers of the node that took it, as in
    /// Redis Cluster.
    pub fn own_reply(&self, boot: u64, seq: u64) -> Option<Reply> {
        let mut own = self.own.lock().unwrap_or_else(|e| e.into_inner());
        match own.take() {
            Some((b, s, reply)) if (b, s) == (boot, seq) => Some(reply),
            other => {
                *own = other;
                None
            }
        }
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

    fn publish(&self, keyspace: Keyspace, index: Option<LogId>, changes: &[Change], reload: bool) {
        let state = Arc::new(AppliedState { index: index.map_or(0, |l| l.index), keyspace: Arc::new(keyspace) });
        self.state.store(state.clone());
        for l in self.listeners.read().unwrap_or_else(|e| e.into_inner()).iter() {
            l.applied(&state, changes, reload);
        }
    }
}

/// What a snapshot holds besides its openraft meta.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    keyspace: Keyspace,
    tags: Tags,
}

/// Per proposing node, the last tagged op applied and its reply (`Op::Tagged`): replicated
/// state, so a retried op is recognised on every replica and after a restart.
type Tags = BTreeMap<u64, AppliedTag>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AppliedTag {
    boot: u64,
    seq: u64,
    reply: Reply,
}

/// The body as written before tags.
#[derive(Deserialize)]
struct SnapshotBodyWithoutTags {
    keyspace: Keyspace,
}

/// The body as written before WATCH buckets (`Keyspace::stamps`).
#[derive(Deserialize)]
struct SnapshotBodyWithoutStamps {
    keyspace: crate::routes::KeyspaceWithoutStamps,
}

/// A keyspace whose proposers' tags are unknown (a fresh node, or a body from before tags).
impl From<Keyspace> for SnapshotBody {
    fn from(keyspace: Keyspace) -> SnapshotBody {
        SnapshotBody { keyspace, tags: Tags::new() }
    }
}

impl SnapshotBody {
    /// Reads this version's body and the earlier ones, so existing data dirs and peers'
    /// snapshots still load (each older form lacks a trailing field, so only one form fits).
    fn decode(bytes: &[u8]) -> Result<SnapshotBody, postcard::Error> {
        postcard::from_bytes::<SnapshotBody>(bytes)
            .or_else(|e| {
                let old: SnapshotBodyWithoutTags = postcard::from_bytes(bytes).map_err(|_| e)?;
                Ok(old.keyspace.into())
            })
            .or_else(|e: postcard::Error| {
                let old: SnapshotBodyWithoutStamps = postcard::from_bytes(bytes).map_err(|_| e)?;
                Ok(Keyspace::from(old.keyspace).into())
            })
    }
}

pub struct StateMachine {
    durable: Durable,
    snapshots: sled::Tree,
    keyspace: Keyspace,
    tags: Tags,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    out: Arc<Applied>,
    /// Entries at or below this index were in the log before this process started.
    replay_upto: u64,
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
    pub fn open(durable: &Durable, out: Arc<Applied>, replay_upto: u64) -> Result<StateMachine, StorageError> {
        let snapshots = durable.db().open_tree("snapshot").map_err(read_err)?;
        let (body, last_applied, membership) = match load_snapshot(&snapshots)? {
            Some((meta, data)) => {
                (SnapshotBody::decode(&data).map_err(read_err)?, meta.last_log_id, meta.last_membership)
            }
            None => (Keyspace::new().into(), None, StoredMembership::default()),
        };
        let SnapshotBody { keyspace, tags } = body;
        out.publish(keyspace.clone(), last_applied, &[], true);
        Ok(StateMachine {
            durable: durable.clone(),
            snapshots,
            keyspace,
            tags,
            last_applied,
            membership,
            out,
            replay_upto,
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
        let mut delivery = Delivery { pubsub: &self.out.pubsub, live: entry.log_id.index > self.replay_upto };
        let mut ctx = ApplyCtx { index: entry.log_id.index, now_ms: req.stamp_ms, publisher: &mut delivery };
        let Op::Tagged { origin, op } = &req.op else { return apply_op(&mut self.keyspace, &req.op, &mut ctx) };
        if let Some(done) = self.tags.get(&origin.node).filter(|t| t.boot == origin.boot && t.seq == origin.seq) {
            // A retry of an op that did land: its reply again, nothing applied or published twice.
            return done.reply.clone();
        }
        let reply = apply_op(&mut self.keyspace, op, &mut ctx);
        self.tags.insert(origin.node, AppliedTag { boot: origin.boot, seq: origin.seq, reply: reply.clone() });
        if origin.node == self.out.node_id {
            *self.out.own.lock().unwrap_or_else(|e| e.into_inner()) = Some((origin.boot, origin.seq, reply.clone()));
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
        // Only proposers tag, and only whole entries; a nested tag is just its op.
        Op::Tagged { op, .. } => apply_op(keyspace, op, ctx),
    }
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StorageError> {
    postcard::to_stdvec(v).map_err(sm_err)
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, StorageError> {
    postcard::from_bytes(b).map_err(read_err)
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
        let replies: Vec<Reply> = entries.into_iter().map(|e| self.apply_one(&e)).collect();
        let changes = self.keyspace.take_changes();
        self.out.publish(self.keyspace.clone(), self.last_applied, &changes, false);
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            durable: self.durable.clone(),
            snapshots: self.snapshots.clone(),
            keyspace: self.keyspace.clone(),
            tags: self.tags.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Vec<u8>>, StorageError> {
        Ok(Box::default())
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<Vec<u8>>) -> Result<(), StorageError> {
        let body = SnapshotBody::decode(&snapshot)
            .map_err(|e| StorageError::from(StorageIOError::read_snapshot(Some(meta.signature()), &e)))?;
        self.keyspace = body.keyspace;
        self.tags = body.tags;
        self.keyspace.take_changes();
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        save_snapshot(&self.snapshots, meta, &snapshot)?;
        self.durable.flush_async().await.map_err(sm_err)?;
        self.out.publish(self.keyspace.clone(), self.last_applied, &[], true);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(load_snapshot(&self.snapshots)?.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(data) }))
    }
}

fn load_snapshot(tree: &sled::Tree) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
    let meta = match tree.get(SNAPSHOT_META).map_err(read_err)? {
        Some(m) => decode::<SnapshotMeta>(&m)?,
        None => return Ok(None),
    };
    let data = tree.get(SNAPSHOT_DATA).map_err(read_err)?.map(|d| d.to_vec()).unwrap_or_default();
    Ok(Some((meta, data)))
}

fn save_snapshot(tree: &sled::Tree, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
    let mut batch = sled::Batch::default();
    batch.insert(SNAPSHOT_META, encode(meta)?);
    batch.insert(SNAPSHOT_DATA, data);
    tree.apply_batch(batch).map_err(sm_err)
}

/// A consistent, immutable view of the state machine at one applied index.
pub struct SnapshotBuilder {
    durable: Durable,
    snapshots: sled::Tree,
    keyspace: Keyspace,
    tags: Tags,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    /// Serialising a large keyspace takes tens of milliseconds of CPU (60 ms for a 250,000-
    /// element list on the loaded bench box) and the flush waits on the disk: neither may hold
    /// one of the runtime's workers (a node may have only one), so both run on a blocking
    /// thread. The CPU burst itself still slows writes while it runs (docs/benchmarks.md).
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let body = SnapshotBody { keyspace: self.keyspace.clone(), tags: self.tags.clone() };
        let (durable, tree) = (self.durable.clone(), self.snapshots.clone());
        let (last_log_id, last_membership) = (self.last_applied, self.membership.clone());
        let build = move || {
            let data = encode(&body)?;
            let snapshot_id = match last_log_id {
                Some(l) => format!("{}-{}-{}", l.leader_id, l.index, data.len()),
                None => format!("empty-{}", data.len()),
            };
            let meta = SnapshotMeta { last_log_id, last_membership, snapshot_id };
            save_snapshot(&tree, &meta, &data)?;
            // openraft purges the log right after this returns: the snapshot must be durable.
            durable.flush().map_err(sm_err)?;
            Ok(Snapshot { meta, snapshot: Box::new(data) })
        };
        tokio::task::spawn_blocking(build).await.map_err(sm_err)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::Request;
    use crate::routes::{ApplyCtx, NullPublisher, DATABASES};

    /// A snapshot body as the program wrote it before `Keyspace::stamps`.
    #[derive(Serialize)]
    struct BodyWithoutStamps<'a> {
        dbs: &'a [crate::routes::db::Db; DATABASES],
        clock_ms: u64,
    }

    fn tagged(seq: u64, argv: &[&str]) -> Op {
        let argv = argv.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect();
        Op::Tagged {
            origin: crate::raft::types::Origin { node: 2, boot: 77, seq },
            op: Box::new(Op::Command { db: 0, argv }),
        }
    }

    fn entry(index: u64, op: Op) -> Entry {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Request { stamp_ms: 1, op }),
        }
    }

    #[test]
    fn a_retried_tagged_op_is_answered_again_not_applied_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.sled");
        let db = sled::Config::new().path(&path).open().unwrap();
        let durable = Durable::open(&db, &path).unwrap();
        let mut sm = StateMachine::open(&durable, Applied::new(Arc::new(PubSub::default()), 1), 0).unwrap();
        // The leader died after committing #1; the proposer sent #1 again to the next leader.
        assert_eq!(sm.apply_one(&entry(1, tagged(1, &["RPUSH", "l", "a"]))), Reply::Int(1));
        assert_eq!(sm.apply_one(&entry(2, tagged(1, &["RPUSH", "l", "a"]))), Reply::Int(1), "same reply");
        assert_eq!(sm.apply_one(&entry(3, tagged(2, &["RPUSH", "l", "b"]))), Reply::Int(2), "the next op applies");
        let untagged = Op::Command { db: 0, argv: vec![Bytes::from_static(b"LLEN"), Bytes::from_static(b"l")] };
        assert_eq!(sm.apply_one(&entry(4, untagged)), Reply::Int(2), "applied once each");
        // Another process of the same node (new boot) starts its own numbering.
        let mut other_boot = tagged(1, &["RPUSH", "l", "c"]);
        if let Op::Tagged { origin, .. } = &mut other_boot {
            origin.boot = 78;
        }
        assert_eq!(sm.apply_one(&entry(5, other_boot)), Reply::Int(3));
    }

    #[test]
    fn snapshots_from_before_watch_buckets_still_load() {
        let mut keyspace = Keyspace::new();
        let mut ctx = ApplyCtx { index: 7, now_ms: 1_000, publisher: &mut NullPublisher };
        let argv: Vec<Bytes> =
            ["RPUSH", "frontend:a", "app", "http://x:1"].map(|s| Bytes::from_static(s.as_bytes())).into();
        keyspace.apply(0, &argv, &mut ctx);
        let old = postcard::to_allocvec(&BodyWithoutStamps { dbs: &keyspace.dbs, clock_ms: 1_000 }).unwrap();
        assert!(postcard::from_bytes::<SnapshotBody>(&old).is_err(), "the current form alone cannot read it");
        let loaded = SnapshotBody::decode(&old).unwrap().keyspace;
        assert_eq!(loaded.dbs, keyspace.dbs);
        let tags = Tags::from([(2, AppliedTag { boot: 9, seq: 4, reply: Reply::Int(1) })]);
        let current = postcard::to_allocvec(&SnapshotBody { keyspace: keyspace.clone(), tags: tags.clone() }).unwrap();
        let decoded = SnapshotBody::decode(&current).unwrap();
        assert_eq!((decoded.keyspace, decoded.tags), (keyspace.clone(), tags));
        #[derive(Serialize)]
        struct BodyWithoutTags<'a> {
            keyspace: &'a Keyspace,
        }
        let without_tags = postcard::to_allocvec(&BodyWithoutTags { keyspace: &keyspace }).unwrap();
        let decoded = SnapshotBody::decode(&without_tags).unwrap();
        assert_eq!((decoded.keyspace, decoded.tags), (keyspace, Tags::new()));
        assert!(SnapshotBody::decode(b"\x01garbage").is_err());
    }

    /// What a data dir of format 1 holds, as this build wrote it (`tests/data/golden/`): every
    /// kind of value, expiry, several databases, WATCH stamps and tags in a snapshot body, and
    /// every kind of log entry. Decoding them must give what they were made from, so a change
    /// to an encoding fails here and needs a deliberate migration (and a new DATA_FORMAT).
    /// `HIPACHE_WRITE_GOLDEN=1` rewrites the files, for a new format version only.
    #[test]
    fn golden_snapshot_body_and_log_entries_of_format_1_still_decode() {
        use openraft::{EntryPayload, Membership};

        use crate::raft::types::{NodeInfo, Origin, WatchedKey};

        let mut ctx = ApplyCtx { index: 3, now_ms: 1_700_000_000_000, publisher: &mut NullPublisher };
        let mut keyspace = Keyspace::new();
        let script: [(usize, &[&str]); 6] = [
            (0, &["RPUSH", "frontend:www.example.com", "site", "http://127.0.0.1:8080", "http://127.0.0.2:8080"]),
            (0, &["SADD", "dead:www.example.com", "1"]),
            (0, &["EXPIRE", "dead:www.example.com", "30"]),
            (0, &["HSET", "tls:www.example.com", "certificate", "pem", "key", "pem"]),
            (3, &["SET", "hchecker_ping", "1700000000"]),
            (0, &["DEL", "frontend:gone.example.com"]),
        ];
        for (i, (db, cmd)) in script.iter().enumerate() {
            ctx.index = 3 + i as u64;
            let argv: Vec<Bytes> = cmd.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect();
            keyspace.apply(*db, &argv, &mut ctx);
        }
        keyspace.take_changes();
        let tags =
            Tags::from([(2, AppliedTag { boot: 77, seq: 5, reply: Reply::Array(vec![Reply::Int(1), Reply::ok()]) })]);
        let body = SnapshotBody { keyspace, tags };

        let argv = |cmd: &[&str]| cmd.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect::<Vec<_>>();
        let log_id = |index| LogId::new(openraft::CommittedLeaderId::new(2, 1), index);
        let normal = |index, op| Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(Request { stamp_ms: 1_700_000_000_123, op }),
        };
        let members = std::collections::BTreeMap::from([
            (1, NodeInfo { grpc: "127.0.0.1:7380".into(), resp: "127.0.0.1:6380".into() }),
            (2, NodeInfo { grpc: "127.0.0.1:7382".into(), resp: "127.0.0.1:6382".into() }),
        ]);
        let entries = vec![
            Entry { log_id: log_id(1), payload: EntryPayload::Blank },
            Entry {
                log_id: log_id(2),
                payload: EntryPayload::Membership(Membership::new(
                    vec![std::collections::BTreeSet::from([1, 2])],
                    members,
                )),
            },
            normal(3, Op::Command { db: 0, argv: argv(&["RPUSH", "frontend:a", "id", "http://127.0.0.1:1"]) }),
            normal(
                4,
                Op::Exec {
                    db: 0,
                    queued: vec![argv(&["DEL", "frontend:a"]), argv(&["RPUSH", "frontend:a", "id"])],
                    watched: vec![WatchedKey { db: 0, key: Bytes::from_static(b"frontend:a"), version: 4 }],
                },
            ),
            normal(5, Op::Batch(vec![Op::Command { db: 1, argv: argv(&["SET", "k", "v"]) }, Op::Sweep])),
            normal(6, Op::Sweep),
            normal(
                7,
                Op::Tagged {
                    origin: Origin { node: 2, boot: 77, seq: 5 },
                    op: Box::new(Op::Batch(vec![Op::Command { db: 0, argv: argv(&["PUBLISH", "dead", "m"]) }])),
                },
            ),
        ];
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden");
        if std::env::var_os("HIPACHE_WRITE_GOLDEN").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("snapshot-body-format-1.bin"), postcard::to_allocvec(&body).unwrap()).unwrap();
            std::fs::write(dir.join("log-entries-format-1.bin"), postcard::to_allocvec(&entries).unwrap()).unwrap();
        }
        let golden_body = std::fs::read(dir.join("snapshot-body-format-1.bin")).unwrap();
        let decoded = SnapshotBody::decode(&golden_body).unwrap();
        assert_eq!(decoded.keyspace, body.keyspace, "the golden snapshot's keyspace");
        assert_eq!(decoded.tags, body.tags, "the golden snapshot's tags");
        let golden_entries = std::fs::read(dir.join("log-entries-format-1.bin")).unwrap();
        assert_eq!(postcard::from_bytes::<Vec<Entry>>(&golden_entries).unwrap(), entries, "the golden log entries");
        assert_eq!(
            postcard::to_allocvec(&entries).unwrap(),
            golden_entries,
            "log entries are still written the same way"
        );
    }
}
