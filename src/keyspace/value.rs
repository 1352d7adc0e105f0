//! The value stored under a key, one variant per Redis type the core supports.
//!
//! Every container is a deterministic structure: iteration order depends only on the
//! operations applied, never on a hasher seed, so replicas fed the same log hold equal values
//! and answer `SMEMBERS`/`HGETALL` in the same order.

use bytes::Bytes;
use imbl::OrdSet;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::list::List;
use super::reply::Reply;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// Boxed, as `Hash` is: a `Bytes` is 32 bytes inline, and routing data is lists, so the
    /// keyspace's map slots stay sized for a list (a string pays one small allocation).
    Str(Box<Bytes>),
    /// Packed while small, a persistent vector once large (`list`).
    List(List),
    /// Ordered by bytes, so `SMEMBERS` is stable across replicas (Redis' own order is
    /// unspecified, clients must not depend on it). Boxed like `Str`: an `OrdSet` is 24 bytes
    /// inline and would leave no room for `Value`'s tag beside a list.
    Set(Box<OrdSet<Bytes>>),
    /// Insertion order, like Redis' listpack encoding that small hashes use: `HGETALL` lists
    /// fields in the order they were first set, and `HDEL` keeps the others in place.
    /// Boxed: an `IndexMap` is 72 bytes inline, and every entry of the keyspace's map is as
    /// large as its largest variant (a million frontends' lists would each carry 32 unused
    /// bytes). Serialized as the map itself.
    Hash(Box<IndexMap<Bytes, Bytes>>),
}

impl Value {
    /// The name `TYPE` and `SCAN ... TYPE` use.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::Hash(_) => "hash",
        }
    }
}

/// One Redis type as a Rust type, so command code asks for "the list at this key" once and
/// gets either the list or the `WRONGTYPE` reply, instead of matching on `Value` everywhere.
pub(crate) trait Kind: Sized {
    fn project(value: &Value) -> Option<&Self>;
    fn project_mut(value: &mut Value) -> Option<&mut Self>;
    fn wrap(self) -> Value;
    /// Containers that become empty are deleted, as Redis does; a string never is (an empty
    /// string is a value).
    fn is_vacant(&self) -> bool;

    fn of(value: &Value) -> Result<&Self, Reply> {
        Self::project(value).ok_or_else(Reply::wrong_type)
    }
}

macro_rules! kind {
    // A boxed variant projects to what the box holds (`Some(inner)` derefs the box).
    (boxed $ty:ty, $variant:ident, $vacant:expr) => {
        kind!($ty, $variant, $vacant, Box::new);
    };
    ($ty:ty, $variant:ident, $vacant:expr) => {
        kind!($ty, $variant, $vacant, std::convert::identity);
    };
    ($ty:ty, $variant:ident, $vacant:expr, $wrap:path) => {
        impl Kind for $ty {
            fn project(value: &Value) -> Option<&Self> {
                match value {
                    Value::$variant(inner) => Some(inner),
                    _ => None,
                }
            }
            fn project_mut(value: &mut Value) -> Option<&mut Self> {
                match value {
                    Value::$variant(inner) => Some(inner),
                    _ => None,
                }
            }
            fn wrap(self) -> Value {
                Value::$variant($wrap(self))
            }
            fn is_vacant(&self) -> bool {
                let vacant: fn(&Self) -> bool = $vacant;
                vacant(self)
            }
        }
    };
}

kind!(boxed Bytes, Str, |_| false);
kind!(List, List, |l| l.is_empty());
kind!(boxed OrdSet<Bytes>, Set, |s| s.is_empty());
kind!(Box<IndexMap<Bytes, Bytes>>, Hash, |h| h.is_empty());
