//! A full disk, on a small tmpfs the test mounts in its own namespace: the node refuses writes
//! with a clear error while the proxy keeps routing and reads keep working, nothing
//! acknowledged is lost (also across a SIGKILL), and writes resume once space is freed. And a
//! follower whose disk alone fills: the cluster goes on writing, the follower refuses the
//! entries (its Raft core does not stop), keeps routing, and catches up once space is freed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cluster_tests::cluster::{http_get, Backend, Cluster};
use cluster_tests::net::sandbox;
use cluster_tests::node::eventually;
use hipache_raft::keyspace::Reply;
use serde_json::json;

const TEST: &str = "a_full_disk_refuses_writes_clearly_keeps_routing_and_loses_nothing";
const FOLLOWER_TEST: &str = "a_follower_with_a_full_disk_falls_behind_keeps_routing_and_catches_up";
const RESERVE: u64 = 8 << 20;

/// Bytes free on the file system holding `dir`, as `df` reports them.
fn available(dir: &std::path::Path) -> u64 {
    let out = Command::new("df").args(["--output=avail", "-B1"]).arg(dir).output().expect("run df");
    String::from_utf8_lossy(&out.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).expect("df's figure")
}

/// Mounts a 64 MiB tmpfs on `dir` (in the test's own mount namespace); false if it cannot.
fn mount_small_tmpfs(dir: &Path) -> bool {
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"]).arg(dir).status();
    mounted.is_ok_and(|s| s.success())
}

/// Fills the file system holding `dir` until half the reserve is free; returns the filler.
fn fill_below_reserve(dir: &Path) -> PathBuf {
    let filler_path = dir.join("filler");
    let mut filler = std::fs::File::create(&filler_path).unwrap();
    let fill = available(dir).saturating_sub(RESERVE / 2);
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < fill {
        let n = chunk.len().min((fill - written) as usize);
        filler.write_all(&chunk[..n]).unwrap();
        written += n as u64;
    }
    filler.sync_all().unwrap();
    assert!(available(dir) < RESERVE, "the disk is below the reserve");
    filler_path
}

fn assert_disk_full(reply: Reply, what: &str) {
    match reply {
        Reply::Error(e) => assert!(e.starts_with("ERR disk full") && e.contains("cluster.diskReserve"), "{what}: {e}"),
        other => panic!("{what} was taken on a full disk: {other:?}"),
    }
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
    if !mount_small_tmpfs(&tmp) {
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
    let filler_path = fill_below_reserve(&tmp);

    // Writes are refused, clearly, in every form; nothing changes.
    for write in
        [&["SET", "refused", "v"][..], &["RPUSH", "frontend:d.test", "http://127.0.0.1:9"], &["DEL", "acked:0"]]
    {
        assert_disk_full(c.cmd(write), &format!("{write:?}"));
    }
    // Reads and routing go on.
    assert_eq!(c.cmd(&["GET", "acked:0"]), Reply::Bulk("v".into()));
    assert_eq!(c.cmd(&["LLEN", "frontend:d.test"]), Reply::Int(2));
    assert_eq!(http_get(&cluster.members[0].http(), "d.test"), (200, "routed".to_string()));

    // Space returns: writes resume at once.
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

#[test]
fn a_follower_with_a_full_disk_falls_behind_keeps_routing_and_catches_up() {
    if !sandbox::enter_or_skip(FOLLOWER_TEST) {
        return;
    }
    let mut cluster = Cluster::start(3, json!({ "diskReserve": RESERVE }));
    let leader = cluster.leader(Duration::from_secs(20)).expect("a leader");
    let f = cluster.followers(leader)[0];
    let backend = Backend::start("routed");
    let mut l = cluster.members[leader].resp();
    assert_eq!(l.cmd(&["RPUSH", "frontend:d.test", "d", &backend.url]), Reply::Int(2));
    assert_eq!(l.cmd(&["SET", "before", "v"]), Reply::Status("OK".into()));

    // Move the follower's data dir onto a small tmpfs of its own.
    cluster.kill(f);
    let data = cluster.members[f].data_dir();
    let moved = data.with_extension("moved");
    std::fs::rename(&data, &moved).unwrap();
    std::fs::create_dir(&data).unwrap();
    if !mount_small_tmpfs(&data) {
        eprintln!("SKIPPED {FOLLOWER_TEST}: cannot mount a tmpfs in the sandbox");
        return;
    }
    assert!(Command::new("cp").arg("-a").arg(moved.join(".")).arg(&data).status().unwrap().success());
    cluster.restart(f);
    let mut fc = cluster.members[f].resp();
    // Reads from the follower's own replica (a plain read would be linearizable, via the leader).
    assert_eq!(fc.cmd(&["READONLY"]), Reply::Status("OK".into()));
    assert!(eventually(Duration::from_secs(20), || fc.cmd(&["GET", "before"]) == Reply::Bulk("v".into())));

    let filler_path = fill_below_reserve(&data);
    // The cluster goes on: the leader and the other follower are a quorum.
    for i in 0..100 {
        assert_eq!(l.cmd(&["SET", &format!("late:{i}"), "v"]), Reply::Status("OK".into()), "late:{i}");
    }
    // The follower took none of it, refuses writes of its own clearly, and still routes and reads.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(fc.cmd(&["EXISTS", "late:0"]), Reply::Int(0), "the follower refused the entries");
    assert_disk_full(fc.cmd(&["SET", "refused", "v"]), "a write on the follower");
    assert_eq!(fc.cmd(&["GET", "before"]), Reply::Bulk("v".into()));
    assert_eq!(http_get(&cluster.members[f].http(), "d.test"), (200, "routed".to_string()));

    // Space returns: the follower catches up without a restart and takes writes again.
    std::fs::remove_file(&filler_path).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || fc.cmd(&["GET", "late:99"]) == Reply::Bulk("v".into())),
        "the follower caught up"
    );
    assert_eq!(fc.cmd(&["SET", "after", "v"]), Reply::Status("OK".into()));
    assert_eq!(l.cmd(&["GET", "after"]), Reply::Bulk("v".into()));
}
