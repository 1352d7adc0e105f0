//! The Raft log and vote in sled.
//!
//! Durability rule (openraft's contract, and the bug its maintainers keep finding in
//! downstream stores): an append is reported complete only after it is on stable storage, and
//! a vote is before `save_vote` returns. Both wait for [`Durable::flush`] (a real `fdatasync`,
//! which sled's own flush is not). One flush covers every tree of the database, so a flush
//! here also persists state-machine writes made before it.

// openraft's StorageError is large, and it is the error type openraft's storage traits require.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, StorageIOError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use super::durable::Durable;
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::inject::Bug;

/// The tree of vote, commit and purge points and the data format, beside the log itself.
const META_TREE: &str = "raft_meta";
const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";
const FORMAT: &[u8] = b"format";

/// Version of what this build writes to a data dir (log entries, vote, snapshots). Data dirs
/// from before the number existed are version 1. Bump it with any change older builds cannot
/// read, so that they refuse the dir instead of failing later; this build reads every older
/// version (new `Op` variants go last, older snapshot bodies have decode fallbacks).
/// - 2: proposals numbered for many in flight (`Op::Sequenced`, `raft::dedup`); marked
///   snapshot bodies.
pub const DATA_FORMAT: u32 = 2;

/// The data format recorded in `db`. A dir of an older format is recorded as this one
/// (durably), since this build writes its own format into it from now on.
pub fn data_format(durable: &Durable) -> Result<u32, sled::Error> {
    let meta = durable.db().open_tree(META_TREE)?;
    if let Some(v) = meta.get(FORMAT)? {
        let bytes: [u8; 4] =
            v.as_ref().try_into().map_err(|_| sled::Error::Unsupported("malformed data format record".into()))?;
        let found = u32::from_be_bytes(bytes);
        if found >= DATA_FORMAT {
            return Ok(found);
        }
    }
    meta.insert(FORMAT, &DATA_FORMAT.to_be_bytes())?;
    durable.flush()?;
    Ok(DATA_FORMAT)
}

/// Log entries keyed by big-endian index (so sled's order is log order), plus a meta tree.
#[derive(Clone)]
pub struct LogStore {
    durable: Durable,
    log: sled::Tree,
    meta: sled::Tree,
    flusher: mpsc::UnboundedSender<LogFlushed<TypeConfig>>,
    /// Last committed index openraft reported, for INFO/metrics (openraft 0.9's metrics
    /// have no commit index).
    committed: Arc<AtomicU64>,
    /// First index not purged: entries below it may still be on disk until the background
    /// deletion of a purge gets to them (see `purge`), and reads skip them.
    first_kept: Arc<AtomicU64>,
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(v)
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(b)
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(&e).into()
}

impl LogStore {
    /// Opens the trees and starts the group-commit flusher; needs a tokio runtime.
    pub fn open(durable: &Durable) -> Result<LogStore, sled::Error> {
        let db = durable.db();
        let (flusher, rx) = mpsc::unbounded_channel();
        let flush_to = durable.clone();
        std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || group_commit(flush_to, rx))
            .map_err(sled::Error::Io)?;
        let meta = db.open_tree(META_TREE)?;
        let purged: Option<LogId> = match meta.get(LAST_PURGED)? {
            Some(b) => {
                Some(decode(&b).map_err(|e| sled::Error::Unsupported(format!("malformed last_purged record: {e}")))?)
            }
            None => None,
        };
        Ok(LogStore {
            durable: durable.clone(),
            log: db.open_tree("raft_log")?,
            meta,
            flusher,
            committed: Arc::default(),
            first_kept: Arc::new(AtomicU64::new(purged.map_or(0, |p| p.index + 1))),
        })
    }

    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    /// Index of the last entry on disk at start-up: entries up to it are a replay, and
    /// replays must not re-deliver pub/sub messages.
    pub fn last_index(&self) -> Result<Option<u64>, sled::Error> {
        Ok(self.log.last()?.map(|(k, _)| index_of(&k)))
    }

    fn meta_get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        match self.meta.get(key).map_err(read_err)? {
            Some(b) => Ok(Some(decode(&b).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    fn meta_put<T: Serialize>(&self, key: &[u8], v: &T) -> Result<(), StorageError> {
        self.meta.insert(key, encode(v).map_err(write_err)?).map_err(write_err)?;
        Ok(())
    }
}

/// Completes append callbacks in order, one fsync for everything queued while the previous
/// fsync ran. This is what turns 50 concurrent RPUSH clients into a few fsyncs, not 50.
fn group_commit(durable: Durable, mut rx: mpsc::UnboundedReceiver<LogFlushed<TypeConfig>>) {
    let mut pending = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        pending.push(first);
        while let Ok(more) = rx.try_recv() {
            pending.push(more);
        }
        let res = durable.flush_unless(Bug::AckBeforeSync);
        for callback in pending.drain(..) {
            let res = match &res {
                Ok(_) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            callback.log_io_completed(res);
        }
    }
}

/// Deletes the entries whose (big-endian) index keys fall in `range`, in one batch.
fn delete_entries(log: &sled::Tree, range: impl RangeBounds<[u8; 8]>) -> Result<(), sled::Error> {
    let mut batch = sled::Batch::default();
    for key in log.range(range).keys() {
        batch.remove(key?);
    }
    log.apply_batch(batch)
}

fn index_of(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    u64::from_be_bytes(b)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let start = start.max(self.first_kept.load(Ordering::Acquire));
        let end = match range.end_bound() {
            Bound::Included(i) => Some(i + 1),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        let lo = start.to_be_bytes();
        let iter = match end {
            Some(e) if e <= start => return Ok(Vec::new()),
            Some(e) => self.log.range(lo..e.to_be_bytes()),
            None => self.log.range(lo..),
        };
        iter.map(|kv| {
            let (_, v) = kv.map_err(read_err)?;
            decode::<Entry>(&v).map_err(read_err)
        })
        .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.meta_get(LAST_PURGED)?;
        let first_kept = self.first_kept.load(Ordering::Acquire);
        let last = match self.log.last().map_err(read_err)? {
            Some((k, v)) if index_of(&k) >= first_kept => Some(decode::<Entry>(&v).map_err(read_err)?.log_id),
            // Nothing after the purge point, or only purged entries not deleted yet.
            _ => last_purged,
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.meta_put(VOTE, vote)?;
        let flushed = self.durable.flush_async_unless(Bug::UnsyncedVote).await;
        flushed.map_err(|e| StorageError::from(StorageIOError::write_vote(&e)))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.meta_get(VOTE)
    }

    /// Not flushed on its own: losing it only makes a restart re-apply a little more.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.committed.store(committed.map_or(0, |c| c.index), Ordering::Relaxed);
        self.meta_put(COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.meta_get::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            batch.insert(&entry.log_id.index.to_be_bytes(), encode(&entry).map_err(write_err)?);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        // The fsync runs off the openraft core task, so it keeps accepting proposals; those
        // form the next, larger batch.
        if let Err(mpsc::error::SendError(callback)) = self.flusher.send(callback) {
            callback.log_io_completed(Err(std::io::Error::other("log flusher stopped")));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        delete_entries(&self.log, log_id.index.to_be_bytes()..).map_err(write_err)?;
        self.durable.flush_async().await.map_err(write_err)?;
        Ok(())
    }

    /// Deleting thousands of entries takes tens of milliseconds (65 ms for 4,500 on the bench
    /// box), and openraft waits for `purge` on its core: every write stalled meanwhile. Once
    /// `last_purged` is durable nothing reads those entries again, so they are deleted on a
    /// blocking thread. A crash before that leaves them to the next purge, whose range covers
    /// them.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.meta_put(LAST_PURGED, &log_id)?;
        self.durable.flush_async().await.map_err(write_err)?;
        self.first_kept.fetch_max(log_id.index + 1, Ordering::AcqRel);
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = delete_entries(&log, ..=log_id.index.to_be_bytes()) {
                tracing::warn!(upto = log_id.index, error = %e, "purged log entries not deleted yet; the next purge retries");
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn blank(index: u64) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Blank }
    }

    fn put(store: &LogStore, index: u64) {
        store.log.insert(index.to_be_bytes(), encode(&blank(index)).unwrap()).unwrap();
    }

    /// `purge` returns before the entries are deleted; until they are, reads and the log state
    /// must behave as if they were gone.
    #[tokio::test]
    async fn purged_entries_not_yet_deleted_are_invisible() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.sled");
        let db = sled::open(&path).unwrap();
        let durable = Durable::open(&db, &path).unwrap();
        let mut store = LogStore::open(&durable).unwrap();
        for i in 1..=10 {
            put(&store, i);
        }
        store.purge(blank(5).log_id).await.unwrap();
        while store.log.contains_key(1u64.to_be_bytes()).unwrap() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // As if the background deletion had not got to them yet.
        for i in 1..=5 {
            put(&store, i);
        }
        let read: Vec<u64> = store.try_get_log_entries(0..100).await.unwrap().iter().map(|e| e.log_id.index).collect();
        assert_eq!(read, (6..=10).collect::<Vec<_>>());
        assert_eq!(store.get_log_state().await.unwrap().last_log_id.map(|l| l.index), Some(10));

        // A purge past the end (a snapshot installed ahead of the log): the leftovers never
        // count as the last entry.
        store.purge(blank(20).log_id).await.unwrap();
        put(&store, 7);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(
            (state.last_purged_log_id.map(|l| l.index), state.last_log_id.map(|l| l.index)),
            (Some(20), Some(20))
        );
        assert!(store.try_get_log_entries(0..100).await.unwrap().is_empty());

        // The purge point survives a reopen, with the leftovers still hidden.
        drop(store);
        let mut store = LogStore::open(&durable).unwrap();
        put(&store, 8);
        assert!(store.try_get_log_entries(0..100).await.unwrap().is_empty());
    }
}
