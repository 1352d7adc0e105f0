//! A command's answer as a value, independent of the wire protocol.
//!
//! The pure core never writes RESP bytes: the same reply is encoded as RESP2 or RESP3 by
//! `resp/` depending on what the connection negotiated with `HELLO`, and is carried between
//! nodes (forwarded writes) with serde. Variants exist only where RESP2 and RESP3 differ
//! (`Map`, `Set`, `NilArray`, `Push`, `Verbatim`), so the encoder can do what Redis 7 does.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// `+OK`, `+QUEUED`, `+PONG`, `+string` (TYPE).
    Status(String),
    /// The full error line without the leading `-`, e.g. `ERR no such key` or
    /// `WRONGTYPE Operation against a key holding the wrong kind of value`.
    Error(String),
    Int(i64),
    Bulk(Bytes),
    /// A missing bulk string: RESP2 `$-1`, RESP3 `_`.
    Nil,
    /// A missing array (EXEC aborted by WATCH, BLPOP timeout): RESP2 `*-1`, RESP3 `_`.
    NilArray,
    Array(Vec<Reply>),
    /// RESP3 map; a flat array of key, value, key, value in RESP2 (HGETALL, HELLO).
    Map(Vec<(Reply, Reply)>),
    /// RESP3 set; a plain array in RESP2 (SMEMBERS, SDIFF).
    Set(Vec<Reply>),
    /// RESP3 verbatim string (`=` with a `txt:` format); a bulk string in RESP2 (INFO).
    Verbatim(String),
    /// RESP3 out-of-band push (pub/sub messages); a plain array in RESP2.
    Push(Vec<Reply>),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Status("OK".into())
    }

    pub fn err(msg: impl Into<String>) -> Reply {
        Reply::Error(msg.into())
    }

    pub fn bulk(b: impl Into<Bytes>) -> Reply {
        Reply::Bulk(b.into())
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
}

/// Replies shared by many commands, spelled once so every command answers byte-identically to
/// Redis 7.0.
impl Reply {
    pub fn wrong_type() -> Reply {
        Reply::err("WRONGTYPE Operation against a key holding the wrong kind of value")
    }

    pub fn not_integer() -> Reply {
        Reply::err("ERR value is not an integer or out of range")
    }

    pub fn syntax_error() -> Reply {
        Reply::err("ERR syntax error")
    }

    /// Redis' `-ERR wrong number of arguments for '<name>' command`.
    pub fn wrong_arity(name: &str) -> Reply {
        Reply::err(format!("ERR wrong number of arguments for '{name}' command"))
    }

    pub fn int_bool(b: bool) -> Reply {
        Reply::Int(i64::from(b))
    }

    /// A bulk reply, or `Nil` when there is nothing.
    pub fn bulk_or_nil(b: Option<&Bytes>) -> Reply {
        b.map_or(Reply::Nil, |b| Reply::Bulk(b.clone()))
    }

    /// An array of bulk strings (KEYS, LRANGE, HKEYS).
    pub fn bulks<'a>(items: impl IntoIterator<Item = &'a Bytes>) -> Reply {
        Reply::Array(items.into_iter().map(|b| Reply::Bulk(b.clone())).collect())
    }
}
