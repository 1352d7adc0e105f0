//! Hipache's routing data model, pure (no IO, no tokio): where its keys live and how they are
//! named. The proxy's routing view and the gRPC admin API both read and write through it, so a
//! `driver` database and prefix apply to both.

mod keys;

pub use keys::{RoutingKeys, HCHECKER_PING};
