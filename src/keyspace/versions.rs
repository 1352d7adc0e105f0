//! WATCH versions.
//!
//! `version()` is an opaque number a `WATCH` remembers and `EXEC` compares. A live key's is
//! `1 +` the log index of its last modification (value or TTL). A missing key's is 0 while
//! no key of its *bucket* was ever modified, else that bucket's stamp with the top bit set (log
//! indexes never reach it, so it cannot equal a live version): every write, delete, rename or flush
//! stamps the bucket of each key it touches (4,096 buckets by a fixed FNV-1a hash of database
//! and key). Hence `EXEC` aborts when a watched key was written, deleted, renamed away,
//! flushed or expired, and also when a key missing at `WATCH` was created and deleted again
//! in between (the bucket moved). A key that had already expired when it was watched does not
//! abort just because a sweep removed it (sweeps do not stamp buckets), as in Redis 7.0.
//! Two keys sharing a bucket can only cause a needless abort, never a missed one, and the
//! clients of optimistic locking retry an abort anyway. The buckets are part of the
//! replicated state (snapshots carry them), so every replica decides every `EXEC` alike.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::store::Keyspace;

/// Buckets of [`Keyspace::stamps`]: few enough to clone and snapshot cheaply (an `imbl`
/// vector), many enough that unrelated deletes rarely abort a transaction.
pub(super) const STAMP_BUCKETS: usize = 4096;
/// Marks the version of a missing key whose bucket was stamped (module docs).
const MISSING_TAG: u64 = 1 << 63;

/// A key a client `WATCH`ed and the `version()` it had then; carried inside the EXEC entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    pub db: usize,
    pub key: Bytes,
    pub version: u64,
}

impl Keyspace {
    /// What a `WATCH` records for `key` (see the module docs).
    pub fn version(&self, db: usize, key: &[u8], now_ms: u64) -> u64 {
        self.version_at(db, key, now_ms.max(self.clock_ms()))
    }

    pub(super) fn version_at(&self, db: usize, key: &[u8], now: u64) -> u64 {
        match self.get(db, key).filter(|e| !e.is_expired(now)) {
            Some(e) => e.version + 1,
            None => match self.stamps.get(stamp_bucket(db, key)).copied().unwrap_or(0) {
                0 => 0,
                stamp => stamp | MISSING_TAG,
            },
        }
    }

    /// A key a command wrote, deleted, renamed or flushed at log index `index`.
    pub(crate) fn modified(&mut self, db: usize, key: Bytes, index: u64) {
        self.stamps.set(stamp_bucket(db, &key), index + 1);
        self.record(db, key);
    }
}

/// FNV-1a of the database number and the key: fixed, so every replica and every version of
/// the program picks the same bucket.
fn stamp_bucket(db: usize, key: &[u8]) -> usize {
    let hash = super::db::fnv1a(std::iter::once(db as u8).chain(key.iter().copied()));
    (hash % STAMP_BUCKETS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{watch, Node};
    use super::*;
    use crate::keyspace::Reply;

    #[test]
    fn watch_aborts_on_write_delete_rename_flush_expire() {
        let scenarios: &[(&str, &str)] = &[
            ("set k v", "set k w"),
            ("set k v", "del k"),
            ("set k v", "rename k k2"),
            ("set k v", "flushdb"),
            ("set k v", "flushall"),
            ("set k v", "expire k 100"),
            ("rpush k a", "rpush k b"),
            ("del k", "set k v"),
        ];
        for (setup, change) in scenarios {
            let mut n = Node::new();
            n.run(setup);
            let w = watch(&n, "k");
            n.run(change);
            assert_eq!(n.exec(&["set other 1"], &[w]), Reply::NilArray, "{setup} / {change}");
            assert_eq!(n.read("exists other"), Reply::Int(0), "nothing ran");
        }
    }

    #[test]
    fn watch_passes_when_untouched_or_noop() {
        let mut n = Node::new();
        n.run("sadd k a");
        let w = watch(&n, "k");
        n.run("set unrelated 1");
        n.run("sadd k a");
        n.run("srem k zzz");
        n.run("get k");
        assert_eq!(n.exec(&["set other 1"], &[w]), Reply::Array(vec![Reply::ok()]));
        let missing = watch(&n, "never");
        assert_eq!(missing.version, 0, "never-touched missing keys have version 0, as before buckets");
        assert_eq!(n.exec(&["get never"], &[missing]), Reply::Array(vec![Reply::Nil]));
    }

    #[test]
    fn watch_of_a_missing_key_sees_it_come_and_go() {
        let mut n = Node::new();
        let w = watch(&n, "k");
        n.run("set k v");
        n.run("del k");
        assert_eq!(n.exec(&["get k"], &[w]), Reply::NilArray, "created and deleted meanwhile");
        let w = watch(&n, "k");
        n.run("rpush l a");
        n.run("rename l k");
        n.run("flushdb");
        assert_eq!(n.exec(&["get k"], &[w]), Reply::NilArray, "renamed onto, then flushed");
        // Created with a TTL and expired before EXEC: it was still created (Redis aborts too).
        let w = watch(&n, "k");
        n.run("set k v px 10");
        n.now += 20;
        n.sweep();
        assert_eq!(n.exec(&["get k"], &[w]), Reply::NilArray);
        // Untouched, or only other keys' buckets stamped: it passes.
        let w = watch(&n, "k");
        n.run("set other 1");
        n.run("del other");
        assert_ne!(stamp_bucket(0, b"other"), stamp_bucket(0, b"k"));
        assert_eq!(n.exec(&["get k"], &[w]), Reply::Array(vec![Reply::Nil]));
    }

    #[test]
    fn watch_sees_expiry_by_time_alone() {
        let mut n = Node::new();
        n.run("set k v px 100");
        let w = watch(&n, "k");
        n.now += 100;
        assert_ne!(n.ks.version(0, b"k", n.now), w.version, "deadline passed: version changed");
        assert_eq!(n.exec(&["get k"], &[w]), Reply::NilArray);
        // Watched after expiry: the sweep removing it is not a change.
        let mut n = Node::new();
        n.run("set k v px 100");
        n.now += 200;
        let w = watch(&n, "k");
        n.sweep();
        assert_eq!(n.exec(&["get k"], &[w]), Reply::Array(vec![Reply::Nil]));
    }
}
