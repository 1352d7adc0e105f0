//! What a node's data dir holds, and which builds may open it.
//!
//! - `raft-log/`: the Raft log and vote, a chunked write-ahead log (`log_store`).
//! - `snapshot`: the latest snapshot (`snapshot_file`).
//! - `format`: the data format number, as text. A build refuses a dir of a newer format
//!   rather than misread it.
//! - `raft.sled`: up to data format 2 the log and vote lived in a sled database there (and in
//!   format 1 the snapshot too). A build of this format moves such a database into
//!   `raft-log/` once ([`super::migrate`]). From format 3 on, `raft.sled` is a plain file that
//!   says why: builds of format 2 or older know only that path, and with nothing there they
//!   would start on an empty state (a lone node would even make itself a new cluster); with a
//!   file there, sled cannot open it and they stop, naming the path.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use super::migrate::{self, MigrateError};

/// Version of what this build writes to a data dir (log, vote, snapshots). Bump it with any
/// change older builds cannot read, so that they refuse the dir instead of failing later; this
/// build reads every older version (new `Op` variants go last, older snapshot bodies have
/// decode fallbacks, older log stores are migrated).
/// - 1: before the number existed.
/// - 2: proposals numbered for many in flight (`Op::Sequenced`); marked snapshot bodies.
/// - 3: the log and vote in `raft-log/`, not in sled.
pub const DATA_FORMAT: u32 = 3;

const FORMAT_FILE: &str = "format";
const LEGACY_SLED: &str = "raft.sled";
/// Where a migrated sled database goes until it is deleted: renaming it is the one atomic step
/// that marks the migration done.
const MIGRATED_SLED: &str = "raft.sled.migrated";

const LEGACY_NOTE: &str = "This hipache-raft data directory is in data format 3 or later: the \
Raft log and vote are in raft-log/, not in a sled database here. A build that looks for them \
here (data format 2 or older) cannot read it: run a newer build.\n";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: not a data format number: {text:?}", path.display())]
    Malformed { path: PathBuf, text: String },
    #[error("data format {found}, but this build reads formats up to {supported}")]
    Newer { found: u32, supported: u32 },
    #[error(transparent)]
    Migrate(#[from] MigrateError),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io { path: path.to_path_buf(), source }
}

/// Makes `data_dir` ready for this build: creates it, refuses a newer format, migrates a sled
/// log store, and records this build's format. Returns the format found before (this one for a
/// new dir).
pub async fn prepare(data_dir: &Path) -> Result<u32, DataDirError> {
    fs::create_dir_all(data_dir).map_err(io_at(data_dir))?;
    let recorded = read_format(data_dir)?;
    if let Some(found) = recorded.filter(|f| *f > DATA_FORMAT) {
        return Err(DataDirError::Newer { found, supported: DATA_FORMAT });
    }
    let sled = data_dir.join(LEGACY_SLED);
    let found = if sled.is_dir() {
        let found = migrate::sled_to_wal(data_dir, &sled).await?;
        finish_migration(data_dir, &sled)?;
        found
    } else {
        recorded.unwrap_or(DATA_FORMAT)
    };
    let migrated = data_dir.join(MIGRATED_SLED);
    if migrated.exists() {
        // The migration was done but the old database not yet deleted when the node stopped.
        fs::remove_dir_all(&migrated).map_err(io_at(&migrated))?;
    }
    if recorded != Some(DATA_FORMAT) {
        write_durably(data_dir, FORMAT_FILE, format!("{DATA_FORMAT}\n").as_bytes())?;
    }
    if !sled.exists() {
        write_durably(data_dir, LEGACY_SLED, LEGACY_NOTE.as_bytes())?;
    }
    Ok(found)
}

fn read_format(data_dir: &Path) -> Result<Option<u32>, DataDirError> {
    let path = data_dir.join(FORMAT_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(DataDirError::Io { path, source }),
    };
    match text.trim().parse() {
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(DataDirError::Malformed { path, text }),
    }
}

/// The log is in `raft-log/` (synced): retire the sled database with one rename, so a crash at
/// any point leaves either the database to migrate again or the finished log (whose format,
/// when not recorded yet, is this build's: `prepare` records it next).
fn finish_migration(data_dir: &Path, sled: &Path) -> Result<(), DataDirError> {
    let migrated = data_dir.join(MIGRATED_SLED);
    fs::rename(sled, &migrated).map_err(io_at(sled))?;
    sync_dir(data_dir).map_err(io_at(data_dir))?;
    tracing::info!(dir = %data_dir.display(), "the Raft log moved from sled to raft-log/ (data format {DATA_FORMAT})");
    Ok(())
}

/// Replaces `data_dir/name` with `contents`: written to a temporary file, synced, renamed over
/// the old one, and the directory synced, so a power cut leaves the old or the new file whole.
fn write_durably(data_dir: &Path, name: &str, contents: &[u8]) -> Result<(), DataDirError> {
    let tmp = data_dir.join(format!("{name}.tmp"));
    let path = data_dir.join(name);
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        io::Write::write_all(&mut f, contents)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        sync_dir(data_dir)
    };
    write().map_err(io_at(&path))
}

/// Makes a directory's entries (files created, renamed or removed in it) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_new_dir_records_its_format_and_stops_older_builds() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("node");
        assert_eq!(prepare(&data).await.unwrap(), DATA_FORMAT);
        assert_eq!(fs::read_to_string(data.join(FORMAT_FILE)).unwrap(), format!("{DATA_FORMAT}\n"));
        // What a format-2 build does first: open sled at `raft.sled`. It must fail, not start empty.
        let err = sled::Config::new().path(data.join(LEGACY_SLED)).open();
        assert!(err.is_err(), "an older build opened the data dir");
        assert_eq!(prepare(&data).await.unwrap(), DATA_FORMAT, "a second start finds its own format");
    }

    #[tokio::test]
    async fn a_newer_or_malformed_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FORMAT_FILE), "4\n").unwrap();
        let err = prepare(dir.path()).await.unwrap_err();
        assert!(matches!(err, DataDirError::Newer { found: 4, supported: DATA_FORMAT }), "{err}");
        assert_eq!(fs::read_to_string(dir.path().join(FORMAT_FILE)).unwrap(), "4\n", "left as it was");
        fs::write(dir.path().join(FORMAT_FILE), "three").unwrap();
        let err = prepare(dir.path()).await.unwrap_err().to_string();
        assert!(err.contains("not a data format number") && err.contains("format"), "{err}");
    }

    #[tokio::test]
    async fn a_migration_interrupted_after_its_rename_is_finished() {
        // Stopped before the format was recorded, or after.
        for recorded in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let migrated = dir.path().join(MIGRATED_SLED);
            fs::create_dir_all(migrated.join("blobs")).unwrap();
            if recorded {
                fs::write(dir.path().join(FORMAT_FILE), format!("{DATA_FORMAT}\n")).unwrap();
            }
            assert_eq!(prepare(dir.path()).await.unwrap(), DATA_FORMAT);
            assert!(!migrated.exists(), "the retired database is deleted");
            assert!(dir.path().join(LEGACY_SLED).is_file(), "older builds find the note");
            assert_eq!(fs::read_to_string(dir.path().join(FORMAT_FILE)).unwrap(), format!("{DATA_FORMAT}\n"));
        }
    }
}
