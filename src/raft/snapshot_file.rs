//! The current snapshot as one file in the data dir (`<dataDir>/snapshot`), not a sled value.
//!
//! Why a file: sled held the whole snapshot (80 MB at a million frontends) in its page cache
//! as one value, and the builder first encoded it into a buffer of that size. Here the builder
//! streams the encoding through a small buffer into `snapshot.tmp`, syncs it and renames it over
//! `snapshot` (then syncs the directory), so a power cut leaves either the old snapshot or the
//! new one, whole, and memory stays bounded whatever the keyspace's size.
//!
//! Saves are serialised, and a save older than the snapshot already saved is skipped: a snapshot
//! this node builds and one it installs from the leader can overlap (openraft runs the builder
//! in its own task), and the builder's, older, must neither collide with the install on the
//! temporary file nor replace it afterwards (the log before the installed one is purged, so a
//! restart from the older snapshot would miss entries).
//!
//! Layout: `MAGIC`, the meta's length (u32, little-endian), the meta (postcard), then the body
//! to the end of the file, byte for byte what `SnapshotBody::encode` makes and what a leader
//! sends to a follower.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::types::{LogId, SnapshotMeta};

const MAGIC: &[u8] = b"hipache-raft snapshot 1\n";
const NAME: &str = "snapshot";
const TMP_NAME: &str = "snapshot.tmp";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("snapshot file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("snapshot file {path} is not a snapshot (bad header); move it away to start from the log")]
    Corrupt { path: PathBuf },
    #[error("snapshot file {path}: meta: {source}")]
    Meta { path: PathBuf, source: postcard::Error },
}

#[derive(Debug, Clone)]
pub struct SnapshotFile {
    dir: PathBuf,
    /// The last log id of the snapshot in the file (as saved or loaded); held while saving.
    saved: Arc<Mutex<Option<LogId>>>,
}

impl SnapshotFile {
    pub fn new(data_dir: &Path) -> SnapshotFile {
        SnapshotFile { dir: data_dir.to_path_buf(), saved: Arc::default() }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(NAME)
    }

    /// Replaces the current snapshot with `meta` and the body `write_body` streams out; durable
    /// when it returns. Returns false, writing nothing, when the file already holds a snapshot
    /// of a later log id. Blocking.
    pub fn save(
        &self,
        meta: &SnapshotMeta,
        write_body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<bool, SnapshotFileError> {
        let mut saved = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        if meta.last_log_id < *saved {
            return Ok(false);
        }
        let tmp = self.dir.join(TMP_NAME);
        let io_err = |source| SnapshotFileError::Io { path: tmp.clone(), source };
        let meta_bytes =
            postcard::to_stdvec(meta).map_err(|source| SnapshotFileError::Meta { path: tmp.clone(), source })?;
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(io_err)?);
        out.write_all(MAGIC).map_err(io_err)?;
        out.write_all(&(meta_bytes.len() as u32).to_le_bytes()).map_err(io_err)?;
        out.write_all(&meta_bytes).map_err(io_err)?;
        write_body(&mut out).map_err(io_err)?;
        let file = out.into_inner().map_err(|e| io_err(e.into_error()))?;
        file.sync_all().map_err(io_err)?;
        fs::rename(&tmp, self.path()).map_err(io_err)?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io_err)?;
        *saved = meta.last_log_id;
        Ok(true)
    }

    /// The current snapshot's meta and body, if there is one.
    pub fn load(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, SnapshotFileError> {
        let path = self.path();
        let mut bytes = Vec::new();
        match File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(SnapshotFileError::Io { path, source }),
        }
        let corrupt = || SnapshotFileError::Corrupt { path: path.clone() };
        let rest = bytes.strip_prefix(MAGIC).ok_or_else(corrupt)?;
        let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let len = u32::from_le_bytes(*len) as usize;
        let meta_bytes = rest.get(..len).ok_or_else(corrupt)?;
        let meta: SnapshotMeta = postcard::from_bytes(meta_bytes)
            .map_err(|source| SnapshotFileError::Meta { path: path.clone(), source })?;
        let mut saved = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        *saved = (*saved).max(meta.last_log_id);
        drop(saved);
        let body_at = MAGIC.len() + 4 + len;
        bytes.drain(..body_at);
        Ok(Some((meta, bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::{LogId, StoredMembership};

    /// A build that finishes after an install of a later snapshot leaves the install's file.
    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path());
        assert!(file.save(&meta(9), |w| w.write_all(b"nine")).unwrap());
        assert!(!file.save(&meta(7), |w| w.write_all(b"seven")).unwrap(), "older: skipped");
        assert_eq!(file.load().unwrap().unwrap().1, b"nine");
        // The same holds for a file found at start-up.
        let reopened = SnapshotFile::new(dir.path());
        reopened.load().unwrap();
        assert!(!reopened.save(&meta(8), |w| w.write_all(b"eight")).unwrap());
        // Saves from two threads at once never collide on the temporary file.
        let threads: Vec<_> = (10..20)
            .map(|i| {
                let file = reopened.clone();
                std::thread::spawn(move || {
                    file.save(&meta(i), |w| w.write_all(format!("body {i}").as_bytes())).unwrap()
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(reopened.load().unwrap().unwrap(), (meta(19), b"body 19".to_vec()));
    }

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), index)),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("s{index}"),
        }
    }

    #[test]
    fn saves_replace_the_snapshot_whole() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path());
        assert!(file.load().unwrap().is_none(), "no snapshot yet");
        file.save(&meta(7), |w| w.write_all(b"body seven")).unwrap();
        file.save(&meta(9), |w| w.write_all(b"body nine")).unwrap();
        let (m, body) = file.load().unwrap().unwrap();
        assert_eq!((m, body), (meta(9), b"body nine".to_vec()));
        assert!(!dir.path().join(TMP_NAME).exists());
        // A failed save leaves the current snapshot as it was.
        let failed = file.save(&meta(11), |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert_eq!(file.load().unwrap().unwrap().1, b"body nine");
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path());
        for damaged in [&b"garbage"[..], MAGIC, &[MAGIC, &[200, 0, 0, 0][..], b"x"].concat()] {
            fs::write(dir.path().join(NAME), damaged).unwrap();
            let err = file.load().unwrap_err().to_string();
            assert!(err.contains("snapshot file"), "{err}");
        }
    }
}
