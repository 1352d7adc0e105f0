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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use super::types::{Entry, LogId, Op, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::pubsub::PubSub;
use crate::routes::{ApplyCtx, Change, Keyspace, Publisher, Reply, Watch};

const SNAPSHOT_META: &[u8] = b"meta";
const SNAPSHOT_DATA: &[u8] = b"data";

/// Told about every applied batch, after the new keyspace is published. The proxy's routing
/// view implements it; it must be quick (it runs on the apply path).
pub trait ApplyListener: Send + Sync {
    /// `changes` lists the keys the batch touched; `reload` means "everything may have
    /// changed" (snapshot installed), so rebuild from `keyspace`.
    fn applied(&self, keyspace: &Keyspace, changes: &[Change], reload: bool);
}

/// The state machine's outputs that the rest of the node reads.
pub struct Applied {
    /// The keyspace after the last applied batch: local (READONLY) reads and WATCH versions.
    pub keyspace: ArcSwap<Keyspace>,
    pub pubsub: Arc<PubSub>,
    pub listeners: std::sync::RwLock<Vec<Arc<dyn ApplyListener>>>,
    /// Log index of the last applied entry, set before listeners are told.
    index: AtomicU64,
}

impl Applied {
    pub fn new(pubsub: Arc<PubSub>) -> Arc<Applied> {
        Arc::new(Applied {
            keyspace: ArcSwap::from_pointee(Keyspace::new()),
            pubsub,
            listeners: Default::default(),
            index: AtomicU64::new(0),
        })
    }

    /// The log index the published keyspace reflects.
    pub fn index(&self) -> u64 {
        self.index.load(Ordering::Acquire)
    }

    /// Holding the write lock while the listener loads the current keyspace means no batch
    /// applied meanwhile can slip past it: `publish` stores its keyspace, then waits for the
    /// lock and tells the new listener too (applying a change twice is harmless).
    pub fn add_listener(&self, listener: Arc<dyn ApplyListener>) {
        let mut listeners = self.listeners.write().unwrap_or_else(|e| e.into_inner());
        listener.applied(&self.keyspace.load(), &[], true);
        listeners.push(listener);
    }

    fn publish(&self, keyspace: Keyspace, index: Option<LogId>, changes: &[Change], reload: bool) {
        let keyspace = Arc::new(keyspace);
        self.index.store(index.map_or(0, |l| l.index), Ordering::Release);
        self.keyspace.store(keyspace.clone());
        for l in self.listeners.read().unwrap_or_else(|e| e.into_inner()).iter() {
            l.applied(&keyspace, changes, reload);
        }
    }
}

/// What a snapshot holds besides its openraft meta.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    keyspace: Keyspace,
}

/// The body as written before WATCH buckets (`Keyspace::stamps`), so existing data dirs and
/// peers' snapshots still load.
#[derive(Deserialize)]
struct SnapshotBodyWithoutStamps {
    keyspace: crate::routes::KeyspaceWithoutStamps,
}

impl SnapshotBody {
    fn decode(bytes: &[u8]) -> Result<SnapshotBody, postcard::Error> {
        postcard::from_bytes::<SnapshotBody>(bytes).or_else(|e| {
            let old: SnapshotBodyWithoutStamps = postcard::from_bytes(bytes).map_err(|_| e)?;
            Ok(SnapshotBody { keyspace: old.keyspace.into() })
        })
    }
}

pub struct StateMachine {
    db: sled::Db,
    snapshots: sled::Tree,
    keyspace: Keyspace,
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
    pub fn open(db: &sled::Db, out: Arc<Applied>, replay_upto: u64) -> Result<StateMachine, StorageError> {
        let snapshots = db.open_tree("snapshot").map_err(read_err)?;
        let (keyspace, last_applied, membership) = match load_snapshot(&snapshots)? {
            Some((meta, data)) => {
                let body = SnapshotBody::decode(&data).map_err(read_err)?;
                (body.keyspace, meta.last_log_id, meta.last_membership)
            }
            None => (Keyspace::new(), None, StoredMembership::default()),
        };
        out.publish(keyspace.clone(), last_applied, &[], true);
        Ok(StateMachine { db: db.clone(), snapshots, keyspace, last_applied, membership, out, replay_upto })
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
        apply_op(&mut self.keyspace, &req.op, &mut ctx)
    }
}

/// One operation against the keyspace; a `Batch` answers an array with one reply per op.
fn apply_op(keyspace: &mut Keyspace, op: &Op, ctx: &mut ApplyCtx<'_>) -> Reply {
        match op {
            Op::Batch(ops) => Reply::Array(ops.iter().map(|op| apply_op(keyspace, op, ctx)).collect()),
            Op::Command { db, argv } => keyspace.apply(*db as usize, argv, ctx),
            Op::Exec { db, queued, watched } => {
                let watched: Vec<Watch> = watched
                    .iter()
                    .map(|w| Watch { db: w.db as usize, key: w.key.clone(), version: w.version })
                    .collect();
                keyspace.exec(*db as usize, queued, &watched, ctx)
            }
            Op::Sweep => {
                keyspace.sweep(ctx);
                Reply::ok()
            }
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
            db: self.db.clone(),
            snapshots: self.snapshots.clone(),
            keyspace: self.keyspace.clone(),
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
        self.keyspace.take_changes();
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        save_snapshot(&self.snapshots, meta, &snapshot)?;
        self.db.flush_async().await.map_err(sm_err)?;
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
    db: sled::Db,
    snapshots: sled::Tree,
    keyspace: Keyspace,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let body = SnapshotBody { keyspace: self.keyspace.clone() };
        let data = encode(&body)?;
        let snapshot_id = match self.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, data.len()),
            None => format!("empty-{}", data.len()),
        };
        let meta =
            SnapshotMeta { last_log_id: self.last_applied, last_membership: self.membership.clone(), snapshot_id };
        save_snapshot(&self.snapshots, &meta, &data)?;
        // openraft purges the log right after this returns: the snapshot must be durable.
        self.db.flush_async().await.map_err(sm_err)?;
        Ok(Snapshot { meta, snapshot: Box::new(data) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{ApplyCtx, NullPublisher, DATABASES};

    /// A snapshot body as the program wrote it before `Keyspace::stamps`.
    #[derive(Serialize)]
    struct BodyWithoutStamps<'a> {
        dbs: &'a [crate::routes::db::Db; DATABASES],
        clock_ms: u64,
    }

    #[test]
    fn snapshots_from_before_watch_buckets_still_load() {
        let mut keyspace = Keyspace::new();
        let mut ctx = ApplyCtx { index: 7, now_ms: 1_000, publisher: &mut NullPublisher };
        let argv: Vec<Bytes> = ["RPUSH", "frontend:a", "app", "http://x:1"].map(|s| Bytes::from_static(s.as_bytes())).into();
        keyspace.apply(0, &argv, &mut ctx);
        let old = postcard::to_allocvec(&BodyWithoutStamps { dbs: &keyspace.dbs, clock_ms: 1_000 }).unwrap();
        assert!(postcard::from_bytes::<SnapshotBody>(&old).is_err(), "the current form alone cannot read it");
        let loaded = SnapshotBody::decode(&old).unwrap().keyspace;
        assert_eq!(loaded.dbs, keyspace.dbs);
        let current = postcard::to_allocvec(&SnapshotBody { keyspace: keyspace.clone() }).unwrap();
        assert_eq!(SnapshotBody::decode(&current).unwrap().keyspace, keyspace);
        assert!(SnapshotBody::decode(b"\x01garbage").is_err());
    }
}
