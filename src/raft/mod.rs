//! Everything openraft: the type config, the log (a chunked WAL) and state machine, the gRPC transport,
//! forwarding to the leader, and the node facade the rest of the program uses. See
//! `LIFECYCLE.md` for the write path.

mod data_dir;
mod dedup;
mod disk;
mod expiry;
mod forward;
mod leader;
mod log_store;
mod membership;
mod migrate;
mod network;
mod node;
mod proposer;
mod replicas;
mod service;
pub(crate) mod snapshot_body;
mod snapshot_file;
mod state_machine;
#[cfg(test)]
mod storage_tests;
pub(crate) mod types;

pub use node::{now_ms, NodeError, NodeOptions, RaftNode, Status, Written};
pub use proposer::MAX_BATCH;
pub use service::service;
pub use state_machine::{AppliedState, ApplyListener, Changed};
pub use types::{NodeInfo, Op, WatchedKey};
