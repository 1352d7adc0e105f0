//! The Raft log and vote in sled.
//!
//! Durability rule (openraft's contract, and the bug its maintainers keep finding in
//! downstream stores): an append is reported complete only after sled has fsync'd it, and a
//! vote is on disk before `save_vote` returns. One `flush_async` covers every tree of the
//! database, so a flush here also persists state-machine writes made before it.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, StorageIOError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};

const VOTE: &[u8] = b"vote";
const FORMAT: &[u8] = b"format";

/// Version of what this build writes to a data dir (log entries, vote, snapshots). Data dirs
/// from before the number existed are version 1: this build still reads everything they hold
/// (new `Op` variants go last, older snapshot bodies have decode fallbacks). Bump it with any
/// change older builds cannot read, so that they refuse the dir instead of failing later.
pub const DATA_FORMAT: u32 = 1;

/// The data format recorded in `db`, recording [`DATA_FORMAT`] (durably) when there is none.
pub fn data_format(db: &sled::Db) -> Result<u32, sled::Error> {
    let meta = db.open_tree("raft_meta")?;
    if let Some(v) = meta.get(FORMAT)? {
        let bytes: [u8; 4] = v.as_ref().try_into().map_err(|_| sled::Error::Unsupported("malformed data format record".into()))?;
        return Ok(u32::from_be_bytes(bytes));
    }
    meta.insert(FORMAT, &DATA_FORMAT.to_be_bytes())?;
    db.flush()?;
    Ok(DATA_FORMAT)
}
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// Log entries keyed by big-endian index (so sled's order is log order), plus a meta tree.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    flusher: mpsc::UnboundedSender<LogFlushed<TypeConfig>>,
    /// Last committed index openraft reported, for INFO/metrics (openraft 0.9's metrics
    /// have no commit index).
    committed: Arc<AtomicU64>,
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
    pub fn open(db: &sled::Db) -> Result<LogStore, sled::Error> {
        let (flusher, rx) = mpsc::unbounded_channel();
        let flush_db = db.clone();
        std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || group_commit(flush_db, rx))
            .map_err(sled::Error::Io)?;
        Ok(LogStore {
            db: db.clone(),
            log: db.open_tree("raft_log")?,
            meta: db.open_tree("raft_meta")?,
            flusher,
            committed: Arc::default(),
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
fn group_commit(db: sled::Db, mut rx: mpsc::UnboundedReceiver<LogFlushed<TypeConfig>>) {
    let mut pending = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        pending.push(first);
        while let Ok(more) = rx.try_recv() {
            pending.push(more);
        }
        let res = db.flush();
        for callback in pending.drain(..) {
            let res = match &res {
                Ok(_) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            callback.log_io_completed(res);
        }
    }
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
        let last = match self.log.last().map_err(read_err)? {
            Some((_, v)) => Some(decode::<Entry>(&v).map_err(read_err)?.log_id),
            None => last_purged,
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.meta_put(VOTE, vote)?;
        self.db.flush_async().await.map_err(|e| StorageError::from(StorageIOError::write_vote(&e)))?;
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
        let keys: Vec<_> =
            self.log.range(log_id.index.to_be_bytes()..).keys().collect::<Result<_, _>>().map_err(write_err)?;
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        self.db.flush_async().await.map_err(write_err)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.meta_put(LAST_PURGED, &log_id)?;
        self.db.flush_async().await.map_err(write_err)?;
        let keys: Vec<_> = self
            .log
            .range(..=log_id.index.to_be_bytes())
            .keys()
            .collect::<Result<_, _>>()
            .map_err(write_err)?;
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        Ok(())
    }
}
