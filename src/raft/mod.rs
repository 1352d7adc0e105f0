//! Everything openraft: the type config, the sled log and state machine, the transport, and
//! the node facade the rest of the program uses. See `LIFECYCLE.md` for the write path.

mod log_store;
mod network;
mod node;
mod state_machine;
mod types;

pub use node::{now_ms, NodeError, NodeOptions, RaftNode, Status};
pub use state_machine::ApplyListener;
pub use types::{NodeInfo, Op, WatchedKey};
