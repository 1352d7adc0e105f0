//! The replicated state: 16 Redis databases, and the entry points the Raft state machine, the
//! RESP listener and the persistence layer call.
//!
//! Determinism is the invariant: the result of `apply`/`exec`/`sweep` depends only on the state
//! and the arguments (the entry's log index and the leader's clock stamp), never on the local
//! clock, a random seed or hash-map iteration order, so every replica that applies the same
//! log holds an equal `Keyspace` and gives the same replies.

use std::collections::BTreeSet;
use std::num::NonZeroU64;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::access::{View, Writer};
use super::commands::{self, Handler};
use super::db::Db;
use super::reply::Reply;
use super::value::Value;
use super::versions::{Watch, STAMP_BUCKETS};
use super::DATABASES;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub value: Value,
    /// Absolute deadline in leader milliseconds; the key is gone once `now >= deadline`.
    /// Non-zero so that the option takes 8 bytes, not 16: every key's entry is a slot of the
    /// keyspace's map, a million of them at Hipache's scale. Serialized as an `Option<u64>`.
    #[serde(rename = "expire_at_ms", with = "deadline")]
    expire_at: Option<NonZeroU64>,
    /// Log index of the last modification (value or TTL); `Keyspace::version` adds one, so a
    /// live key's version is never 0, the version of a never-touched missing key.
    pub version: u64,
}

impl Entry {
    pub fn new(value: Value, expire_at_ms: Option<u64>, version: u64) -> Entry {
        Entry { value, expire_at: expire_at_ms.map(deadline::non_zero), version }
    }

    /// Absolute deadline in leader milliseconds, if the key has a TTL.
    pub fn expire_at_ms(&self) -> Option<u64> {
        self.expire_at.map(NonZeroU64::get)
    }

    pub(crate) fn set_expire_at_ms(&mut self, expire_at_ms: Option<u64>) {
        self.expire_at = expire_at_ms.map(deadline::non_zero);
    }

    pub(crate) fn is_expired(&self, now_ms: u64) -> bool {
        self.expire_at_ms().is_some_and(|at| at <= now_ms)
    }
}

/// A deadline as stored in an `Entry`. Deadline 0 (the epoch) becomes 1: both are long past,
/// so the key is expired either way, and no command stores a past deadline (it deletes).
mod deadline {
    use std::num::NonZeroU64;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn non_zero(ms: u64) -> NonZeroU64 {
        NonZeroU64::new(ms).unwrap_or(NonZeroU64::MIN)
    }

    pub(super) fn serialize<S: Serializer>(at: &Option<NonZeroU64>, s: S) -> Result<S::Ok, S::Error> {
        at.map(NonZeroU64::get).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NonZeroU64>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(non_zero))
    }
}

/// A key whose stored form changed (written, deleted or expired): persistence rewrites or
/// deletes it, the routing view reloads it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Change {
    pub db: usize,
    pub key: Bytes,
}

/// Delivers `PUBLISH` to this node's own subscribers (each node does it when it applies the
/// entry). Returns how many received it, which is the command's reply.
pub trait Publisher {
    fn publish(&mut self, channel: &Bytes, message: &Bytes) -> i64;
}

/// For applies that must deliver nothing: replaying the log at start-up, tests.
pub struct NullPublisher;

impl Publisher for NullPublisher {
    fn publish(&mut self, _channel: &Bytes, _message: &Bytes) -> i64 {
        0
    }
}

pub struct ApplyCtx<'a> {
    /// Raft log index of the entry being applied: stored as `Entry::version` of each key it
    /// writes, and (plus one) as the stamp of each touched key's bucket; `version()` of a live
    /// key is that index plus one (module docs).
    pub index: u64,
    /// The leader's wall clock when it proposed the entry.
    pub now_ms: u64,
    pub publisher: &'a mut dyn Publisher,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Keyspace {
    pub(crate) dbs: [Db; DATABASES],
    /// The latest leader stamp applied. Time never goes backwards across leaders whose clocks
    /// disagree, so a key that was expired stays expired.
    clock_ms: u64,
    /// Per bucket of keys, `1 + ` the log index of the last client modification of any key in
    /// it (0: never); the versions of missing keys (module docs).
    pub(super) stamps: imbl::Vector<u64>,
    /// Not state: what `take_changes` hands out next. Not serialized, not compared.
    #[serde(skip)]
    changes: Vec<Change>,
}

/// A keyspace as serialized before `stamps` existed; read from old snapshots, never written.
#[derive(Deserialize)]
pub struct KeyspaceWithoutStamps {
    dbs: [Db; DATABASES],
    clock_ms: u64,
}

/// Every bucket starts unstamped: versions of live keys, and of missing keys nobody touched
/// since, are what the program that wrote the snapshot computed.
impl From<KeyspaceWithoutStamps> for Keyspace {
    fn from(old: KeyspaceWithoutStamps) -> Keyspace {
        Keyspace { dbs: old.dbs, clock_ms: old.clock_ms, ..Keyspace::new() }
    }
}

/// Equality of the replicated state; pending changes are delivery bookkeeping.
impl PartialEq for Keyspace {
    fn eq(&self, other: &Keyspace) -> bool {
        self.clock_ms == other.clock_ms && self.dbs == other.dbs && self.stamps == other.stamps
    }
}

impl Default for Keyspace {
    fn default() -> Keyspace {
        Keyspace::new()
    }
}

impl Keyspace {
    pub fn new() -> Keyspace {
        Keyspace {
            dbs: Default::default(),
            clock_ms: 0,
            stamps: std::iter::repeat_n(0, STAMP_BUCKETS).collect(),
            changes: Vec::new(),
        }
    }

    /// Runs any core command, read or write, as part of a replicated entry.
    pub fn apply(&mut self, db: usize, argv: &[Bytes], ctx: &mut ApplyCtx<'_>) -> Reply {
        let now = self.advance_clock(ctx.now_ms);
        if db >= DATABASES {
            return db_out_of_range();
        }
        self.run(db, argv, now, ctx)
    }

    /// A whole MULTI/EXEC as one entry: aborted (`NilArray`) if a watched key changed,
    /// otherwise every queued command runs and its reply, error or not, goes in the array.
    pub fn exec(&mut self, db: usize, queued: &[Vec<Bytes>], watched: &[Watch], ctx: &mut ApplyCtx<'_>) -> Reply {
        let now = self.advance_clock(ctx.now_ms);
        if watched.iter().any(|w| self.version_at(w.db, &w.key, now) != w.version) {
            return Reply::NilArray;
        }
        let mut db = db;
        let replies = queued
            .iter()
            .map(|argv| match commands::select(argv) {
                Some(Ok(selected)) => {
                    db = selected;
                    Reply::ok()
                }
                Some(Err(reply)) => reply,
                None => commands::ping_or_echo(argv).unwrap_or_else(|| match db {
                    db if db >= DATABASES => db_out_of_range(),
                    db => self.run(db, argv, now, ctx),
                }),
            })
            .collect();
        Reply::Array(replies)
    }

    /// A read-only command against this replica, with the local clock: expired keys are
    /// hidden, nothing changes. Write commands are refused as a Redis read-only replica does.
    pub fn read(&self, db: usize, argv: &[Bytes], now_ms: u64) -> Reply {
        let now = now_ms.max(self.clock_ms);
        let spec = match commands::resolve(argv) {
            Ok(spec) => spec,
            Err(reply) => return reply,
        };
        let Some(db) = self.dbs.get(db) else {
            return db_out_of_range();
        };
        match spec.handler {
            Handler::Read(run) => run(&View::new(db, now), argv).unwrap_or_else(|e| e),
            Handler::Write(_) => Reply::err("READONLY You can't write against a read only replica."),
        }
    }

    /// Deletes every key whose deadline is `<= now`, like a Redis master's active expiry
    /// sending `DEL`s to its replicas. Returns how many keys it removed.
    pub fn sweep(&mut self, ctx: &mut ApplyCtx<'_>) -> usize {
        let now = self.advance_clock(ctx.now_ms);
        let mut removed = 0;
        for db in 0..DATABASES {
            for key in self.dbs[db].due(now) {
                if self.dbs[db].remove(&key) {
                    self.record(db, key);
                }
                removed += 1;
            }
        }
        removed
    }

    pub fn next_deadline(&self) -> Option<u64> {
        self.dbs.iter().filter_map(Db::next_deadline).min()
    }

    /// Keys written, deleted or expired since the last call, each once, in first-touched order.
    pub fn take_changes(&mut self) -> Vec<Change> {
        let mut seen = BTreeSet::new();
        let mut changes = std::mem::take(&mut self.changes);
        changes.retain(|c| seen.insert((c.db, c.key.clone())));
        changes
    }

    /// The stored entry, expired or not (for persistence).
    pub fn get(&self, db: usize, key: &[u8]) -> Option<&Entry> {
        self.dbs.get(db)?.get(key)
    }

    /// Loads an entry from disk at start-up; records no change. Out-of-range dbs are ignored.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// `(keys, keys with a TTL)` as INFO's keyspace section counts them (unswept expired keys
    /// included, as Redis does).
    pub fn db_stats(&self, db: usize) -> (usize, usize) {
        self.dbs.get(db).map_or((0, 0), |d| (d.len(), d.expiring()))
    }

    pub fn iter(&self) -> impl Iterator<Item = (usize, &[u8], &Entry)> {
        self.dbs.iter().enumerate().flat_map(|(i, db)| db.entries().map(move |(k, e)| (i, k, e)))
    }

    fn advance_clock(&mut self, now_ms: u64) -> u64 {
        self.clock_ms = self.clock_ms.max(now_ms);
        self.clock_ms
    }

    fn run(&mut self, db: usize, argv: &[Bytes], now: u64, ctx: &mut ApplyCtx<'_>) -> Reply {
        let spec = match commands::resolve(argv) {
            Ok(spec) => spec,
            Err(reply) => return reply,
        };
        match spec.handler {
            Handler::Read(run) => {
                // A read inside the log deletes the expired keys it names, as a Redis master's
                // lazy expiry does, so the routing view and disk drop them too.
                for key in spec.keys(argv) {
                    self.expire_if_due(db, key, now);
                }
                run(&View::new(&self.dbs[db], now), argv)
            }
            Handler::Write(run) => run(&mut Writer::new(self, db, now, ctx.index, &mut *ctx.publisher), argv),
        }
        .unwrap_or_else(|e| e)
    }

    /// Removes `key` if its deadline has passed; true if it did.
    pub(crate) fn expire_if_due(&mut self, db: usize, key: &[u8], now: u64) -> bool {
        // Every write calls this first: when no deadline in the db has passed (nearly always),
        // the earliest deadline says so without a lookup of the key.
        if self.dbs[db].next_deadline().is_none_or(|at| at > now) {
            return false;
        }
        if !self.dbs[db].get(key).is_some_and(|e| e.is_expired(now)) {
            return false;
        }
        if self.dbs[db].remove(key) {
            self.record(db, Bytes::copy_from_slice(key));
        }
        true
    }

    /// A key whose stored form changed without a client touching it (expiry).
    pub(crate) fn record(&mut self, db: usize, key: Bytes) {
        self.changes.push(Change { db, key });
    }
}

pub(crate) fn db_out_of_range() -> Reply {
    Reply::err("ERR DB index is out of range")
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{argv, bulk, err, Node};
    use super::*;

    #[test]
    fn exec_runs_all_and_keeps_errors_in_place() {
        let mut n = Node::new();
        n.run("rpush l a");
        let reply = n.exec(&["set k v", "incr l", "get k", "nosuch x"], &[]);
        assert_eq!(
            reply,
            Reply::Array(vec![
                Reply::ok(),
                Reply::wrong_type(),
                bulk("v"),
                err("ERR unknown command 'nosuch', with args beginning with: 'x' "),
            ])
        );
    }

    #[test]
    fn exec_answers_ping_and_echo_in_order() {
        let mut n = Node::new();
        let reply = n.exec(&["ping", "echo hi", "set k v", "ping x", "ping a b"], &[]);
        assert_eq!(
            reply,
            Reply::Array(vec![
                Reply::Status("PONG".into()),
                bulk("hi"),
                Reply::ok(),
                bulk("x"),
                Reply::wrong_arity("ping"),
            ])
        );
    }

    #[test]
    fn exec_select_switches_db() {
        let mut n = Node::new();
        let reply = n.exec(&["set k zero", "select 3", "set k three", "select 16", "select x", "select", "get k"], &[]);
        assert_eq!(
            reply,
            Reply::Array(vec![
                Reply::ok(),
                Reply::ok(),
                Reply::ok(),
                err("ERR DB index is out of range"),
                Reply::not_integer(),
                Reply::wrong_arity("select"),
                bulk("three"),
            ])
        );
        assert_eq!(n.read("get k"), bulk("zero"));
        assert_eq!(n.ks.read(3, &argv("get k"), n.now), bulk("three"));
    }

    #[test]
    fn expired_keys_are_hidden_then_swept() {
        let mut n = Node::new();
        n.run("set k v px 100");
        n.run("rpush l a");
        n.run("expire l 1");
        n.ks.take_changes();
        assert_eq!(n.ks.next_deadline(), Some(n.now + 100));
        n.now += 150;
        assert_eq!(n.read("get k"), Reply::Nil, "hidden by the local clock");
        assert_eq!(n.read("dbsize"), Reply::Int(1));
        assert_eq!(n.read("keys *"), Reply::Array(vec![bulk("l")]));
        assert!(n.ks.get(0, b"k").is_some(), "a read deletes nothing");
        assert_eq!(n.ks.db_stats(0), (2, 2));
        assert_eq!(n.sweep(), 1);
        assert!(n.ks.get(0, b"k").is_none());
        assert_eq!(n.ks.take_changes(), vec![Change { db: 0, key: Bytes::from_static(b"k") }]);
        assert_eq!(n.ks.db_stats(0), (1, 1));
        assert_eq!(n.sweep(), 0);
    }

    #[test]
    fn applied_commands_delete_expired_keys_they_touch() {
        let mut n = Node::new();
        n.run("set k v px 10");
        n.run("sadd s a");
        n.run("pexpire s 10");
        n.ks.take_changes();
        n.now += 10;
        assert_eq!(n.run("get k"), Reply::Nil);
        assert_eq!(n.run("sadd s b"), Reply::Int(1), "an expired key counts as absent");
        assert_eq!(n.run("ttl s"), Reply::Int(-1), "the new set has no TTL");
        let keys: Vec<_> = n.ks.take_changes().into_iter().map(|c| c.key).collect();
        assert_eq!(keys, vec![Bytes::from_static(b"k"), Bytes::from_static(b"s")]);
        assert!(n.ks.get(0, b"k").is_none());
    }

    #[test]
    fn clock_never_goes_back() {
        let mut n = Node::new();
        n.run("set k v px 100");
        n.now += 200;
        n.run("get k");
        n.now -= 1000; // a new leader with a slower clock
        assert_eq!(n.run("get k"), Reply::Nil);
        assert_eq!(n.ks.clock_ms(), n.now + 1000);
        n.run("set j v px 100");
        assert_eq!(n.ks.get(0, b"j").and_then(Entry::expire_at_ms), Some(n.now + 1100));
    }

    #[test]
    fn read_refuses_writes_and_checks_input() {
        let n = Node::new();
        assert_eq!(n.read("set k v"), err("READONLY You can't write against a read only replica."));
        assert_eq!(n.read("get"), Reply::wrong_arity("get"));
        assert_eq!(n.read("nope"), err("ERR unknown command 'nope', with args beginning with: "));
        assert_eq!(n.ks.read(16, &argv("get k"), 0), err("ERR DB index is out of range"));
        assert_eq!(n.ks.read(0, &[], 0), err("ERR unknown command '', with args beginning with: "));
    }

    #[test]
    fn changes_are_deduplicated_in_order() {
        let mut n = Node::new();
        n.run("rpush b 1");
        n.run("rpush a 1");
        n.run("rpush b 2");
        n.run("get a");
        let keys: Vec<_> = n.ks.take_changes().into_iter().map(|c| c.key).collect();
        assert_eq!(keys, vec![Bytes::from_static(b"b"), Bytes::from_static(b"a")]);
        assert!(n.ks.take_changes().is_empty());
        n.run("flushall");
        assert_eq!(n.ks.take_changes().len(), 2, "a flush lists every removed key");
    }

    #[test]
    fn publish_goes_to_the_publisher() {
        let mut n = Node::new();
        assert_eq!(n.run("publish dead frontend:x;1"), Reply::Int(2));
        assert_eq!(n.published.0, vec![(Bytes::from_static(b"dead"), Bytes::from_static(b"frontend:x;1"))]);
        assert!(n.ks.take_changes().is_empty());
        let mut ks = Keyspace::new();
        let mut ctx = ApplyCtx { index: 1, now_ms: 0, publisher: &mut NullPublisher };
        assert_eq!(ks.apply(0, &argv("publish c m"), &mut ctx), Reply::Int(0));
    }

    /// A mixed workload over several dbs, with expiry and transactions.
    fn workload(n: &mut Node) {
        for i in 0..50 {
            n.db = i % 3;
            n.run(&format!("rpush frontend:h{} id{} http://b{}", i % 7, i, i));
            n.run(&format!("sadd dead:h{} {}", i % 5, i));
            n.run(&format!("expire dead:h{} {}", i % 5, 1 + i % 4));
            n.run(&format!("hset tls:h{} f{} v{}", i % 4, i % 3, i));
            if i % 6 == 0 {
                n.exec(&["lpop frontend:h1", "del tls:h2", "select 2", "incr c"], &[]);
            }
            n.now += 700;
            if i % 10 == 0 {
                n.sweep();
            }
        }
    }

    #[test]
    fn replicas_fed_the_same_log_are_equal() {
        let (mut a, mut b) = (Node::new(), Node::new());
        workload(&mut a);
        workload(&mut b);
        assert_eq!(a.ks, b.ks);
        assert_eq!(a.ks.take_changes(), b.ks.take_changes());
        let dump = |n: &Node| n.ks.iter().map(|(db, k, e)| (db, k.to_vec(), e.clone())).collect::<Vec<_>>();
        assert_eq!(dump(&a), dump(&b));
    }

    #[test]
    fn snapshots_round_trip_through_postcard() {
        let mut n = Node::new();
        workload(&mut n);
        let bytes = postcard::to_stdvec(&n.ks).expect("serialize");
        let back: Keyspace = postcard::from_bytes(&bytes).expect("deserialize");
        assert_eq!(back, n.ks);
        assert_eq!(back.next_deadline(), n.ks.next_deadline(), "indexes rebuilt");
        for db in 0..DATABASES {
            assert_eq!(back.db_stats(db), n.ks.db_stats(db));
            assert_eq!(
                back.read(db, &argv("scan 0 count 1000"), n.now),
                n.ks.read(db, &argv("scan 0 count 1000"), n.now)
            );
        }
        let entry = Entry::new(
            Value::Hash(Box::new([(Bytes::from_static(b"f"), Bytes::from_static(b"v"))].into_iter().collect())),
            Some(5),
            9,
        );
        let bytes = postcard::to_stdvec(&entry).expect("serialize");
        assert_eq!(postcard::from_bytes::<Entry>(&bytes).expect("deserialize"), entry);
    }

    /// Every key's entry shares one allocation with the key's bytes (`db::Record`): at 40
    /// bytes, a frontend's record (with a key of up to 24 bytes) is an 80-byte allocation.
    #[test]
    fn an_entry_is_40_bytes() {
        assert_eq!(std::mem::size_of::<Value>(), 24);
        assert_eq!(std::mem::size_of::<Entry>(), 40);
    }

    #[test]
    fn a_zero_deadline_loads_as_a_past_one() {
        let mut entry = Entry::new(Value::Str(Box::new(Bytes::from_static(b"v"))), Some(0), 3);
        assert_eq!(entry.expire_at_ms(), Some(1));
        assert!(entry.is_expired(1));
        entry.set_expire_at_ms(None);
        assert_eq!(entry.expire_at_ms(), None);
        let bytes = postcard::to_stdvec(&(Value::Str(Box::new(Bytes::from_static(b"v"))), Some(0u64), 3u64))
            .expect("serialize");
        assert_eq!(postcard::from_bytes::<Entry>(&bytes).expect("deserialize").expire_at_ms(), Some(1));
    }

    #[test]
    fn apply_rejects_bad_db_and_never_panics_on_odd_input() {
        let mut n = Node::new();
        let mut ks = Keyspace::new();
        let mut ctx = ApplyCtx { index: 1, now_ms: 0, publisher: &mut NullPublisher };
        assert_eq!(ks.apply(16, &argv("get k"), &mut ctx), err("ERR DB index is out of range"));
        assert!(ks.apply(0, &[], &mut ctx).is_error());
        for spec in commands::command_table() {
            for argc in 0..7 {
                let mut cmd = vec![Bytes::from_static(spec.name.as_bytes())];
                cmd.extend(
                    (1..argc).map(|i| Bytes::from(["k", "-1", "x", "", "0", "ex", "9223372036854775807"][i % 7])),
                );
                n.apply(&cmd);
                n.read(&String::from_utf8_lossy(&cmd.concat()));
            }
        }
    }
}
