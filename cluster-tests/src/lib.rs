//! Multi-process cluster tests: real `hipache-raft` processes on loopback, driven over RESP,
//! gRPC and HTTP. The single-node harness is shared with the main crate's tests.

#[path = "../../tests/common/mod.rs"]
pub mod node;

pub mod checker;
pub mod client;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod power;
pub mod run;
pub mod transfer;
pub mod watch;
