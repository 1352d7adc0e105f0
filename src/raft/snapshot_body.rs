//! The snapshot body: the keyspace and the proposers' table (`raft::dedup`), as postcard
//! bytes, in this data format and every earlier one a data dir or a peer may still hold.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use super::dedup::Proposers;
use crate::keyspace::{Keyspace, Reply};

/// What a snapshot holds besides its openraft meta.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotBody {
    pub keyspace: Keyspace,
    pub proposers: Proposers,
}

/// Starts a snapshot body of data format 2, which older bodies cannot start with: they begin
/// with a postcard length, and ten bytes with the continuation bit set are no valid length.
const BODY_FORMAT_2: &[u8] = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02";

/// The body as data format 1 wrote it: per proposing node, the last `Op::Tagged` applied.
#[derive(Serialize, Deserialize)]
struct SnapshotBodyFormat1 {
    keyspace: Keyspace,
    tags: BTreeMap<u64, AppliedTag>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AppliedTag {
    boot: u64,
    seq: u64,
    reply: Reply,
}

/// The body as written before tags.
#[derive(Deserialize)]
struct SnapshotBodyWithoutTags {
    keyspace: Keyspace,
}

/// The body as written before WATCH buckets (`Keyspace::stamps`).
#[derive(Deserialize)]
struct SnapshotBodyWithoutStamps {
    keyspace: crate::keyspace::KeyspaceWithoutStamps,
}

/// A keyspace whose proposers are unknown (a fresh node, or a body from before tags).
impl From<Keyspace> for SnapshotBody {
    fn from(keyspace: Keyspace) -> SnapshotBody {
        SnapshotBody { keyspace, proposers: Proposers::default() }
    }
}

impl SnapshotBody {
    /// `encode`, streamed: a snapshot file is written without the whole body in memory. The
    /// writer's own error (a full disk) is returned, not postcard's summary of it.
    pub fn encode_to(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(BODY_FORMAT_2)?;
        let mut out = KeepError { out, error: None };
        postcard::to_io(self, &mut out).map(drop).map_err(|e| out.error.take().unwrap_or_else(|| io::Error::other(e)))
    }

    /// `decode`, streamed from `reader`, which holds a body of `len` bytes: a body of this
    /// format is decoded as it is read, without the whole of it in memory beside the keyspace
    /// it becomes; older ones (a data dir not rewritten since) are read whole first.
    pub fn decode_from(mut reader: impl Read, len: u64) -> io::Result<SnapshotBody> {
        let mut bytes = Vec::with_capacity(BODY_FORMAT_2.len());
        reader.by_ref().take(BODY_FORMAT_2.len() as u64).read_to_end(&mut bytes)?;
        if bytes != BODY_FORMAT_2 {
            reader.read_to_end(&mut bytes)?;
            return SnapshotBody::decode(&bytes).map_err(invalid);
        }
        // postcard reads each byte string into this scratch buffer before it is copied out,
        // so it must hold the longest one: at most the body. Allocated zeroed and written
        // only from its start, it takes memory for the longest string, not for its length.
        let mut scratch = vec![0; usize::try_from(len).map_err(invalid)?];
        let (body, _) = postcard::from_io((reader, &mut scratch[..])).map_err(invalid)?;
        Ok(body)
    }

    /// Reads this version's body and the earlier ones, so existing data dirs and peers'
    /// snapshots still load (format 2 is marked; of the older forms each lacks a trailing
    /// field, so only one fits).
    pub fn decode(bytes: &[u8]) -> Result<SnapshotBody, postcard::Error> {
        if let Some(body) = bytes.strip_prefix(BODY_FORMAT_2) {
            return postcard::from_bytes(body);
        }
        postcard::from_bytes::<SnapshotBodyFormat1>(bytes)
            .map(|old| {
                let tags = old.tags.into_iter().map(|(node, t)| (node, t.boot, t.seq, t.reply));
                SnapshotBody { keyspace: old.keyspace, proposers: Proposers::from_last_tags(tags) }
            })
            .or_else(|e| {
                let old: SnapshotBodyWithoutTags = postcard::from_bytes(bytes).map_err(|_| e)?;
                Ok(old.keyspace.into())
            })
            .or_else(|e: postcard::Error| {
                let old: SnapshotBodyWithoutStamps = postcard::from_bytes(bytes).map_err(|_| e)?;
                Ok(Keyspace::from(old.keyspace).into())
            })
    }
}

fn invalid(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// A writer that remembers the first error of the one it wraps.
struct KeepError<'a> {
    out: &'a mut dyn Write,
    error: Option<io::Error>,
}

impl Write for KeepError<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf).inspect_err(|e| self.error = Some(io::Error::new(e.kind(), e.to_string())))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    /// A body with each database's keys in byte order, as bodies were written before the
    /// keyspace was kept in hash order: the same fields, maps sorted by key.
    #[derive(Serialize, Deserialize)]
    struct SortedBody {
        keyspace: SortedKeyspace,
        proposers: Proposers,
    }

    #[derive(Serialize, Deserialize)]
    struct SortedKeyspace {
        dbs: [BTreeMap<Bytes, crate::keyspace::Entry>; DATABASES],
        clock_ms: u64,
        stamps: Vec<u64>,
    }

    impl SnapshotBody {
        fn encode(&self) -> io::Result<Vec<u8>> {
            let mut bytes = Vec::new();
            self.encode_to(&mut bytes)?;
            Ok(bytes)
        }
    }
    use openraft::EntryPayload;

    use super::*;
    use crate::keyspace::{ApplyCtx, NullPublisher, DATABASES};
    use crate::raft::types::{Entry, LogId, Op, Origin, Request};

    /// A snapshot body as the program wrote it before `Keyspace::stamps`.
    #[derive(Serialize)]
    struct BodyWithoutStamps<'a> {
        dbs: &'a [crate::keyspace::db::Db; DATABASES],
        clock_ms: u64,
    }

    fn argv(cmd: &[&str]) -> Vec<Bytes> {
        cmd.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect()
    }

    #[test]
    fn snapshots_from_before_watch_buckets_still_load() {
        let mut keyspace = Keyspace::new();
        let mut ctx = ApplyCtx { index: 7, now_ms: 1_000, publisher: &mut NullPublisher };
        let argv: Vec<Bytes> =
            ["RPUSH", "frontend:a", "app", "http://x:1"].map(|s| Bytes::from_static(s.as_bytes())).into();
        keyspace.apply(0, &argv, &mut ctx);
        let old = postcard::to_allocvec(&BodyWithoutStamps { dbs: &keyspace.dbs, clock_ms: 1_000 }).unwrap();
        assert!(postcard::from_bytes::<SnapshotBody>(&old).is_err(), "the current form alone cannot read it");
        let loaded = SnapshotBody::decode(&old).unwrap().keyspace;
        assert_eq!(loaded.dbs, keyspace.dbs);
        let mut proposers = Proposers::default();
        proposers.record(Origin { node: 2, boot: 9, seq: 4 }, 4, 6, Reply::Int(1));
        let current = SnapshotBody { keyspace: keyspace.clone(), proposers: proposers.clone() }.encode().unwrap();
        let decoded = SnapshotBody::decode(&current).unwrap();
        assert_eq!((decoded.keyspace, decoded.proposers), (keyspace.clone(), proposers));
        #[derive(Serialize)]
        struct BodyWithoutTags<'a> {
            keyspace: &'a Keyspace,
        }
        let without_tags = postcard::to_allocvec(&BodyWithoutTags { keyspace: &keyspace }).unwrap();
        let decoded = SnapshotBody::decode(&without_tags).unwrap();
        assert_eq!((decoded.keyspace, decoded.proposers), (keyspace, Proposers::default()));
        assert!(SnapshotBody::decode(b"\x01garbage").is_err());
    }

    /// What this build writes, made from every kind of value, expiry, several databases,
    /// WATCH stamps and proposers' replies in a snapshot body, and every kind of log entry.
    fn golden_content() -> (Keyspace, Vec<Entry>) {
        use openraft::Membership;

        use crate::raft::types::{NodeInfo, WatchedKey};

        let mut ctx = ApplyCtx { index: 3, now_ms: 1_700_000_000_000, publisher: &mut NullPublisher };
        let mut keyspace = Keyspace::new();
        let script: [(usize, &[&str]); 6] = [
            (0, &["RPUSH", "frontend:www.example.com", "site", "http://127.0.0.1:8080", "http://127.0.0.2:8080"]),
            (0, &["SADD", "dead:www.example.com", "1"]),
            (0, &["EXPIRE", "dead:www.example.com", "30"]),
            (0, &["HSET", "tls:www.example.com", "certificate", "pem", "key", "pem"]),
            (3, &["SET", "hchecker_ping", "1700000000"]),
            (0, &["DEL", "frontend:gone.example.com"]),
        ];
        for (i, (db, cmd)) in script.iter().enumerate() {
            ctx.index = 3 + i as u64;
            keyspace.apply(*db, &argv(cmd), &mut ctx);
        }
        keyspace.take_changes();

        let log_id = |index| LogId::new(openraft::CommittedLeaderId::new(2, 1), index);
        let normal = |index, op| Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(Request { stamp_ms: 1_700_000_000_123, op }),
        };
        let members = BTreeMap::from([
            (1, NodeInfo { grpc: "127.0.0.1:7380".into(), resp: "127.0.0.1:6380".into() }),
            (2, NodeInfo { grpc: "127.0.0.1:7382".into(), resp: "127.0.0.1:6382".into() }),
        ]);
        let entries = vec![
            Entry { log_id: log_id(1), payload: EntryPayload::Blank },
            Entry {
                log_id: log_id(2),
                payload: EntryPayload::Membership(Membership::new(
                    vec![std::collections::BTreeSet::from([1, 2])],
                    members,
                )),
            },
            normal(3, Op::Command { db: 0, argv: argv(&["RPUSH", "frontend:a", "id", "http://127.0.0.1:1"]) }),
            normal(
                4,
                Op::Exec {
                    db: 0,
                    queued: vec![argv(&["DEL", "frontend:a"]), argv(&["RPUSH", "frontend:a", "id"])],
                    watched: vec![WatchedKey { db: 0, key: Bytes::from_static(b"frontend:a"), version: 4 }],
                },
            ),
            normal(5, Op::Batch(vec![Op::Command { db: 1, argv: argv(&["SET", "k", "v"]) }, Op::Sweep])),
            normal(6, Op::Sweep),
            normal(
                7,
                Op::Tagged {
                    origin: Origin { node: 2, boot: 77, seq: 5 },
                    op: Box::new(Op::Batch(vec![Op::Command { db: 0, argv: argv(&["PUBLISH", "dead", "m"]) }])),
                },
            ),
        ];
        (keyspace, entries)
    }

    fn golden(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden").join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// A data dir of format 1, as the build of then wrote it (`tests/data/golden/`): it must
    /// still load, its last tag per node becoming the proposer's mark.
    #[test]
    fn golden_snapshot_body_and_log_entries_of_format_1_still_decode() {
        let (keyspace, entries) = golden_content();
        let golden_body = golden("snapshot-body-format-1.bin");
        let decoded = SnapshotBody::decode(&golden_body).unwrap();
        assert_eq!(decoded.keyspace, keyspace, "the golden snapshot's keyspace");
        let reply = Reply::Array(vec![Reply::Int(1), Reply::ok()]);
        assert_eq!(decoded.proposers, Proposers::from_last_tags([(2, 77, 5, reply)]), "its tags");
        let streamed = SnapshotBody::decode_from(&golden_body[..], golden_body.len() as u64).unwrap();
        assert_eq!((streamed.keyspace, streamed.proposers), (decoded.keyspace, decoded.proposers), "streamed");
        let decoded: Vec<Entry> = postcard::from_bytes(&golden("log-entries-format-1.bin")).unwrap();
        assert_eq!(decoded, entries, "the golden log entries");
    }

    /// What a data dir of format 2 holds, as this build wrote it. Decoding must give what the
    /// files were made from and encoding must give the same bytes, so a change to an encoding
    /// fails here and needs a deliberate migration (and a new DATA_FORMAT). One freedom: the
    /// order of the keys in a database's map is not part of the format (any order loads, in
    /// every version), and since the keyspace is kept in hash order (`keyspace::db`) keys
    /// are written in that order; the body is compared with its keys re-sorted.
    /// `HIPACHE_WRITE_GOLDEN=1` writes the files, for a new format version only.
    #[test]
    fn golden_snapshot_body_and_log_entries_of_format_2_still_decode() {
        let (keyspace, mut entries) = golden_content();
        let mut proposers = Proposers::default();
        let reply = Reply::Array(vec![Reply::Int(1), Reply::ok()]);
        proposers.record(Origin { node: 2, boot: 77, seq: 6 }, 5, 8, reply);
        proposers.record(Origin { node: 3, boot: 12, seq: 9 }, 9, 9, Reply::Int(4));
        let body = SnapshotBody { keyspace, proposers };
        let op = Op::Command { db: 0, argv: argv(&["RPUSH", "frontend:b", "id"]) };
        let sequenced =
            Op::Sequenced { origin: Origin { node: 3, boot: 12, seq: 9 }, settled_below: 8, op: Box::new(op) };
        let log_id = LogId::new(openraft::CommittedLeaderId::new(2, 1), 8);
        entries.push(Entry {
            log_id,
            payload: EntryPayload::Normal(Request { stamp_ms: 1_700_000_000_456, op: sequenced }),
        });

        if std::env::var_os("HIPACHE_WRITE_GOLDEN").is_some() {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden");
            std::fs::write(dir.join("snapshot-body-format-2.bin"), body.encode().unwrap()).unwrap();
            std::fs::write(dir.join("log-entries-format-2.bin"), postcard::to_allocvec(&entries).unwrap()).unwrap();
        }
        let golden_body = golden("snapshot-body-format-2.bin");
        let decoded = SnapshotBody::decode(&golden_body).unwrap();
        assert_eq!(decoded.keyspace, body.keyspace, "the golden snapshot's keyspace");
        assert_eq!(decoded.proposers, body.proposers, "the golden snapshot's proposers");
        let streamed = SnapshotBody::decode_from(&golden_body[..], golden_body.len() as u64).unwrap();
        assert_eq!((streamed.keyspace, streamed.proposers), (decoded.keyspace, decoded.proposers), "streamed");
        let cut = &golden_body[..golden_body.len() - 3];
        assert!(SnapshotBody::decode_from(cut, cut.len() as u64).is_err(), "a cut body is an error");
        let encoded = body.encode().unwrap();
        let sorted: SortedBody = postcard::from_bytes(&encoded[BODY_FORMAT_2.len()..]).unwrap();
        assert_eq!(
            [BODY_FORMAT_2, &postcard::to_allocvec(&sorted).unwrap()].concat(),
            golden_body,
            "snapshot bodies are still written the same way, up to the order of keys"
        );
        let golden_entries = golden("log-entries-format-2.bin");
        assert_eq!(postcard::from_bytes::<Vec<Entry>>(&golden_entries).unwrap(), entries, "the golden log entries");
        assert_eq!(
            postcard::to_allocvec(&entries).unwrap(),
            golden_entries,
            "log entries are still written the same way"
        );
    }
}
