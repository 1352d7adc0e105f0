//! A list value, stored the way Redis stores lists: packed into one buffer while small (its
//! "listpack"), a persistent vector once large.
//!
//! Why: Hipache's routing data is a million small lists (`frontend:<host>`: an identifier and a
//! few backend URLs). As a persistent vector each cost over 2 KB (imbl allocates a whole
//! 64-slot chunk for the first elements) and each element its own allocation; packed, a list
//! is one allocation of its bytes plus one length byte per element: an `Arc<[u8]>`, whose
//! count lives in the same allocation (a shared `Bytes` adds a 32-byte header of its own), and
//! which the keyspace's path copies clone with one count increment. Reads borrow slices of it
//! (`slices`); an element handed out as `Bytes` is a copy, as Redis copies replies. Mutating a packed list
//! rebuilds its buffer, O(its size), which the size limits bound; a list that outgrows them
//! becomes a persistent vector (O(log n) pushes and pops, O(1) clones for snapshots), as the
//! benchmark's 100,000 RPUSH to one list needs.
//!
//! The form is not state: equality, `Debug` and serialization see only the elements, so
//! replicas that hold one list in different forms are equal and snapshots keep the format of
//! the earlier `Vector<Bytes>` (a sequence of byte strings).

use std::fmt;
use std::sync::Arc;

use bytes::{BufMut, Bytes};
use imbl::Vector;
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::db::RawBytes;

/// Like Redis's `list-max-listpack-size -2` (8 KB) with a cap on the element count, since
/// reaching one element of a packed list walks the ones before it.
const PACKED_MAX_BYTES: usize = 8 * 1024;
const PACKED_MAX_LEN: usize = 128;

#[derive(Clone)]
pub enum List {
    /// Elements as `varint(len) bytes`, one after the other; `len` elements.
    Packed { buf: Arc<[u8]>, len: u32 },
    /// Boxed: the vector's inline part is 64 bytes, and most lists are packed.
    Tree(Box<Vector<Bytes>>),
}

/// Which end of the list a push or pop works at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Head,
    Tail,
}

impl Default for List {
    fn default() -> List {
        List::new()
    }
}

impl List {
    pub fn new() -> List {
        List::Packed { buf: Arc::from(&[][..]), len: 0 }
    }

    pub fn len(&self) -> usize {
        match self {
            List::Packed { len, .. } => *len as usize,
            List::Tree(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements, front to back, borrowed.
    pub fn slices(&self) -> Slices<'_> {
        match self {
            List::Packed { buf, .. } => Slices::Packed { buf, at: 0 },
            List::Tree(v) => Slices::Tree(v.iter()),
        }
    }

    /// The elements, front to back, as values of their own.
    pub fn iter(&self) -> impl Iterator<Item = Bytes> + '_ {
        let (packed, tree) = match self {
            List::Packed { .. } => (Some(self.slices().map(Bytes::copy_from_slice)), None),
            List::Tree(v) => (None, Some(v.iter().cloned())),
        };
        packed.into_iter().flatten().chain(tree.into_iter().flatten())
    }

    pub fn get_slice(&self, index: usize) -> Option<&[u8]> {
        self.slices().nth(index)
    }

    pub fn get(&self, index: usize) -> Option<Bytes> {
        match self {
            List::Packed { .. } => self.get_slice(index).map(Bytes::copy_from_slice),
            List::Tree(v) => v.get(index).cloned(),
        }
    }

    pub fn push(&mut self, end: End, item: Bytes) {
        self.push_all(end, std::slice::from_ref(&item));
    }

    /// Pushes `items` one after the other, as `RPUSH`/`LPUSH` with several values do (so at
    /// the head they end up in reverse order). A packed list gets one new buffer: its bytes and
    /// the new elements', copied once.
    pub fn push_all(&mut self, end: End, items: &[Bytes]) {
        match self {
            List::Tree(v) => {
                for item in items {
                    match end {
                        End::Head => v.push_front(item.clone()),
                        End::Tail => v.push_back(item.clone()),
                    }
                }
            }
            List::Packed { buf, len } => {
                let new_len = *len as usize + items.len();
                let size = buf.len() + packed_size(items.iter());
                if !fits_packed(new_len, size) {
                    *self = List::Tree(Box::new(self.iter().collect()));
                    return self.push_all(end, items);
                }
                let mut out = Vec::with_capacity(size);
                if end == End::Tail {
                    out.put_slice(buf);
                }
                let mut put = |item: &Bytes| {
                    put_varint(&mut out, item.len());
                    out.put_slice(item);
                };
                match end {
                    End::Head => items.iter().rev().for_each(&mut put),
                    End::Tail => items.iter().for_each(&mut put),
                }
                if end == End::Head {
                    out.put_slice(buf);
                }
                *self = List::Packed { buf: out.into(), len: new_len as u32 };
            }
        }
    }

    pub fn pop(&mut self, end: End) -> Option<Bytes> {
        match self {
            List::Tree(v) => match end {
                End::Head => v.pop_front(),
                End::Tail => v.pop_back(),
            },
            List::Packed { .. } if self.is_empty() => None,
            List::Packed { .. } => {
                let mut popped = None;
                self.repack(|items| {
                    popped = match end {
                        End::Head => Some(items.remove(0)),
                        End::Tail => items.pop(),
                    }
                });
                popped
            }
        }
    }

    /// Replaces the element at `index` (which must be in range).
    pub fn set(&mut self, index: usize, item: Bytes) {
        match self {
            List::Tree(v) => {
                v.set(index, item);
            }
            List::Packed { .. } => self.repack(|items| items[index] = item),
        }
    }

    /// Inserts before the element at `index` (`len()` appends).
    pub fn insert(&mut self, index: usize, item: Bytes) {
        match self {
            List::Tree(v) => v.insert(index, item),
            List::Packed { .. } => self.repack(|items| items.insert(index, item)),
        }
    }

    /// The elements `from..=to` (both in range) as a list of its own.
    pub fn slice(&self, from: usize, to: usize) -> List {
        match self {
            List::Tree(v) => List::from_vector(v.clone().slice(from..=to)),
            List::Packed { .. } => self.iter().skip(from).take(to + 1 - from).collect(),
        }
    }

    /// A packed list as elements, changed, packed again (or grown into a vector).
    fn repack(&mut self, change: impl FnOnce(&mut Vec<Bytes>)) {
        let mut items: Vec<Bytes> = self.iter().collect();
        change(&mut items);
        *self = items.into_iter().collect();
    }

    fn from_vector(v: Vector<Bytes>) -> List {
        if fits_packed(v.len(), packed_size(v.iter())) {
            v.iter().cloned().collect()
        } else {
            List::Tree(Box::new(v))
        }
    }
}

/// Whether `len` elements taking `packed_size` bytes packed stay packed.
fn fits_packed(len: usize, packed_size: usize) -> bool {
    len <= PACKED_MAX_LEN && packed_size <= PACKED_MAX_BYTES
}

fn packed_size<'a>(items: impl Iterator<Item = &'a Bytes>) -> usize {
    items.map(|i| i.len() + varint_len(i.len())).sum()
}

fn varint_len(mut n: usize) -> usize {
    let mut bytes = 1;
    while n >= 0x80 {
        n >>= 7;
        bytes += 1;
    }
    bytes
}

/// LEB128, as postcard and protobuf write lengths.
fn put_varint(buf: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        buf.put_u8((n as u8) | 0x80);
        n >>= 7;
    }
    buf.put_u8(n as u8);
}

/// Reads a length written by `put_varint` at `buf[*at..]`, moving `at` past it. Only this
/// module writes packed buffers, so they are well formed.
fn take_varint(buf: &[u8], at: &mut usize) -> usize {
    let mut n = 0usize;
    let mut shift = 0;
    loop {
        let b = buf[*at];
        *at += 1;
        n |= usize::from(b & 0x7f) << shift;
        if b < 0x80 {
            return n;
        }
        shift += 7;
    }
}

impl FromIterator<Bytes> for List {
    fn from_iter<I: IntoIterator<Item = Bytes>>(items: I) -> List {
        let items: Vec<Bytes> = items.into_iter().collect();
        let size = packed_size(items.iter());
        if !fits_packed(items.len(), size) {
            return List::Tree(Box::new(items.into_iter().collect()));
        }
        let mut buf = Vec::with_capacity(size);
        for item in &items {
            put_varint(&mut buf, item.len());
            buf.put_slice(item);
        }
        List::Packed { buf: buf.into(), len: items.len() as u32 }
    }
}

pub enum Slices<'a> {
    Packed { buf: &'a [u8], at: usize },
    Tree(imbl::vector::Iter<'a, Bytes, imbl::shared_ptr::DefaultSharedPtr>),
}

impl<'a> Iterator for Slices<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        match self {
            Slices::Packed { buf, at } => {
                if *at >= buf.len() {
                    return None;
                }
                let len = take_varint(buf, at);
                let item = &buf[*at..*at + len];
                *at += len;
                Some(item)
            }
            Slices::Tree(it) => it.next().map(|b| &b[..]),
        }
    }
}

impl PartialEq for List {
    fn eq(&self, other: &List) -> bool {
        self.len() == other.len() && self.slices().eq(other.slices())
    }
}

impl fmt::Debug for List {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.slices().map(Bytes::copy_from_slice)).finish()
    }
}

impl Serialize for List {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for item in self.slices() {
            seq.serialize_element(&RawBytes(item))?;
        }
        seq.end()
    }
}

/// Elements are copied from the input straight into the packed buffer: a million-list snapshot
/// loads without an allocation per element.
impl<'de> Deserialize<'de> for List {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<List, D::Error> {
        struct Elements;
        impl<'de> Visitor<'de> for Elements {
            type Value = List;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence of byte strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List, A::Error> {
                let mut buf = Vec::new();
                let mut len = 0usize;
                while seq.next_element_seed(PackInto(&mut buf))?.is_some() {
                    len += 1;
                }
                let fits = fits_packed(len, buf.len());
                let packed = List::Packed { buf: buf.into(), len: len as u32 };
                Ok(if fits { packed } else { List::Tree(Box::new(packed.iter().collect())) })
            }
        }
        d.deserialize_seq(Elements)
    }
}

/// Deserializes one byte string by appending it, length first, to a packed buffer.
struct PackInto<'a>(&'a mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for PackInto<'_> {
    type Value = ();

    /// `byte_buf`, not `bytes`: the element is copied out at once, so a streaming decoder
    /// (postcard's `from_io`, a snapshot loaded at start-up) reuses one scratch buffer for
    /// every element instead of keeping each one borrowed.
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_byte_buf(self)
    }
}

impl<'de> Visitor<'de> for PackInto<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: serde::de::Error>(self, item: &[u8]) -> Result<(), E> {
        put_varint(self.0, item.len());
        self.0.put_slice(item);
        Ok(())
    }

    /// Self-describing formats (JSON) hand byte strings over as sequences of numbers.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut item = Vec::new();
        while let Some(b) = seq.next_element::<u8>()? {
            item.push(b);
        }
        self.visit_bytes(&item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(n: usize, size: usize) -> List {
        (0..n).map(|i| Bytes::from(format!("{i:0size$}"))).collect()
    }

    fn items(l: &List) -> Vec<Bytes> {
        l.iter().collect()
    }

    #[test]
    fn small_lists_are_packed_and_large_ones_are_vectors() {
        assert!(matches!(list(3, 20), List::Packed { len: 3, .. }));
        assert!(matches!(list(PACKED_MAX_LEN + 1, 1), List::Tree(_)));
        assert!(matches!(list(2, PACKED_MAX_BYTES), List::Tree(_)), "one element over the byte limit");
        let mut growing = list(PACKED_MAX_LEN, 1);
        assert!(matches!(growing, List::Packed { .. }));
        growing.push(End::Tail, Bytes::from("x"));
        assert!(matches!(growing, List::Tree(_)), "a push past the limit converts");
        assert_eq!(growing.len(), PACKED_MAX_LEN + 1);
    }

    /// Both forms answer every operation alike: a reference `Vec` and a list in each form get
    /// the same random operations (element lengths around the varint's 127/128 boundary).
    #[test]
    fn both_forms_behave_like_a_vec() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut model: Vec<Bytes> = Vec::new();
        let mut packed = List::new();
        let mut tree = List::Tree(Box::default());
        for step in 0..20_000 {
            let item = Bytes::from(vec![b'a' + (step % 26) as u8; 120 + next(16)]);
            let (op, len) = (next(7), model.len());
            for l in [&mut packed, &mut tree] {
                match op {
                    0 | 1 => l.push(if op == 0 { End::Head } else { End::Tail }, item.clone()),
                    2 => assert_eq!(l.pop(End::Head), model.first().cloned()),
                    3 => assert_eq!(l.pop(End::Tail), model.last().cloned()),
                    4 if len > 0 => l.set(step % len, item.clone()),
                    5 => l.insert(step % (len + 1), item.clone()),
                    6 if len > 0 => *l = l.slice(step % len, len - 1),
                    _ => {}
                }
            }
            match op {
                0 => model.insert(0, item),
                1 => model.push(item),
                2 if len > 0 => drop(model.remove(0)),
                3 => drop(model.pop()),
                4 if len > 0 => model[step % len] = item,
                5 => model.insert(step % (len + 1), item),
                6 if len > 0 => drop(model.drain(..step % len)),
                _ => {}
            }
            assert_eq!(items(&packed), model, "step {step}");
            assert_eq!(items(&tree), model, "step {step}");
            assert_eq!(packed, tree);
            if let Some(i) = model.len().checked_sub(1) {
                assert_eq!(packed.get(i), model.last().cloned());
            }
        }
    }

    /// Several values pushed at once land as if pushed one by one (LPUSH a b c: c b a ...), in
    /// both forms and across the packed limit.
    #[test]
    fn pushing_several_is_pushing_each() {
        let values: Vec<Bytes> = (0..50).map(|i| Bytes::from(format!("item{i}"))).collect();
        for start in [list(3, 5), list(100, 5), List::Tree(Box::default())] {
            for end in [End::Head, End::Tail] {
                let (mut at_once, mut each) = (start.clone(), start.clone());
                at_once.push_all(end, &values);
                values.iter().for_each(|v| each.push(end, v.clone()));
                assert_eq!(items(&at_once), items(&each), "{end:?} onto {} elements", start.len());
            }
        }
    }

    /// Snapshots written with `Vector<Bytes>` load, and lists serialize as they did.
    #[test]
    fn serialized_as_the_vector_was() {
        let elements: Vector<Bytes> = ["app", "http://127.0.0.1:80"].into_iter().map(Bytes::from).collect();
        let bytes = postcard::to_allocvec(&elements).unwrap();
        let loaded: List = postcard::from_bytes(&bytes).unwrap();
        assert!(matches!(loaded, List::Packed { len: 2, .. }));
        assert_eq!(postcard::to_allocvec(&loaded).unwrap(), bytes);
        let large = list(1000, 3);
        let back: List = postcard::from_bytes(&postcard::to_allocvec(&large).unwrap()).unwrap();
        assert_eq!(back, large);
    }
}
