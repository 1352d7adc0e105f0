//! One numbered database: the entries plus the two indexes kept in step with them.
//!
//! All three are `imbl` persistent maps, so cloning a `Db` (for a Raft snapshot) is O(1) and
//! the clone shares structure with the live state. The indexes are derived data: only the
//! entries are serialized, and the indexes are rebuilt on load.

use bytes::Bytes;
use imbl::{OrdMap, OrdSet};
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::store::Entry;
use super::value::Value;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(into = "OrdMap<Bytes, Entry>")]
pub(crate) struct Db {
    entries: OrdMap<Bytes, Entry>,
    /// `(deadline, key)` of every key with a TTL: the sweep and `next_deadline` read the front
    /// instead of scanning all keys.
    expiries: OrdSet<(u64, Bytes)>,
    /// `(scan_hash(key), key)`: the order `SCAN` walks, so a cursor is a plain number that stays
    /// valid while keys come and go (see `keys::scan`).
    scan_order: OrdSet<(u64, Bytes)>,
}

/// Serialized as the map of entries; loading inserts each entry once, straight into the
/// entries and both indexes (going through an `OrdMap` first built every map twice, a
/// second of a million-key restart).
impl<'de> Deserialize<'de> for Db {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Db, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Db;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of keys to entries")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Db, A::Error> {
                let mut db = Db::default();
                while let Some((key, entry)) = map.next_entry::<Bytes, Entry>()? {
                    db.insert(key, entry);
                }
                Ok(db)
            }
        }
        d.deserialize_map(Entries)
    }
}

impl From<Db> for OrdMap<Bytes, Entry> {
    fn from(db: Db) -> Self {
        db.entries
    }
}

/// FNV-1a (64-bit): fixed and seedless, so every node and every version of this code hashes
/// alike. Replicated decisions depend on it (`SCAN` order, WATCH buckets).
pub(crate) fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The order `SCAN` walks: a cursor from one node resumes on another.
pub(crate) fn scan_hash(key: &[u8]) -> u64 {
    fnv1a(key.iter().copied())
}

impl Db {
    pub(crate) fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.entries.get(key)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn expiring(&self) -> usize {
        self.expiries.len()
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = (&Bytes, &Entry)> {
        self.entries.iter()
    }

    /// Inserts or replaces, keeping both indexes in step.
    pub(crate) fn insert(&mut self, key: Bytes, entry: Entry) {
        let old_deadline = self.entries.get(&key).map(|old| old.expire_at_ms);
        match old_deadline {
            Some(old) => {
                if let Some(at) = old {
                    self.expiries.remove(&(at, key.clone()));
                }
            }
            None => {
                self.scan_order.insert((scan_hash(&key), key.clone()));
            }
        }
        if let Some(at) = entry.expire_at_ms {
            self.expiries.insert((at, key.clone()));
        }
        self.entries.insert(key, entry);
    }

    /// Removes a key with its index entries; returns the stored key and entry.
    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<(Bytes, Entry)> {
        let (key, entry) = self.entries.remove_with_key(key)?;
        if let Some(at) = entry.expire_at_ms {
            self.expiries.remove(&(at, key.clone()));
        }
        self.scan_order.remove(&(scan_hash(&key), key.clone()));
        Some((key, entry))
    }

    /// The value and version of an entry, for in-place updates that keep its deadline (the
    /// deadline is indexed, so it only changes through `set_deadline`).
    pub(crate) fn value_mut(&mut self, key: &[u8]) -> Option<(&mut Value, &mut u64)> {
        self.entries.get_mut(key).map(|e| (&mut e.value, &mut e.version))
    }

    /// Changes a live key's deadline; false if the key does not exist.
    pub(crate) fn set_deadline(&mut self, key: &[u8], deadline: Option<u64>, version: u64) -> bool {
        let Some((key, mut entry)) = self.entries.remove_with_key(key) else {
            return false;
        };
        if let Some(at) = entry.expire_at_ms {
            self.expiries.remove(&(at, key.clone()));
        }
        if let Some(at) = deadline {
            self.expiries.insert((at, key.clone()));
        }
        entry.expire_at_ms = deadline;
        entry.version = version;
        self.entries.insert(key, entry);
        true
    }

    /// Keys whose deadline is `<= now`, earliest first.
    pub(crate) fn due(&self, now: u64) -> Vec<Bytes> {
        self.expiries.iter().take_while(|(at, _)| *at <= now).map(|(_, key)| key.clone()).collect()
    }

    pub(crate) fn due_count(&self, now: u64) -> usize {
        self.expiries.iter().take_while(|(at, _)| *at <= now).count()
    }

    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.expiries.get_min().map(|(at, _)| *at)
    }

    /// Up to `count` hash groups of keys from hash `from` on, and the hash to resume at (none
    /// when the walk is complete). Keys sharing a hash are always returned together so a
    /// cursor never splits them.
    pub(crate) fn scan_from(&self, from: u64, count: usize) -> (Vec<&Bytes>, Option<u64>) {
        let mut keys = Vec::new();
        let mut groups = 0;
        let mut last = None;
        for (hash, key) in self.scan_order.range((from, Bytes::new())..) {
            if last != Some(*hash) {
                if groups == count {
                    return (keys, Some(*hash));
                }
                groups += 1;
                last = Some(*hash);
            }
            keys.push(key);
        }
        (keys, None)
    }

    /// Every key in byte order; for `KEYS` and flushes.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &Bytes> {
        self.entries.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::fnv1a;

    /// Replicas and versions must agree on every hash: pinned to FNV-1a's published vectors.
    #[test]
    fn fnv1a_is_the_standard_64_bit_hash() {
        assert_eq!(fnv1a(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(*b"abc"), 0xe71f_a219_0541_574b);
    }
}
