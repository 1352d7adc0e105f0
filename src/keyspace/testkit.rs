//! Test helpers: a keyspace driven like a Raft state machine, one log entry per command.

use bytes::Bytes;

use super::reply::Reply;
use super::store::{ApplyCtx, Keyspace, Publisher};
use super::versions::Watch;

/// Splits on spaces; test arguments never contain one.
pub(crate) fn argv(cmd: &str) -> Vec<Bytes> {
    cmd.split(' ').map(|a| Bytes::copy_from_slice(a.as_bytes())).collect()
}

pub(crate) fn bulk(s: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

pub(crate) fn bulks(items: &[&str]) -> Reply {
    Reply::Array(items.iter().map(|s| bulk(s)).collect())
}

pub(crate) fn set_of(items: &[&str]) -> Reply {
    Reply::Set(items.iter().map(|s| bulk(s)).collect())
}

pub(crate) fn err(s: &str) -> Reply {
    Reply::Error(s.into())
}

/// Records what was published and reports 2 receivers.
#[derive(Default)]
pub(crate) struct Recorder(pub(crate) Vec<(Bytes, Bytes)>);

impl Publisher for Recorder {
    fn publish(&mut self, channel: &Bytes, message: &Bytes) -> i64 {
        self.0.push((channel.clone(), message.clone()));
        2
    }
}

/// A replica: applies each command as the next log entry, stamped with `now`.
pub(crate) struct Node {
    pub(crate) ks: Keyspace,
    pub(crate) index: u64,
    pub(crate) now: u64,
    pub(crate) db: usize,
    pub(crate) published: Recorder,
}

pub(crate) const T0: u64 = 1_700_000_000_000;

impl Node {
    pub(crate) fn new() -> Node {
        Node { ks: Keyspace::new(), index: 0, now: T0, db: 0, published: Recorder::default() }
    }

    /// The next entry's context, and the keyspace to apply it to (borrowed apart, so no
    /// keyspace is moved out and rebuilt per command).
    fn next(&mut self) -> (&mut Keyspace, ApplyCtx<'_>) {
        self.index += 1;
        (&mut self.ks, ApplyCtx { index: self.index, now_ms: self.now, publisher: &mut self.published })
    }

    pub(crate) fn run(&mut self, cmd: &str) -> Reply {
        self.apply(&argv(cmd))
    }

    pub(crate) fn apply(&mut self, argv: &[Bytes]) -> Reply {
        let db = self.db;
        let (ks, mut ctx) = self.next();
        ks.apply(db, argv, &mut ctx)
    }

    pub(crate) fn exec(&mut self, cmds: &[&str], watched: &[super::Watch]) -> Reply {
        let queued: Vec<Vec<Bytes>> = cmds.iter().map(|c| argv(c)).collect();
        let db = self.db;
        let (ks, mut ctx) = self.next();
        ks.exec(db, &queued, watched, &mut ctx)
    }

    pub(crate) fn sweep(&mut self) -> usize {
        let (ks, mut ctx) = self.next();
        ks.sweep(&mut ctx)
    }

    /// A local read at the node's current time.
    pub(crate) fn read(&self, cmd: &str) -> Reply {
        self.ks.read(self.db, &argv(cmd), self.now)
    }

    /// Runs `cmd` both ways (in the log and as a local read) and checks they agree.
    pub(crate) fn query(&mut self, cmd: &str) -> Reply {
        let local = self.read(cmd);
        let logged = self.run(cmd);
        assert_eq!(local, logged, "{cmd}: local read and applied read differ");
        logged
    }
}

/// What a `WATCH` of `key` would record now.
pub fn watch(n: &Node, key: &str) -> Watch {
    Watch { db: n.db, key: Bytes::copy_from_slice(key.as_bytes()), version: n.ks.version(n.db, key.as_bytes(), n.now) }
}
