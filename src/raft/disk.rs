//! The disk-space guard: a node refuses new writes while the file system of its data dir has
//! less free space than `cluster.diskReserve`, so a disk filling up ends in a clear error to
//! the client instead of a failed log append, which stops the Raft core for good. Reads and
//! routing go on from the applied state; writes resume as soon as space is freed, and nothing
//! acknowledged is at stake (a refused write was never proposed).

use std::path::PathBuf;

use super::node::NodeError;

#[derive(Debug, Clone)]
pub(super) struct DiskGuard {
    dir: PathBuf,
    reserve: u64,
}

impl DiskGuard {
    pub(super) fn new(dir: PathBuf, reserve: u64) -> DiskGuard {
        DiskGuard { dir, reserve }
    }

    /// `Err(DiskFull)` when less than the reserve is free. A file system that cannot be
    /// asked (a transient error) does not block writes: the append itself would still fail
    /// loudly if the disk really were full.
    pub(super) fn check(&self) -> Result<(), NodeError> {
        if self.reserve == 0 {
            return Ok(());
        }
        let free = match nix::sys::statvfs::statvfs(&self.dir) {
            Ok(s) => s.blocks_available().saturating_mul(s.fragment_size()),
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), error = %e, "cannot read the free space of the data dir");
                return Ok(());
            }
        };
        if free < self.reserve {
            return Err(NodeError::DiskFull { dir: self.dir.clone(), free, reserve: self.reserve });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_below_the_reserve_only() {
        let dir = tempfile::tempdir().unwrap();
        assert!(DiskGuard::new(dir.path().into(), 0).check().is_ok(), "0 turns the guard off");
        assert!(DiskGuard::new(dir.path().into(), 1).check().is_ok());
        match DiskGuard::new(dir.path().into(), u64::MAX).check() {
            Err(NodeError::DiskFull { free, reserve, .. }) => assert!(free < reserve),
            other => panic!("{other:?}"),
        }
    }
}
