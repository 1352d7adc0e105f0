//! A full disk, on a small tmpfs the test mounts in its own namespace: the node refuses writes
//! with a clear error while the proxy keeps routing and reads keep working, nothing
//! acknowledged is lost (also across a SIGKILL), and writes resume once space is freed.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use cluster_tests::cluster::{http_get, Backend, Cluster};
use cluster_tests::net::sandbox;
use cluster_tests::node::eventually;
use hipache_raft::keyspace::Reply;
use serde_json::json;

const TEST: &str = "a_full_disk_refuses_writes_clearly_keeps_routing_and_loses_nothing";
const RESERVE: u64 = 8 << 20;

/// Bytes free on the file system holding `dir`, as `df` reports them.
fn available(dir: &std::path::Path) -> u64 {
    let out = Command::new("df").args(["--output=avail", "-B1"]).arg(dir).output().expect("run df");
    String::from_utf8_lossy(&out.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).expect("df's figure")
}

#[test]
fn a_full_disk_refuses_writes_clearly_keeps_routing_and_loses_nothing() {
    if !sandbox::enter_or_skip(TEST) {
        return;
    }
    // Inside the test's own mount namespace: a 64 MiB tmpfs that nothing else shares, made the
    // temporary directory the cluster keeps its data dirs in (this process runs only this test).
    let small = tempfile::tempdir().unwrap();
    let tmp = small.path().to_path_buf();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"]).arg(&tmp).status();
    if !mounted.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED {TEST}: cannot mount a tmpfs in the sandbox");
        return;
    }
    std::env::set_var("TMPDIR", &tmp);
    let mut cluster = Cluster::start(1, json!({ "diskReserve": RESERVE }));
    cluster.leader(Duration::from_secs(10)).expect("a leader");
    let backend = Backend::start("routed");
    let mut c = cluster.members[0].resp();
    assert_eq!(c.cmd(&["RPUSH", "frontend:d.test", "d", &backend.url]), Reply::Int(2));
    for i in 0..200 {
        assert_eq!(c.cmd(&["SET", &format!("acked:{i}"), "v"]), Reply::Status("OK".into()));
    }

    // Fill the disk to half the reserve.
    let filler_path = tmp.join("filler");
    let mut filler = std::fs::File::create(&filler_path).unwrap();
    let fill = available(&tmp).saturating_sub(RESERVE / 2);
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < fill {
        let n = chunk.len().min((fill - written) as usize);
        filler.write_all(&chunk[..n]).unwrap();
        written += n as u64;
    }
    filler.sync_all().unwrap();
    assert!(available(&tmp) < RESERVE, "the disk is below the reserve");

    // Writes are refused, clearly, in every form; nothing changes.
    for write in
        [&["SET", "refused", "v"][..], &["RPUSH", "frontend:d.test", "http://127.0.0.1:9"], &["DEL", "acked:0"]]
    {
        match c.cmd(write) {
            Reply::Error(e) => {
                assert!(e.starts_with("ERR disk full") && e.contains("cluster.diskReserve"), "{write:?}: {e}")
            }
            other => panic!("{write:?} was taken on a full disk: {other:?}"),
        }
    }
    // Reads and routing go on.
    assert_eq!(c.cmd(&["GET", "acked:0"]), Reply::Bulk("v".into()));
    assert_eq!(c.cmd(&["LLEN", "frontend:d.test"]), Reply::Int(2));
    assert_eq!(http_get(&cluster.members[0].http(), "d.test"), (200, "routed".to_string()));

    // Space returns: writes resume at once.
    drop(filler);
    std::fs::remove_file(&filler_path).unwrap();
    assert!(eventually(Duration::from_secs(10), || c.cmd(&["SET", "after", "v"]) == Reply::Status("OK".into())));

    // Nothing acknowledged was lost, nothing refused was applied, across a SIGKILL.
    cluster.kill(0);
    cluster.restart(0);
    cluster.leader(Duration::from_secs(20)).expect("a leader after the restart");
    let mut c = cluster.members[0].resp();
    for i in 0..200 {
        assert_eq!(c.cmd(&["GET", &format!("acked:{i}")]), Reply::Bulk("v".into()), "acked:{i}");
    }
    assert_eq!(c.cmd(&["GET", "after"]), Reply::Bulk("v".into()));
    assert_eq!(c.cmd(&["EXISTS", "refused"]), Reply::Int(0));
    assert_eq!(c.cmd(&["LLEN", "frontend:d.test"]), Reply::Int(2));
}
