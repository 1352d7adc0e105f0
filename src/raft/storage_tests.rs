//! openraft's storage conformance suite against our log store (the `raft-log` WAL) and state machine.
//!
//! The suite checks the contracts openraft relies on but cannot enforce through types: log
//! state after purge and truncation, vote persistence, membership recovery from log and state
//! machine, applied state, snapshot build and install.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageIOError;

use super::log_store::LogStore;
use super::state_machine::{Applied, StateMachine};
use super::types::{StorageError, TypeConfig};
use crate::pubsub::PubSub;

/// Builds a fresh store pair in a temporary data directory; the directory is the guard the
/// suite keeps alive while it runs a test.
struct Stores;

fn io_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write(&e).into()
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Stores {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().map_err(io_err)?;
        let log = LogStore::open(&dir.path().join(super::log_store::WAL_DIR)).map_err(io_err)?;
        let file = super::snapshot_file::SnapshotFile::new(dir.path());
        let sm = StateMachine::open(file, Applied::new(Arc::new(PubSub::default()), 1), 0)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn stores_pass_openraft_suite() {
    Suite::test_all(Stores).unwrap();
}
