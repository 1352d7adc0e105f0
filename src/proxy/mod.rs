//! The data plane: Hipache's HTTP/WebSocket/TLS proxy, routing from this node's own replica.
//!
//! A request never touches Raft, the disk or the network to be routed: it reads the routing view
//! ([`view`]) that the apply path republishes after every Raft batch. See `LIFECYCLE.md` for a
//! request and a WebSocket upgrade walked through these files:
//!
//! - [`server`]: worker threads, listeners, TLS handshakes, HTTP/1.1 + HTTP/2, graceful
//!   drain; [`balance`]: which worker serves a connection;
//! - [`h1`]: the HTTP/1.1 fast path for ordinary requests to `http://` backends;
//! - [`handler`]: every other request (hyper) — host, body, lookup, attempts, response;
//! - [`retry`]: the retry and dead-marking policy both paths follow; [`shared`]: what they share;
//! - [`view`]: the published routing view (`crate::routing` builds it and picks backends);
//! - [`dead`]: passive health checks; [`invalid`]: unusable backend URLs, reported once;
//!   [`forward`]: header rules; [`upgrade`]: tunnels;
//! - [`tls`], [`client`], [`pages`], [`access_log`], [`metrics`], [`body`], [`options`].

pub mod access_log;
pub mod balance;
pub mod body;
pub mod client;
pub mod dead;
pub mod forward;
pub mod h1;
pub mod handler;
pub mod invalid;
pub mod metrics;
pub mod options;
pub mod pages;
pub mod retry;
pub mod server;
pub mod shared;
pub mod tls;
pub mod upgrade;
pub mod view;

pub use options::{HttpsListener, ProxyOptions};
pub use server::{Proxy, ProxyError};

/// Wall-clock milliseconds: key deadlines in the keyspace are wall-clock stamps.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
