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
use std::os::unix::fs::FileExt;
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

    /// The current snapshot's meta and its body, if there is one, without reading the body:
    /// openraft asks for the current snapshot at every start, for its meta, and that read
    /// the whole file (80 MB at a million frontends) into memory beside the keyspace loaded
    /// from it (the start's peak RSS: 360 MB).
    pub fn load(&self) -> Result<Option<(SnapshotMeta, SavedBody)>, SnapshotFileError> {
        let path = self.path();
        let io_err = |source| SnapshotFileError::Io { path: path.clone(), source };
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(SnapshotFileError::Io { path, source }),
        };
        let file_len = file.metadata().map_err(io_err)?.len();
        let corrupt = || SnapshotFileError::Corrupt { path: path.clone() };
        let mut head = [0; MAGIC.len() + 4];
        if file_len < head.len() as u64 {
            return Err(corrupt());
        }
        file.read_exact_at(&mut head, 0).map_err(io_err)?;
        let (magic, len) = head.split_at(MAGIC.len());
        let len: [u8; 4] = len.try_into().map_err(|_| corrupt())?;
        if magic != MAGIC {
            return Err(corrupt());
        }
        let body_at = head.len() as u64 + u64::from(u32::from_le_bytes(len));
        if body_at > file_len {
            return Err(corrupt());
        }
        let mut meta_bytes = vec![0; (body_at - head.len() as u64) as usize];
        file.read_exact_at(&mut meta_bytes, head.len() as u64).map_err(io_err)?;
        let meta: SnapshotMeta = postcard::from_bytes(&meta_bytes)
            .map_err(|source| SnapshotFileError::Meta { path: path.clone(), source })?;
        let mut saved = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        *saved = (*saved).max(meta.last_log_id);
        drop(saved);
        Ok(Some((meta, SavedBody { file: Arc::new(file), at: body_at, len: file_len - body_at })))
    }
}

/// The body of a snapshot file as it was when opened: a later save renames a new file over
/// the path, and this handle still reads the old one, so a body always goes with its meta.
#[derive(Debug, Clone)]
pub struct SavedBody {
    file: Arc<File>,
    at: u64,
    len: u64,
}

impl SavedBody {
    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// A reader from the start of the body (positioned reads: clones read independently).
    pub fn reader(&self) -> impl Read + '_ {
        io::BufReader::with_capacity(1 << 20, Positioned { body: self, offset: 0 })
    }

    /// The whole body, read into memory.
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        let mut bytes = vec![0; usize::try_from(self.len).map_err(io::Error::other)?];
        self.file.read_exact_at(&mut bytes, self.at)?;
        Ok(bytes)
    }
}

struct Positioned<'a> {
    body: &'a SavedBody,
    offset: u64,
}

impl Read for Positioned<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.body.len - self.offset;
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.body.file.read_at(&mut buf[..want], self.body.at + self.offset)?;
        self.offset += n as u64;
        Ok(n)
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
        assert_eq!(read(&file).unwrap().1, b"nine");
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
        assert_eq!(read(&reopened).unwrap(), (meta(19), b"body 19".to_vec()));
    }

    /// The meta and the whole body, as a test compares them.
    fn read(file: &SnapshotFile) -> Option<(SnapshotMeta, Vec<u8>)> {
        file.load().unwrap().map(|(meta, body)| (meta, body.read_all().unwrap()))
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
        assert_eq!(read(&file).unwrap(), (meta(9), b"body nine".to_vec()));
        assert!(!dir.path().join(TMP_NAME).exists());
        // A failed save leaves the current snapshot as it was.
        let failed = file.save(&meta(11), |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert_eq!(read(&file).unwrap().1, b"body nine");
    }

    /// A body opened before a later save still reads as it was, so it always goes with the
    /// meta read with it (a follower is never sent a body newer than its meta says).
    #[test]
    fn an_opened_body_outlives_later_saves() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path());
        file.save(&meta(7), |w| w.write_all(&[7; 3 << 20])).unwrap();
        let (m, body) = file.load().unwrap().unwrap();
        file.save(&meta(9), |w| w.write_all(b"body nine")).unwrap();
        assert_eq!(m, meta(7));
        let (clone, bytes) = (body.clone(), body.read_all().unwrap());
        assert_eq!(bytes, vec![7; 3 << 20], "read after a replacing save");
        let mut streamed = Vec::new();
        clone.reader().read_to_end(&mut streamed).unwrap();
        assert_eq!(streamed, bytes, "a clone's reader, past its 1 MiB buffer, from its own start");
        assert_eq!(read(&file).unwrap(), (meta(9), b"body nine".to_vec()));
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
