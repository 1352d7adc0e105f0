//! The Redis-compatible admin listener. See `LIFECYCLE.md` for a connection's life.

mod admin;
pub mod decode;
pub mod encode;
mod inline;
mod server;
mod session;

pub use server::{serve, RespOptions, User};
