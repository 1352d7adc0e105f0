//! The pure keyspace core: a Redis 7.0-compatible keyspace (strings, lists, sets, hashes,
//! expiry, 16 databases) that the Raft state machine applies commands to.
//!
//! No IO, no clock reads, no randomness, no hash-order dependence: replies and state are a
//! function of the log alone (see `keyspace` for time and WATCH versions). Replies are
//! `Reply` values; `resp/` encodes them as RESP2 or RESP3.

mod access;
mod args;
pub mod commands;
pub(crate) mod db;
mod expire;
pub mod glob;
mod hashes;
mod keys;
pub mod list;
mod lists;
pub mod reply;
mod server;
mod sets;
pub mod store;
mod strings;
pub mod value;
mod versions;

pub use commands::{command_table, lookup, select, unknown_command, CommandSpec};
pub use list::List;
pub use reply::Reply;
pub use store::{ApplyCtx, Change, Entry, Keyspace, KeyspaceWithoutStamps, NullPublisher, Publisher};
pub use value::Value;
pub use versions::Watch;

/// Redis' default `databases`.
pub const DATABASES: usize = 16;
#[cfg(test)]
pub(crate) mod testkit;
