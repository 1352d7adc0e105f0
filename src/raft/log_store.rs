//! The Raft log and vote in a write-ahead log of our own: `raft-log`, the chunked WAL that
//! openraft's author wrote for databend's meta service, in `<dataDir>/raft-log/`.
//!
//! Why not sled, which held them before (data format 2): sled is a general B-tree, and every
//! log write went through its page cache, its log buffers and its IO thread pool, which wakes
//! all seven of its idle threads for each buffer it writes (`notify_all`). Per Raft entry that
//! came to ~400 µs of CPU on the bench box, most of a write's cost once writes are batched,
//! and its own flush is not durable on Linux (it never calls `fsync` on an acknowledgement).
//! A Raft log is appended at the end, read back soon (apply, replication) and cut at either
//! end: a WAL of chunk files does exactly that, with a checksum per record, one background
//! thread that writes and `fdatasync`s whatever is queued (group commit), and a bounded cache
//! of recent entries for reads.
//!
//! Durability rule (openraft's contract): an append is reported complete only after it is on
//! stable storage, and a vote is before `save_vote` returns. Both wait for a synced flush;
//! purge and truncation too, so a chunk file is deleted only after the purge record that
//! covers it is durable (the WAL orders that itself).

// openraft's StorageError is large, and it is the error type openraft's storage traits require.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::{self, Read, Write};
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{EntryPayload, RaftLogReader, StorageIOError};
use raft_log::api::raft_log_writer::RaftLogWriter;
use raft_log::codeq::{Decode, Encode};
use raft_log::RaftLog;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::inject::{injected, Bug};

/// The WAL's directory inside the data dir.
pub const WAL_DIR: &str = "raft-log";

/// A chunk file is closed and a new one started at this size. Purging frees whole chunks, and
/// the cache cannot evict entries of the open chunk, so this bounds both the disk a purged log
/// still holds and the memory of recent entries.
const CHUNK_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Recent entries kept in memory (as their encoded bytes) for apply and replication; older ones are read
/// back from their chunk file.
const CACHE_MAX_BYTES: usize = 8 * 1024 * 1024;
const CACHE_MAX_ITEMS: usize = 100_000;
/// Buffer for replaying chunks at start-up (the crate's default is 64 MB, allocated once per
/// chunk read).
const READ_BUFFER_BYTES: usize = 1024 * 1024;

/// The `raft-log` type parameters: openraft's log id and vote, and each entry's payload as the
/// postcard bytes it is stored as.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Wal;

impl raft_log::Types for Wal {
    type LogId = Postcard<LogId>;
    type LogPayload = Encoded;
    type Vote = Postcard<Vote>;
    type Callback = Done;
    type UserData = ();

    fn log_index(log_id: &Self::LogId) -> u64 {
        log_id.0.index
    }

    fn payload_size(payload: &Self::LogPayload) -> u64 {
        payload.0.len() as u64
    }
}

/// A value stored as its postcard encoding, length-prefixed (the WAL reads records from a
/// stream, so each field says where it ends).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Postcard<T>(pub T);

impl<T: Serialize> Encode for Postcard<T> {
    fn encode<W: Write>(&self, w: W) -> io::Result<usize> {
        let bytes = postcard::to_stdvec(&self.0).map_err(io::Error::other)?;
        write_len_prefixed(w, &bytes)
    }
}

impl<T: DeserializeOwned> Decode for Postcard<T> {
    fn decode<R: Read>(r: R) -> io::Result<Self> {
        let bytes = Vec::<u8>::decode(r)?;
        postcard::from_bytes(&bytes).map(Postcard).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// An entry's payload, already encoded: the cache holds these compact bytes (a pipeline's
/// entry is up to 1,024 writes), and a read hands out a reference, not a copy. `Bytes`, not
/// `Arc<[u8]>`: it takes over the encoder's `Vec` without copying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded(Bytes);

impl Encode for Encoded {
    fn encode<W: Write>(&self, w: W) -> io::Result<usize> {
        write_len_prefixed(w, &self.0)
    }
}

impl Decode for Encoded {
    fn decode<R: Read>(r: R) -> io::Result<Self> {
        Ok(Encoded(Bytes::from(Vec::<u8>::decode(r)?)))
    }
}

/// The same framing as `Vec<u8>`'s in `codeq` (a 32-bit big-endian length, then the bytes),
/// written from a slice so no copy into a `Vec` is needed.
fn write_len_prefixed<W: Write>(mut w: W, bytes: &[u8]) -> io::Result<usize> {
    let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("log record over 4 GiB"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(bytes)?;
    Ok(4 + bytes.len())
}

/// What the WAL's flush thread does once a flush is on disk (or failed).
pub enum Done {
    /// Tell openraft its append is durable.
    Append(LogFlushed<TypeConfig>),
    /// Wake a task waiting for its vote, truncation or purge to be durable.
    Wait(oneshot::Sender<io::Result<()>>),
}

impl raft_log::Callback for Done {
    fn send(self, res: io::Result<()>) {
        match self {
            Done::Append(flushed) => flushed.log_io_completed(res),
            Done::Wait(tx) => {
                let _ = tx.send(res);
            }
        }
    }
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(&e).into()
}

fn vote_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_vote(&e).into()
}

/// The log, shared by openraft's core (writes) and its log readers (apply, replication).
#[derive(Clone)]
pub struct LogStore {
    wal: Arc<Mutex<RaftLog<Wal>>>,
    /// Last committed index openraft reported, for INFO/metrics (openraft 0.9's metrics
    /// have no commit index).
    committed: Arc<AtomicU64>,
}

impl LogStore {
    /// Opens (or creates) the WAL in `dir`, replaying its chunks.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let mut config = raft_log::Config::new(dir.to_string_lossy());
        config.log_cache_capacity = Some(CACHE_MAX_BYTES);
        config.log_cache_max_items = Some(CACHE_MAX_ITEMS);
        config.wal.chunk_max_size = Some(CHUNK_MAX_BYTES);
        config.wal.read_buffer_size = Some(READ_BUFFER_BYTES);
        // Group commit without a wait: whatever queued while the previous fsync ran goes out
        // in the next one (openraft keeps proposing meanwhile); waiting for more would only
        // add latency to a lone write.
        config.wal.flush_batch_wait = Some(Duration::ZERO);
        let wal = RaftLog::open(Arc::new(config))?;
        Ok(LogStore { wal: Arc::new(Mutex::new(wal)), committed: Arc::default() })
    }

    fn wal(&self) -> MutexGuard<'_, RaftLog<Wal>> {
        // A panic elsewhere while holding the lock leaves the WAL as consistent as any
        // failed call does: its own checks refuse what does not follow.
        self.wal.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    /// Index of the last entry on disk at start-up: entries up to it are a replay, and
    /// replays must not re-deliver pub/sub messages.
    pub fn last_index(&self) -> Option<u64> {
        self.wal().log_state().last().map(|l| l.0.index)
    }

    /// Writes what `write` recorded to stable storage (or, with `unsynced` injected, to the
    /// page cache only) and waits for it.
    async fn flushed(
        &self,
        unsynced: Option<Bug>,
        write: impl FnOnce(&mut RaftLog<Wal>) -> io::Result<()>,
    ) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        {
            let mut wal = self.wal();
            write(&mut wal)?;
            wal.flush(!unsynced.is_some_and(injected), Some(Done::Wait(tx)))?;
        }
        rx.await.map_err(|_| io::Error::other("log flush thread stopped"))?
    }

    /// Writes a log moved from elsewhere (the data-dir migration): purged up to `purged`,
    /// `vote`, `entries` after the purge point and the commit point, durably.
    pub(super) async fn restore(
        &self,
        purged: Option<LogId>,
        vote: Option<Vote>,
        entries: Vec<Entry>,
        committed: Option<LogId>,
    ) -> io::Result<()> {
        let encoded = encode_entries(entries)?;
        self.flushed(None, |wal| {
            if let Some(p) = purged {
                wal.purge(Postcard(p))?;
            }
            if let Some(v) = vote {
                wal.save_vote(Postcard(v))?;
            }
            wal.append(encoded)?;
            // The WAL refuses a commit point past its last entry; it is only a hint.
            if let Some(c) = committed.filter(|c| Some(c) <= wal.log_state().last().map(|l| &l.0)) {
                wal.commit(Postcard(c))?;
            }
            Ok(())
        })
        .await
    }
}

fn encode_entries(entries: impl IntoIterator<Item = Entry>) -> io::Result<Vec<(Postcard<LogId>, Encoded)>> {
    entries
        .into_iter()
        .map(|e| {
            let payload = postcard::to_stdvec(&e.payload).map_err(io::Error::other)?;
            Ok((Postcard(e.log_id), Encoded(Bytes::from(payload))))
        })
        .collect()
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
            Bound::Included(i) => i + 1,
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        if end <= start {
            return Ok(Vec::new());
        }
        // Copies of the cached bytes only under the lock; decoding runs after it.
        let read: Vec<(LogId, Encoded)> = self
            .wal()
            .read(start, end)
            .map(|r| r.map(|(id, p)| (id.0, p)))
            .collect::<io::Result<_>>()
            .map_err(read_err)?;
        read.into_iter()
            .map(|(log_id, payload)| {
                let payload: EntryPayload<TypeConfig> = postcard::from_bytes(&payload.0).map_err(read_err)?;
                Ok(Entry { log_id, payload })
            })
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let wal = self.wal();
        let state = wal.log_state();
        let last_purged = state.purged().map(|p| p.0);
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: state.last().map(|l| l.0).or(last_purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = Postcard(*vote);
        self.flushed(Some(Bug::UnsyncedVote), |wal| wal.save_vote(vote).map(drop)).await.map_err(vote_err)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.wal().log_state().vote().map(|v| v.0))
    }

    /// Not flushed on its own: it goes out with the next append. Losing it only makes a
    /// restart re-apply a little more.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.committed.store(committed.map_or(0, |c| c.index), Ordering::Relaxed);
        if let Some(c) = committed {
            self.wal().commit(Postcard(c)).map_err(write_err)?;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.wal().log_state().committed().map(|c| c.0))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let encoded = encode_entries(entries).map_err(write_err)?;
        let mut wal = self.wal();
        // Entries at or below the purge point are in the snapshot already, and the WAL refuses
        // an append that goes back. openraft never sends them, but its storage suite does:
        // `get_initial_state` purges up to the state machine's position, then the test appends
        // entries the state machine had applied.
        let next = wal.log_state().purged().map_or(0, |p| p.0.index + 1);
        wal.append(encoded.into_iter().filter(|(id, _)| id.0.index >= next)).map_err(write_err)?;
        // The fsync runs on the WAL's flush thread, so openraft's core keeps accepting
        // proposals meanwhile; those form the next, larger group.
        wal.flush(!injected(Bug::AckBeforeSync), Some(Done::Append(callback))).map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.flushed(None, |wal| wal.truncate(log_id.index).map(drop)).await.map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.flushed(None, |wal| wal.purge(Postcard(log_id)).map(drop)).await.map_err(write_err)
    }
}
