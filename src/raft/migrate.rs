//! Moving a data dir of format 1 or 2 (the Raft log, vote and commit point in a sled database
//! at `raft.sled`) to this build's layout, once, at start-up.
//!
//! sled's layout then: tree `raft_log` maps each entry's big-endian index to its postcard
//! encoding; tree `raft_meta` holds `vote`, `committed`, `last_purged` and `format` (a
//! big-endian u32; absent in format 1); in format 1 tree `snapshot` held the snapshot (`meta`,
//! `data`) before it moved to its own file. The new log is written and synced in a directory
//! of its own, then renamed into place: a crash part-way leaves the sled database as it was,
//! and the next start migrates again (`data_dir` retires the database afterwards).

use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::data_dir::sync_dir;
use super::log_store::{LogStore, WAL_DIR};
use super::snapshot_file::{SnapshotFile, SnapshotFileError};
use super::types::{Entry, LogId, SnapshotMeta, Vote};

/// The last format that kept the log in sled.
const LAST_SLED_FORMAT: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("reading the sled database {}: {source}", path.display())]
    Sled { path: PathBuf, source: sled::Error },
    #[error("reading the sled database {}: malformed {what}: {reason}", path.display())]
    Malformed { path: PathBuf, what: &'static str, reason: String },
    #[error("the sled database {} records data format {found}; only formats up to {LAST_SLED_FORMAT} kept the log in sled", path.display())]
    UnknownFormat { path: PathBuf, found: u32 },
    #[error("writing the migrated log to {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("moving the snapshot out of sled: {0}")]
    Snapshot(#[from] SnapshotFileError),
}

/// What a sled data dir held.
struct SledLog {
    format: u32,
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
    /// Entries after the purge point, in order (a purge's deletion may have left older ones).
    entries: Vec<Entry>,
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
}

/// Writes the log, vote and snapshot of the sled database at `sled` into `data_dir`'s WAL and
/// snapshot file; returns the format the database recorded. The database is left as it was.
pub async fn sled_to_wal(data_dir: &Path, sled: &Path) -> Result<u32, MigrateError> {
    let old = read_sled(sled)?;
    tracing::info!(
        path = %sled.display(),
        format = old.format,
        entries = old.entries.len(),
        "moving the Raft log out of sled (once)"
    );
    if let Some((meta, data)) = &old.snapshot {
        let file = SnapshotFile::new(data_dir);
        // A snapshot file, when there is one, superseded the sled snapshot already.
        if file.load()?.is_none() {
            file.save(meta, |w| w.write_all(data))?;
        }
    }
    let staging = data_dir.join(format!("{WAL_DIR}.migrating"));
    let target = data_dir.join(WAL_DIR);
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MigrateError::Write { path, source }
    };
    for leftover in [&staging, &target] {
        // From an earlier try that stopped before the database was retired.
        if leftover.exists() {
            std::fs::remove_dir_all(leftover).map_err(write_err(leftover))?;
        }
    }
    let store = LogStore::open(&staging).map_err(write_err(&staging))?;
    store.restore(old.purged, old.vote, old.entries, old.committed).await.map_err(write_err(&staging))?;
    drop(store);
    std::fs::rename(&staging, &target).map_err(write_err(&target))?;
    sync_dir(data_dir).map_err(write_err(data_dir))?;
    Ok(old.format)
}

fn read_sled(path: &Path) -> Result<SledLog, MigrateError> {
    let sled_err = |source| MigrateError::Sled { path: path.to_path_buf(), source };
    let malformed =
        |what: &'static str, reason: String| MigrateError::Malformed { path: path.to_path_buf(), what, reason };
    let db = sled::Config::new().path(path).open().map_err(sled_err)?;
    let meta = db.open_tree("raft_meta").map_err(sled_err)?;
    let format = match meta.get("format").map_err(sled_err)? {
        Some(v) => u32::from_be_bytes(
            v.as_ref().try_into().map_err(|_| malformed("format record", format!("{} bytes", v.len())))?,
        ),
        None => 1,
    };
    if format > LAST_SLED_FORMAT {
        return Err(MigrateError::UnknownFormat { path: path.to_path_buf(), found: format });
    }
    let get = |tree: &sled::Tree, key: &'static str| -> Result<Option<sled::IVec>, MigrateError> {
        tree.get(key).map_err(sled_err)
    };
    let vote: Option<Vote> = decoded(get(&meta, "vote")?, "vote").map_err(|r| malformed("vote", r))?;
    let committed: Option<Option<LogId>> =
        decoded(get(&meta, "committed")?, "committed").map_err(|r| malformed("commit point", r))?;
    let purged: Option<LogId> =
        decoded(get(&meta, "last_purged")?, "last_purged").map_err(|r| malformed("purge point", r))?;
    let first_kept = purged.map_or(0, |p| p.index + 1);
    let log = db.open_tree("raft_log").map_err(sled_err)?;
    let mut entries = Vec::new();
    for kv in log.range(first_kept.to_be_bytes()..) {
        let (_, v) = kv.map_err(sled_err)?;
        entries.push(postcard::from_bytes::<Entry>(&v).map_err(|e| malformed("log entry", e.to_string()))?);
    }
    let snapshots = db.open_tree("snapshot").map_err(sled_err)?;
    let snapshot = match decoded::<SnapshotMeta>(get(&snapshots, "meta")?, "snapshot meta")
        .map_err(|r| malformed("snapshot", r))?
    {
        Some(meta) => Some((meta, get(&snapshots, "data")?.map(|d| d.to_vec()).unwrap_or_default())),
        None => None,
    };
    Ok(SledLog { format, vote, committed: committed.flatten(), purged, entries, snapshot })
}

fn decoded<T: DeserializeOwned>(value: Option<sled::IVec>, what: &str) -> Result<Option<T>, String> {
    value.map(|v| postcard::from_bytes(&v).map_err(|e| format!("{what}: {e}"))).transpose()
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorage;
    use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader, StoredMembership};

    use super::*;
    use crate::raft::data_dir;
    use crate::raft::types::{Op, Request};

    fn entry(index: u64, key: &str) -> Entry {
        let argv = ["SET", key, "v"].iter().map(|a| bytes::Bytes::copy_from_slice(a.as_bytes())).collect();
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(2, 1), index),
            payload: EntryPayload::Normal(Request { stamp_ms: 1, op: Op::Command { db: 0, argv } }),
        }
    }

    /// A data dir as a format-`format` build left it: entries 1–10 with 1–4 purged (1–2 not
    /// deleted yet, as a purge's background deletion could leave them), a vote, a commit point
    /// and, for format 1, the snapshot in sled.
    fn sled_dir(data: &Path, format: u32) {
        let db = sled::open(data.join("raft.sled")).unwrap();
        let meta = db.open_tree("raft_meta").unwrap();
        let log = db.open_tree("raft_log").unwrap();
        for i in (1..=2).chain(5..=10) {
            log.insert(u64::to_be_bytes(i), postcard::to_stdvec(&entry(i, &format!("k{i}"))).unwrap()).unwrap();
        }
        let vote = Vote::new_committed(2, 1);
        meta.insert("vote", postcard::to_stdvec(&vote).unwrap()).unwrap();
        meta.insert("committed", postcard::to_stdvec(&Some(entry(9, "").log_id)).unwrap()).unwrap();
        meta.insert("last_purged", postcard::to_stdvec(&entry(4, "").log_id).unwrap()).unwrap();
        if format >= 2 {
            meta.insert("format", &format.to_be_bytes()).unwrap();
        } else {
            let snapshots = db.open_tree("snapshot").unwrap();
            let snap = SnapshotMeta {
                last_log_id: Some(entry(4, "").log_id),
                last_membership: StoredMembership::default(),
                snapshot_id: "from-sled".into(),
            };
            snapshots.insert("meta", postcard::to_stdvec(&snap).unwrap()).unwrap();
            snapshots.insert("data", b"body".as_slice()).unwrap();
        }
        db.flush().unwrap();
    }

    async fn migrated_log(data: &Path) -> (LogStore, Vec<u64>) {
        let mut log = LogStore::open(&data.join(WAL_DIR)).unwrap();
        let read = log.try_get_log_entries(0..100).await.unwrap();
        assert_eq!(read[0], entry(5, "k5"), "entries come back as they were written");
        (log, read.iter().map(|e| e.log_id.index).collect())
    }

    #[tokio::test]
    async fn a_format_2_dir_is_moved_out_of_sled_with_its_log_and_vote() {
        let dir = tempfile::tempdir().unwrap();
        sled_dir(dir.path(), 2);
        assert_eq!(data_dir::prepare(dir.path()).await.unwrap(), 2);
        assert!(dir.path().join("raft.sled").is_file(), "the database is retired, the note in its place");
        let (mut log, indexes) = migrated_log(dir.path()).await;
        assert_eq!(indexes, (5..=10).collect::<Vec<_>>(), "purged entries left behind are not carried over");
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(4));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(10));
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new_committed(2, 1)));
        assert_eq!(log.read_committed().await.unwrap().map(|l| l.index), Some(9));
        drop(log);
        assert_eq!(data_dir::prepare(dir.path()).await.unwrap(), data_dir::DATA_FORMAT, "migrated once only");
        assert_eq!(migrated_log(dir.path()).await.1.len(), 6);
    }

    /// A format-1 dir also had its snapshot in sled: it becomes the snapshot file.
    #[tokio::test]
    async fn a_format_1_snapshot_kept_in_sled_becomes_the_snapshot_file() {
        let dir = tempfile::tempdir().unwrap();
        sled_dir(dir.path(), 1);
        assert_eq!(data_dir::prepare(dir.path()).await.unwrap(), 1);
        let (meta, body) = SnapshotFile::new(dir.path()).load().unwrap().unwrap();
        assert_eq!((meta.snapshot_id.as_str(), body.read_all().unwrap().as_slice()), ("from-sled", b"body".as_slice()));
        migrated_log(dir.path()).await;
    }

    /// A migration that stopped after writing part of the new log (here: a stale staging
    /// directory and a stale log) starts over from the database, which it left as it was.
    #[tokio::test]
    async fn an_interrupted_migration_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        sled_dir(dir.path(), 2);
        for stale in [format!("{WAL_DIR}.migrating"), WAL_DIR.to_string()] {
            let log = LogStore::open(&dir.path().join(stale)).unwrap();
            log.restore(None, None, vec![entry(1, "stale")], None).await.unwrap();
        }
        data_dir::prepare(dir.path()).await.unwrap();
        assert_eq!(migrated_log(dir.path()).await.1, (5..=10).collect::<Vec<_>>());
        assert!(!dir.path().join(format!("{WAL_DIR}.migrating")).exists());
    }
}
