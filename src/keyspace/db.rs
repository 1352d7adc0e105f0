//! One numbered database: the entries, in one map ordered by `(scan_hash(key), key)`, plus the
//! index of deadlines kept in step with them.
//!
//! Both are `imbl` persistent maps, so cloning a `Db` (for a Raft snapshot, or to publish the
//! applied state) is O(1) and the clone shares structure with the live state. The deadline
//! index is derived data: only the entries are serialized, and it is rebuilt on load.
//!
//! Why hash order: `SCAN` walks keys by hash so that a cursor is a plain number that stays
//! valid while keys come and go (see `keys::scan`). Keeping the entries themselves in that
//! order makes the walk a range of the one map, and `KEYS` lists keys in hash order, as Redis
//! lists them in its hash table's order. Lookups hash the key first (FNV-1a).
//!
//! Why the map is keyed by the hash alone, with each key's bytes and entry in one
//! reference-counted `Record`: every write after a publish copies the B-tree path to its key
//! (the published state keeps the old one), and copying a node bumps the count of everything
//! it holds. With the key and the entry as separate handles, a leaf copy touched 32 counts in
//! 32 other allocations and a lookup read a key allocation at every comparison; with a plain
//! number as the map's key and one record per slot, a leaf copy touches 16 and a lookup reads
//! one record, at the end. Loading a million frontends spent about a third of its CPU in those
//! copies and the frees of the nodes they replaced (docs/benchmarks.md). Keys whose hashes
//! collide share a slot, ordered by key.

use std::cmp::Ordering;
use std::fmt;
use std::ops::Bound;

use bytes::Bytes;
use imbl::{OrdMap, OrdSet};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use triomphe::{Arc, ThinArc};

use super::list::List;
use super::store::Entry;
use super::value::Value;

/// One key and its entry in one allocation, behind a thin pointer (the key's length lives in
/// the allocation): a map slot is the hash and a `Slot` holding this, 24 bytes in all.
#[derive(Clone)]
struct Record(ThinArc<Entry, u8>);

impl Record {
    fn new(key: &[u8], entry: Entry) -> Record {
        Record(ThinArc::from_header_and_slice(entry, key))
    }

    fn key(&self) -> &[u8] {
        &self.0.slice
    }

    fn entry(&self) -> &Entry {
        &self.0.header.header
    }

    /// Runs `f` on the entry: in place when no other state (a published one) shares this
    /// record, else on a copy that then replaces it here.
    fn update<R>(&mut self, f: impl FnOnce(&mut Entry) -> R) -> R {
        self.0.with_arc_mut(|arc| match Arc::get_mut(arc) {
            Some(record) => f(record.header_mut()),
            None => {
                let mut entry = arc.header().clone();
                let out = f(&mut entry);
                *arc = Arc::protected_from_thin(ThinArc::from_header_and_slice(entry, arc.slice()));
                out
            }
        })
    }

    /// The entry, moved out unless another state shares the record.
    fn into_entry(mut self) -> Entry {
        self.0.with_arc_mut(|arc| match Arc::get_mut(arc) {
            Some(record) => std::mem::replace(record.header_mut(), Entry::new(Value::List(List::new()), None, 0)),
            None => arc.header().clone(),
        })
    }
}

impl PartialEq for Record {
    fn eq(&self, other: &Record) -> bool {
        self.key() == other.key() && self.entry() == other.entry()
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Record").field(&Bytes::copy_from_slice(self.key())).field(self.entry()).finish()
    }
}

/// The keys of one hash: nearly always one.
#[derive(Clone, Debug, PartialEq)]
enum Slot {
    One(Record),
    /// Keys whose 64-bit hashes collide, ordered by key. Boxed, so a slot stays two words
    /// (a `Vec` is three, and a boxed slice two besides the tag).
    #[allow(clippy::box_collection)]
    Many(Box<Vec<Record>>),
}

impl Slot {
    fn records(&self) -> &[Record] {
        match self {
            Slot::One(record) => std::slice::from_ref(record),
            Slot::Many(records) => records,
        }
    }

    fn find(&self, key: &[u8]) -> Option<&Record> {
        self.records().iter().find(|r| r.key() == key)
    }

    fn find_mut(&mut self, key: &[u8]) -> Option<&mut Record> {
        match self {
            Slot::One(record) => Some(record).filter(|r| r.key() == key),
            Slot::Many(records) => records.iter_mut().find(|r| r.key() == key),
        }
    }

    /// Puts `record` in place of the record of the same key, or beside the others; returns
    /// the record it replaced.
    fn put(&mut self, record: Record) -> Option<Record> {
        if let Some(same) = self.find_mut(record.key()) {
            return Some(std::mem::replace(same, record));
        }
        let mut records = match std::mem::replace(self, Slot::Many(Box::default())) {
            Slot::One(one) => vec![one],
            Slot::Many(records) => *records,
        };
        let at = records.partition_point(|r| r.key() < record.key());
        records.insert(at, record);
        *self = Slot::Many(Box::new(records));
        None
    }

    /// Takes out the record of `key`; `Err(self)` back if it is not here. `Ok(None)` for the
    /// rest of the slot when no key is left in it.
    fn take(self, key: &[u8]) -> Result<(Record, Option<Slot>), Slot> {
        match self {
            Slot::One(record) if record.key() == key => Ok((record, None)),
            Slot::Many(mut records) => match records.iter().position(|r| r.key() == key) {
                Some(at) => {
                    let record = records.remove(at);
                    let rest = match records.len() {
                        1 => records.pop().map(Slot::One),
                        _ => Some(Slot::Many(records)),
                    };
                    Ok((record, rest))
                }
                None => Err(Slot::Many(records)),
            },
            one => Err(one),
        }
    }
}

/// A key in the deadline index: its hash, then its bytes (the order of the entries' map, so
/// the sweep removes keys of one deadline in the order `KEYS` lists them).
#[derive(Clone)]
struct Stored(ThinArc<u64, u8>);

impl Stored {
    fn new(key: &[u8]) -> Stored {
        Stored(ThinArc::from_header_and_slice(scan_hash(key), key))
    }

    fn key(&self) -> &[u8] {
        &self.0.slice
    }

    fn hash(&self) -> u64 {
        self.0.header.header
    }
}

impl PartialEq for Stored {
    fn eq(&self, other: &Stored) -> bool {
        self.cmp(other) == Ordering::Equal
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
        (self.hash(), self.key()).cmp(&(other.hash(), other.key()))
    }
}

impl fmt::Debug for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&Bytes::copy_from_slice(self.key()), f)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Db {
    /// Every key's record under its `scan_hash`.
    entries: OrdMap<u64, Slot>,
    /// Keys in `entries` (a slot may hold more than one).
    len: usize,
    /// `(deadline, key)` of every key with a TTL: the sweep and `next_deadline` read the
    /// front instead of scanning all keys.
    expiries: OrdSet<(u64, Stored)>,
}

/// Serialized as the map of keys to entries (the form every earlier version wrote).
impl Serialize for Db {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len))?;
        for (key, entry) in self.entries() {
            map.serialize_entry(&RawBytes(key), entry)?;
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

impl Db {
    pub(crate) fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.entries.get(&scan_hash(key))?.find(key).map(Record::entry)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn expiring(&self) -> usize {
        self.expiries.len()
    }

    /// Every key with its entry, in hash order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.entries.values().flat_map(Slot::records).map(|r| (r.key(), r.entry()))
    }

    /// Inserts or replaces, keeping the deadline index in step.
    pub(crate) fn insert(&mut self, key: &[u8], entry: Entry) {
        let hash = scan_hash(key);
        let deadline = entry.expire_at_ms();
        let record = Record::new(key, entry);
        let replaced = match self.entries.get_mut(&hash) {
            Some(slot) => slot.put(record),
            None => {
                self.entries.insert(hash, Slot::One(record));
                None
            }
        };
        let old_deadline = match replaced {
            Some(old) => old.entry().expire_at_ms(),
            None => {
                self.len += 1;
                None
            }
        };
        self.reindex(key, old_deadline, deadline);
    }

    /// Moves `key` in the deadline index from `old` to `new`.
    fn reindex(&mut self, key: &[u8], old: Option<u64>, new: Option<u64>) {
        if old == new {
            return;
        }
        let stored = Stored::new(key);
        if let Some(at) = old {
            self.expiries.remove(&(at, stored.clone()));
        }
        if let Some(at) = new {
            self.expiries.insert((at, stored));
        }
    }

    /// The record of `key`, to change it (copied first by `Record::update` if shared).
    fn record_mut(&mut self, key: &[u8]) -> Option<&mut Record> {
        self.entries.get_mut(&scan_hash(key))?.find_mut(key)
    }

    /// Removes a key with its index entry.
    fn remove_record(&mut self, key: &[u8]) -> Option<Record> {
        let hash = scan_hash(key);
        let slot = self.entries.remove(&hash)?;
        let record = match slot.take(key) {
            Ok((record, rest)) => {
                if let Some(rest) = rest {
                    self.entries.insert(hash, rest);
                }
                record
            }
            Err(slot) => {
                self.entries.insert(hash, slot);
                return None;
            }
        };
        self.len -= 1;
        self.reindex(key, record.entry().expire_at_ms(), None);
        Some(record)
    }

    /// Removes a key; true if it was there.
    pub(crate) fn remove(&mut self, key: &[u8]) -> bool {
        self.remove_record(key).is_some()
    }

    /// Removes a key and returns its entry.
    pub(crate) fn take(&mut self, key: &[u8]) -> Option<Entry> {
        self.remove_record(key).map(Record::into_entry)
    }

    /// Runs `f` on the value and version of an entry, for in-place updates that keep its
    /// deadline (the deadline is indexed, so it only changes through `set_deadline`). `f`
    /// comes back unrun if the key does not exist.
    pub(crate) fn update<F, R>(&mut self, key: &[u8], f: F) -> Result<R, F>
    where
        F: FnOnce(&mut Value, &mut u64) -> R,
    {
        match self.record_mut(key) {
            Some(record) => Ok(record.update(|entry| f(&mut entry.value, &mut entry.version))),
            None => Err(f),
        }
    }

    /// Changes a live key's deadline; false if the key does not exist.
    pub(crate) fn set_deadline(&mut self, key: &[u8], deadline: Option<u64>, version: u64) -> bool {
        let Some(record) = self.record_mut(key) else {
            return false;
        };
        let old = record.update(|entry| {
            let old = entry.expire_at_ms();
            entry.set_expire_at_ms(deadline);
            entry.version = version;
            old
        });
        self.reindex(key, old, deadline);
        true
    }

    /// Keys whose deadline is `<= now`, earliest first.
    pub(crate) fn due(&self, now: u64) -> Vec<Bytes> {
        self.expiries.iter().take_while(|(at, _)| *at <= now).map(|(_, s)| Bytes::copy_from_slice(s.key())).collect()
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
        let mut keys = Vec::new();
        for (groups, (hash, slot)) in self.entries.range((Bound::Included(from), Bound::Unbounded)).enumerate() {
            if groups == count {
                return (keys, Some(*hash));
            }
            keys.extend(slot.records().iter().map(Record::key));
        }
        (keys, None)
    }

    /// Every key, in hash order; for `KEYS` and flushes.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.entries().map(|(key, _)| key)
    }
}

#[cfg(test)]
mod tests {
    use super::{fnv1a, Db, Record, Slot};
    use crate::keyspace::store::Entry;
    use crate::keyspace::value::Value;
    use bytes::Bytes;

    /// A damaged snapshot may declare any number of entries: loading it is an error, and
    /// allocates nothing by that number (the fuzzer's `raft_data` target found the loader
    /// reserving room for 2^40 of them).
    #[test]
    fn a_declared_length_far_beyond_the_data_is_an_error_not_an_allocation() {
        let bogus = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0x01, 0x61];
        assert!(postcard::from_bytes::<Db>(&bogus).is_err());
    }

    fn record(key: &str, version: u64) -> Record {
        Record::new(key.as_bytes(), Entry::new(Value::Str(Box::new(Bytes::from_static(b"v"))), None, version))
    }

    fn keys(slot: &Slot) -> Vec<&[u8]> {
        slot.records().iter().map(Record::key).collect()
    }

    /// Keys whose hashes collide share a slot (64-bit FNV-1a collisions exist, but no short
    /// pair is known to be found quickly, so the slot is exercised directly): kept in key
    /// order, replaced in place, taken out down to one and to none.
    #[test]
    fn keys_sharing_a_hash_share_a_slot_in_key_order() {
        let mut slot = Slot::One(record("m", 1));
        assert!(slot.put(record("z", 2)).is_none());
        assert!(slot.put(record("a", 3)).is_none());
        assert_eq!(keys(&slot), [b"a", b"m", b"z"]);
        let replaced = slot.put(record("m", 4)).expect("same key replaced");
        assert_eq!(replaced.entry().version, 1);
        assert_eq!(slot.find(b"m").map(|r| r.entry().version), Some(4));
        assert!(slot.find(b"q").is_none());
        let slot = slot.take(b"q").expect_err("not in the slot");
        let (taken, rest) = slot.take(b"m").expect("in the slot");
        assert_eq!(taken.key(), b"m");
        let (_, rest) = rest.expect("two left").take(b"a").expect("in the slot");
        let rest = rest.expect("one left");
        assert!(matches!(rest, Slot::One(_)), "back to a single record: {rest:?}");
        let (last, rest) = rest.take(b"z").expect("in the slot");
        assert_eq!((last.key(), rest), (&b"z"[..], None));
    }

    /// A record a published state shares is copied before it changes: the published one
    /// keeps its entry. One nobody shares changes in place.
    #[test]
    fn a_shared_record_is_copied_before_it_changes() {
        let mut db = Db::default();
        db.insert(b"k", Entry::new(Value::Str(Box::new(Bytes::from_static(b"old"))), None, 1));
        let published = db.clone();
        db.update(b"k", |value, version| {
            *value = Value::Str(Box::new(Bytes::from_static(b"new")));
            *version = 2;
        })
        .unwrap_or_else(|_| panic!("the key exists"));
        assert_eq!(published.get(b"k").map(|e| e.version), Some(1));
        assert_eq!(db.get(b"k").map(|e| e.version), Some(2));
        assert!(db.set_deadline(b"k", Some(50), 3));
        assert_eq!((published.next_deadline(), db.next_deadline()), (None, Some(50)));
        drop(published);
        assert_eq!(db.take(b"k").map(|e| (e.version, e.expire_at_ms())), Some((3, Some(50))));
        assert_eq!((db.len(), db.next_deadline()), (0, None), "gone with its deadline");
        assert!(db.update(b"k", |_, _| ()).is_err(), "a missing key's update is handed back");
    }

    /// A map slot is a hash and a record handle: 16 of them, a B-tree leaf, fit the
    /// allocator's 448-byte class.
    #[test]
    fn a_map_slot_is_24_bytes() {
        assert_eq!(std::mem::size_of::<(u64, Slot)>(), 24);
    }

    /// Replicas and versions must agree on every hash: pinned to FNV-1a's published vectors.
    #[test]
    fn fnv1a_is_the_standard_64_bit_hash() {
        assert_eq!(fnv1a(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(*b"abc"), 0xe71f_a219_0541_574b);
    }
}
