//! hipache-raft: a Hipache-compatible reverse proxy whose routing state is replicated by an
//! embedded Raft cluster.
//!
//! The write path reads top to bottom: `resp`/`grpc` → `raft` (forward to the leader, log,
//! apply through the pure `keyspace` core) → a new routing snapshot → `proxy` reads it.
//!
//! Section numbers (§) in comments refer to `docs/hipache-behaviour.md`, our account of the
//! Hipache behaviour we keep or fix, unless a comment names another document (an RFC).

pub mod config;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod grpc;
pub mod inject;
pub mod keyspace;
pub mod metrics;
pub mod peer_tls;
pub mod privileges;
pub mod proto;
pub mod proxy;
pub mod pubsub;
pub mod raft;
pub mod resp;
pub mod routing;
pub mod secret;
pub mod signals;
