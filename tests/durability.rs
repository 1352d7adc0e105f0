//! Durability: a write acknowledged to the client survives SIGKILL of the node, with and
//! without log purges after snapshots, and expiry deadlines survive a restart unchanged. A
//! data dir written by a newer build is refused with a message naming both formats.
//!
//! SIGKILL leaves the kernel's page cache alone, but the log keeps recent records in its own
//! buffer until a flush hands them to its flush thread: an acknowledgement sent before the
//! group-commit flush would be lost here, because the kill comes right after the last
//! acknowledgement. (Power cuts, which lose the page cache too, are in cluster-tests.)

mod common;

use std::time::Duration;

use common::{base_config, binary, encode_command, eventually, Node, Resp};
use hipache_raft::keyspace::Reply;
use serde_json::json;

const KEYS: usize = 1000;
const WRITERS: usize = 4;

/// Writes `KEYS` keys from `WRITERS` concurrent connections, pipelined, and returns once every
/// one of them has been acknowledged.
fn write_keys(node: &Node) {
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let mut conn = node.resp();
            s.spawn(move || {
                let mine: Vec<usize> = (w..KEYS).step_by(WRITERS).collect();
                for batch in mine.chunks(50) {
                    let frames: Vec<u8> = batch
                        .iter()
                        .flat_map(|i| encode_command(&["SET", &format!("key:{i}"), &format!("value:{i}")]))
                        .collect();
                    conn.send_raw(&frames);
                    for i in batch {
                        assert_eq!(conn.read_raw(), b"+OK\r\n", "SET key:{i}");
                    }
                }
            });
        }
    });
}

fn assert_all_keys(conn: &mut Resp) {
    let frames: Vec<u8> = (0..KEYS).flat_map(|i| encode_command(&["GET", &format!("key:{i}")])).collect();
    conn.send_raw(&frames);
    let missing: Vec<usize> = (0..KEYS)
        .filter(|i| {
            let value = format!("value:{i}");
            conn.read_raw() != format!("${}\r\n{value}\r\n", value.len()).into_bytes()
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged keys lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(conn.raw(&["DBSIZE"]), format!(":{KEYS}\r\n").into_bytes());
}

/// A field of `INFO raft`, e.g. `raft_purged_index`; empty when the node reports none.
fn raft_info(conn: &mut Resp, field: &str) -> String {
    let text = match conn.cmd(&["INFO", "raft"]) {
        Reply::Bulk(b) => String::from_utf8(b.to_vec()).unwrap(),
        other => panic!("INFO: {other:?}"),
    };
    let prefix = format!("{field}:");
    let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {field} in {text}"));
    line[prefix.len()..].to_string()
}

fn purged_index(conn: &mut Resp) -> u64 {
    raft_info(conn, "raft_purged_index").parse().unwrap_or(0)
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path());
    let mut node = Node::start(dir.path(), &config);
    write_keys(&node);
    node.kill();

    let node = Node::start(dir.path(), &config);
    assert_all_keys(&mut node.resp());
}

#[test]
fn acknowledged_writes_survive_sigkill_after_log_purges() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path());
    config["cluster"]["snapshotThreshold"] = json!(100);
    let mut node = Node::start(dir.path(), &config);
    write_keys(&node);
    let mut conn = node.resp();
    // Pipelined writes share log entries, so the 1,000 keys may be fewer entries than the
    // threshold: one-entry writes that change nothing (`DEL` of a missing key) fill the log
    // until a snapshot has been taken and the log purged behind it.
    let purged = eventually(Duration::from_secs(20), || {
        assert_eq!(conn.raw(&["DEL", "no-such-key"]), b":0\r\n");
        purged_index(&mut conn) > 0
    });
    assert!(purged, "the log was never purged");
    node.kill();

    let node = Node::start(dir.path(), &config);
    let mut conn = node.resp();
    assert!(purged_index(&mut conn) > 0, "the purge was not persisted");
    assert_all_keys(&mut conn);
    // The node still takes writes on top of the restored snapshot and the log after it.
    assert_eq!(conn.raw(&["SET", "after", "restart"]), b"+OK\r\n");
}

#[test]
fn expiry_deadlines_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path());
    let mut node = Node::start(dir.path(), &config);
    let mut conn = node.resp();
    assert_eq!(conn.raw(&["SET", "short", "v", "PX", "5000"]), b"+OK\r\n");
    assert_eq!(conn.raw(&["SET", "long", "v", "EX", "1000"]), b"+OK\r\n");
    assert_eq!(conn.raw(&["SET", "forever", "v"]), b"+OK\r\n");
    let written = std::time::Instant::now();
    node.kill();
    // Down for a measurable time: a deadline kept as a deadline has come closer by it, one
    // recomputed at restart (TTL counted again from the replay) has not.
    std::thread::sleep(Duration::from_millis(2500));

    let node = Node::start(dir.path(), &config);
    let mut conn = node.resp();
    let down_ms = written.elapsed().as_millis() as i64;
    match conn.cmd(&["PTTL", "short"]) {
        Reply::Int(ms) => assert!(ms <= 5000 - down_ms + 50 && ms > 0, "PTTL short = {ms} after {down_ms} ms"),
        other => panic!("PTTL short: {other:?}"),
    }
    match conn.cmd(&["TTL", "long"]) {
        Reply::Int(s) => assert!((990..=997).contains(&s), "TTL long = {s} after {down_ms} ms down"),
        other => panic!("TTL long: {other:?}"),
    }
    assert_eq!(conn.raw(&["TTL", "forever"]), b":-1\r\n");
    assert!(eventually(Duration::from_secs(10), || conn.raw(&["GET", "short"]) == b"$-1\r\n"), "short never expired");
    // The leader's sweep removes it from the keyspace too, not only from reads.
    assert!(eventually(Duration::from_secs(10), || conn.raw(&["DBSIZE"]) == b":2\r\n"), "expired key not swept");
}

#[test]
fn a_data_dir_from_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path());
    let mut node = Node::start(dir.path(), &config);
    assert_eq!(node.resp().raw(&["SET", "kept", "v"]), b"+OK\r\n");
    assert!(node.terminate().success());

    // What a future build with data format 4 would leave behind.
    let format = dir.path().join("data").join("format");
    assert_eq!(std::fs::read_to_string(&format).unwrap(), "3\n", "this build records its format");
    std::fs::write(&format, "4\n").unwrap();
    let out =
        std::process::Command::new(binary()).arg("--config").arg(dir.path().join("config.json")).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started on a newer data format: {stderr}");
    assert!(stderr.contains("data format 4") && stderr.contains("up to 3") && stderr.contains("data"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&format).unwrap(), "4\n", "the newer dir is left as it was");

    // Back to this build's format, the data is all there.
    std::fs::write(&format, "3\n").unwrap();
    let mut node = Node::start(dir.path(), &config);
    assert_eq!(node.resp().raw(&["GET", "kept"]), b"$1\r\nv\r\n");
    assert!(node.terminate().success());
}
