//! One numbered database: the entries, in one map ordered by `(scan_hash(key), key)`, plus the
//! index of deadlines kept in step with them.
//!
//! Both are `imbl` persistent maps, so cloning a `Db` (for a Raft snapshot, or to publish the
//! applied state) is O(1) and the clone shares structure with the live state. The deadline
//! index is derived data: only the entries are serialized, and it is rebuilt on load.
//!
//! Why hash order: `SCAN` walks keys by hash so that a cursor is a plain number that stays
//! valid while keys come and go (see `keys::scan`). Keeping the entries themselves in that
//! order, under a stored key that starts with the hash, makes the walk a range of the one map;
//! a second index in hash order cost a map slot and a key handle per key (about 100 bytes per
//! key at a million frontends). Lookups hash the key first (FNV-1a over a short key), and
//! `KEYS` lists keys in hash order, as Redis lists them in its hash table's order.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::ops::Bound;

use bytes::Bytes;
use imbl::{OrdMap, OrdSet};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use triomphe::ThinArc;

use super::store::Entry;
use super::value::Value;

/// A key as stored: `scan_hash(key)` big-endian, then the key's bytes. Reference-counted, so
/// the path copies of a persistent map clone it without copying it, through a thin pointer
/// (the length lives in the allocation, beside the count): a map slot is then 48 bytes, not
/// 56, and a B-tree leaf of 16 slots fits the allocator's 896-byte class instead of 1 KiB,
/// about 11 bytes per key (`std`'s `Arc<[u8]>` is a pointer and a length).
#[derive(Clone)]
struct Stored(ThinArc<(), u8>);

impl Stored {
    fn new(bytes: &[u8]) -> Stored {
        Stored(ThinArc::from_header_and_slice((), bytes))
    }
}

impl std::ops::Deref for Stored {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0.slice
    }
}

/// Lookups take the stored form as a plain slice (`with_stored` builds it on the stack), so
/// `Stored` orders and compares exactly as its bytes do.
impl Borrow<[u8]> for Stored {
    fn borrow(&self) -> &[u8] {
        self
    }
}

impl PartialEq for Stored {
    fn eq(&self, other: &Stored) -> bool {
        **self == **other
    }
}

impl Eq for Stored {}

impl PartialOrd for Stored {
    fn partial_cmp(&self, other: &Stored) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Stored {
    fn cmp(&self, other: &Stored) -> Ordering {
        (**self).cmp(&**other)
    }
}

impl fmt::Debug for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&Bytes::copy_from_slice(self), f)
    }
}

const HASH_LEN: usize = 8;

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Db {
    entries: OrdMap<Stored, Entry>,
    /// `(deadline, stored key)` of every key with a TTL: the sweep and `next_deadline` read the
    /// front instead of scanning all keys.
    expiries: OrdSet<(u64, Stored)>,
}

/// Serialized as the map of keys to entries (the form every earlier version wrote).
impl Serialize for Db {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.entries.len()))?;
        for (stored, entry) in &self.entries {
            map.serialize_entry(&RawBytes(user_key(stored)), entry)?;
        }
        map.end()
    }
}

/// A slice serialized as `Bytes` serializes: a byte string (a plain `&[u8]` is a sequence of
/// numbers to serde). Keys and packed list elements are written this way.
pub(crate) struct RawBytes<'a>(pub(crate) &'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Loading inserts each entry once, straight into the map and the deadline index.
///
/// A snapshot lists the entries in the map's own order, and a B-tree filled in order splits
/// each full leaf in two halves that never grow again: every leaf would stay half empty (the
/// map's slots are most of a key's memory). So every other entry is inserted as it comes, the
/// rest after: each half-full leaf then takes the entries between its own, and ends full.
/// (`imbl` splits a leaf at its middle; were that to change, the map would only be less dense.)
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
                // The declared length is untrusted (a damaged file): a hint, capped.
                let mut second = Vec::with_capacity((map.size_hint().unwrap_or(0) / 2).min(4096));
                while let Some((key, entry)) = map.next_entry::<Bytes, Entry>()? {
                    if db.len() > second.len() {
                        second.push((key, entry));
                    } else {
                        db.insert(&key, entry);
                    }
                }
                for (key, entry) in second {
                    db.insert(&key, entry);
                }
                Ok(db)
            }
        }
        d.deserialize_map(Entries)
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

fn stored(key: &[u8]) -> Stored {
    with_stored(key, Stored::new)
}

/// Runs `f` on the stored form of `key`, built on the stack for keys of ordinary length:
/// every lookup makes one.
fn with_stored<R>(key: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    const STACK: usize = 256;
    let hash = scan_hash(key).to_be_bytes();
    if key.len() + HASH_LEN > STACK {
        return f(&[&hash[..], key].concat());
    }
    let mut buf = [0u8; STACK];
    buf[..HASH_LEN].copy_from_slice(&hash);
    buf[HASH_LEN..HASH_LEN + key.len()].copy_from_slice(key);
    f(&buf[..HASH_LEN + key.len()])
}

fn user_key(stored: &[u8]) -> &[u8] {
    &stored[HASH_LEN..]
}

fn hash_of(stored: &[u8]) -> u64 {
    let mut hash = [0u8; HASH_LEN];
    hash.copy_from_slice(&stored[..HASH_LEN]);
    u64::from_be_bytes(hash)
}

impl Db {
    pub(crate) fn get(&self, key: &[u8]) -> Option<&Entry> {
        with_stored(key, |s| self.entries.get(s))
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn expiring(&self) -> usize {
        self.expiries.len()
    }

    /// Every key with its entry, in hash order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.entries.iter().map(|(k, e)| (user_key(k), e))
    }

    /// Inserts or replaces, keeping the deadline index in step.
    pub(crate) fn insert(&mut self, key: &[u8], entry: Entry) {
        let (stored, old_deadline) = match with_stored(key, |s| self.entries.get_key_value(s)) {
            Some((stored, old)) => (stored.clone(), old.expire_at_ms()),
            None => (stored(key), None),
        };
        if let Some(at) = old_deadline {
            self.expiries.remove(&(at, stored.clone()));
        }
        if let Some(at) = entry.expire_at_ms() {
            self.expiries.insert((at, stored.clone()));
        }
        self.entries.insert(stored, entry);
    }

    /// Removes a key with its index entry; returns the key and the entry.
    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<(Bytes, Entry)> {
        let (stored, entry) = with_stored(key, |s| self.entries.remove_with_key(s))?;
        if let Some(at) = entry.expire_at_ms() {
            self.expiries.remove(&(at, stored.clone()));
        }
        Some((Bytes::copy_from_slice(user_key(&stored)), entry))
    }

    /// The value and version of an entry, for in-place updates that keep its deadline (the
    /// deadline is indexed, so it only changes through `set_deadline`).
    pub(crate) fn value_mut(&mut self, key: &[u8]) -> Option<(&mut Value, &mut u64)> {
        with_stored(key, |s| self.entries.get_mut(s)).map(|e| (&mut e.value, &mut e.version))
    }

    /// Changes a live key's deadline; false if the key does not exist.
    pub(crate) fn set_deadline(&mut self, key: &[u8], deadline: Option<u64>, version: u64) -> bool {
        let Some((stored, mut entry)) = with_stored(key, |s| self.entries.remove_with_key(s)) else {
            return false;
        };
        if let Some(at) = entry.expire_at_ms() {
            self.expiries.remove(&(at, stored.clone()));
        }
        if let Some(at) = deadline {
            self.expiries.insert((at, stored.clone()));
        }
        entry.set_expire_at_ms(deadline);
        entry.version = version;
        self.entries.insert(stored, entry);
        true
    }

    /// Keys whose deadline is `<= now`, earliest first.
    pub(crate) fn due(&self, now: u64) -> Vec<Bytes> {
        self.expiries
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, s)| Bytes::copy_from_slice(user_key(s)))
            .collect()
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
    pub(crate) fn scan_from(&self, from: u64, count: usize) -> (Vec<&[u8]>, Option<u64>) {
        let start = from.to_be_bytes();
        let mut keys = Vec::new();
        let mut groups = 0;
        let mut last = None;
        for (stored, _) in self.entries.range::<_, [u8]>((Bound::Included(&start[..]), Bound::Unbounded)) {
            let hash = hash_of(stored);
            if last != Some(hash) {
                if groups == count {
                    return (keys, Some(hash));
                }
                groups += 1;
                last = Some(hash);
            }
            keys.push(user_key(stored));
        }
        (keys, None)
    }

    /// Every key, in hash order; for `KEYS` and flushes.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.entries.keys().map(|k| user_key(k))
    }
}

#[cfg(test)]
mod tests {
    use super::{fnv1a, Db};

    /// A damaged snapshot may declare any number of entries: loading it is an error, and
    /// allocates nothing by that number (the fuzzer's `raft_data` target found the loader
    /// reserving room for 2^40 of them).
    #[test]
    fn a_declared_length_far_beyond_the_data_is_an_error_not_an_allocation() {
        let bogus = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0x01, 0x61];
        assert!(postcard::from_bytes::<Db>(&bogus).is_err());
    }

    /// Keys too long for the stack buffer take the heap path of `with_stored`: stored,
    /// found, listed and removed like short ones.
    #[test]
    fn keys_longer_than_the_stack_buffer_are_stored_and_found() {
        use crate::keyspace::store::Entry;
        use crate::keyspace::value::Value;
        let long = vec![b'k'; 300];
        let mut db = Db::default();
        for key in [&long[..], b"short"] {
            db.insert(key, Entry::new(Value::Str(Box::new(bytes::Bytes::from_static(b"v"))), None, 1));
        }
        assert!(db.get(&long).is_some() && db.get(b"short").is_some());
        assert!(db.get(&long[..299]).is_none());
        assert!(db.keys().any(|k| k == &long[..]));
        assert_eq!(db.remove(&long).map(|(k, _)| k.len()), Some(300));
        assert!(db.get(&long).is_none() && db.len() == 1);
    }

    /// Replicas and versions must agree on every hash: pinned to FNV-1a's published vectors.
    #[test]
    fn fnv1a_is_the_standard_64_bit_hash() {
        assert_eq!(fnv1a(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(*b"abc"), 0xe71f_a219_0541_574b);
    }
}
