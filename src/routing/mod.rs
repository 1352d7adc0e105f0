//! Hipache's routing data model, pure (no IO, no tokio): where its keys live and how they are
//! named ([`keys`]), request hosts ([`host`]), frontends and their backends ([`backend`]),
//! certificates ([`certs`]), the view built from the keyspace ([`view`]) and the choice of a
//! backend for a request ([`lookup`]). The proxy publishes and reads the view; the gRPC admin
//! API reads and writes through the same keys, so a `driver` database and prefix apply to both.

pub mod backend;
pub mod certs;
pub mod host;
mod keys;
pub mod lookup;
pub mod view;

pub use keys::{RoutingKeys, HCHECKER_PING};
pub use view::RoutingView;
