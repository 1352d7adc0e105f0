//! What a newcomer meets on a fresh machine: the access log's directory, refusing a log path
//! that cannot be created (naming the key), and dropping root to `user`/`group` after binding.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{base_config, binary, Node};
use hipache_raft::keyspace::Reply;
use serde_json::{json, Value};

/// Runs the binary on `config` and expects it to refuse to start: returns its stderr.
fn refused(dir: &Path, config: &Value) -> String {
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    let mut child = Command::new(binary())
        .arg("--config")
        .arg(&path)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..300 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(status) = child.try_wait().unwrap() else {
        let _ = child.kill();
        panic!("the node started although it should have refused");
    };
    assert!(!status.success(), "{status:?}");
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_missing_access_log_directory_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("var/log/hipache/access.log");
    let mut config = base_config(dir.path());
    config["server"]["accessLog"] = json!(log);
    let node = Node::start(dir.path(), &config);
    assert!(log.exists(), "{} created at start", log.display());
    drop(node);
}

#[test]
fn an_access_log_that_cannot_be_created_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the directory should be: no one can create the log below it.
    std::fs::write(dir.path().join("not-a-dir"), b"").unwrap();
    let mut config = base_config(dir.path());
    config["server"]["accessLog"] = json!(dir.path().join("not-a-dir/access.log"));
    let stderr = refused(dir.path(), &config);
    assert!(stderr.contains("server.accessLog"), "{stderr}");
    assert!(stderr.contains("\"-\" for stdout") && stderr.contains("null to turn the log off"), "{stderr}");
}

/// A second node started by mistake on a port the first serves stops, naming the address: it
/// must not join the first's listen socket and take part of its traffic.
#[test]
fn an_http_port_another_node_listens_on_is_refused_by_address() {
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = Node::start(first_dir.path(), &base_config(first_dir.path()));
    let taken = first.listening["http"][0].as_str().unwrap().to_string();
    let mut config = base_config(second_dir.path());
    config["http"] = json!({ "bind": [{ "address": "127.0.0.1", "port": taken.rsplit_once(':').unwrap().1.parse::<u16>().unwrap() }] });
    config["server"]["workers"] = json!(4);
    let stderr = refused(second_dir.path(), &config);
    assert!(stderr.contains(&format!("cannot listen on {taken}")), "{stderr}");
    assert_eq!(first.resp().cmd(&["PING"]), Reply::Status("PONG".into()), "the first node is untouched");
}

/// Hipache's configs say `"workers": 10` (processes); here they are threads that keep their
/// connections, so more than the cores is worth a warning, and the node still serves.
#[test]
fn more_workers_than_cores_is_warned_about_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let cores = std::thread::available_parallelism().unwrap().get();
    let mut config = base_config(dir.path());
    config["server"]["workers"] = json!(cores + 1);
    let log = dir.path().join("node.log");
    let node = Node::start_logged(dir.path(), &config, &log, &[]);
    let warned = std::fs::read_to_string(&log).unwrap();
    assert!(warned.contains("server.workers is more than the cores"), "{warned}");
    assert_eq!(node.resp().cmd(&["PING"]), Reply::Status("PONG".into()));
}

/// A supervisor may stop a node the moment it reports its listeners: the stop signals are
/// caught from before that line, so the node drains and exits 0 instead of dying of the
/// signal's default action.
#[test]
fn a_node_stopped_right_after_listening_exits_cleanly() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let mut node = Node::start(dir.path(), &base_config(dir.path()));
        let status = node.terminate();
        assert!(status.success(), "{status:?}");
    }
}

#[test]
fn an_unknown_user_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path());
    config["user"] = json!("no-such-user-hipache-raft");
    let stderr = refused(dir.path(), &config);
    assert!(stderr.contains("user: no such user \"no-such-user-hipache-raft\""), "{stderr}");
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Creates (once) a system user for the test; `useradd` comes with Debian's `passwd`.
fn test_user(name: &str) -> (u32, u32) {
    if nix::unistd::User::from_name(name).unwrap().is_none() {
        let status = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
            .status();
        // Another test binary may have created it meanwhile.
        assert!(
            status.is_ok_and(|s| s.success()) || nix::unistd::User::from_name(name).unwrap().is_some(),
            "useradd {name}"
        );
    }
    let user = nix::unistd::User::from_name(name).unwrap().unwrap();
    (user.uid.as_raw(), user.gid.as_raw())
}

/// `Uid:` and `Gid:` of /proc/<pid>/status: real, effective, saved and filesystem ids.
fn ids(pid: u32) -> (Vec<u32>, Vec<u32>) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> Vec<u32> {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().skip(1).map(|n| n.parse().unwrap()).collect()
    };
    (field("Uid:"), field("Gid:"))
}

#[test]
fn root_is_dropped_to_the_configured_user_after_binding() {
    if !is_root() {
        eprintln!(
            "SKIPPED: dropping privileges needs a test run as root (this run has uid {})",
            nix::unistd::Uid::effective()
        );
        return;
    }
    let (uid, gid) = test_user("hipache-raft-test");
    let dir = tempfile::tempdir().unwrap();
    // The temp dir is root's and private; the node's new user must be able to reach its data.
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let log = dir.path().join("logs/access.log");
    let mut config = base_config(dir.path());
    config["user"] = json!("hipache-raft-test");
    config["server"]["accessLog"] = json!(log);
    config["cluster"]["snapshotThreshold"] = json!(20);
    let node = Node::start(dir.path(), &config);
    assert_eq!(ids(node.pid()), (vec![uid; 4], vec![gid; 4]), "every uid and gid of the process");
    let groups = std::fs::read_to_string(format!("/proc/{}/status", node.pid())).unwrap();
    let groups = groups.lines().find(|l| l.starts_with("Groups:")).unwrap().to_owned();
    assert_eq!(
        groups.split_whitespace().skip(1).collect::<Vec<_>>(),
        vec![gid.to_string()],
        "supplementary groups: {groups}"
    );
    // The store keeps working as the new user, snapshots (new files in the data dir) included.
    let mut r = node.resp();
    for i in 0..60 {
        assert_eq!(
            r.cmd(&["RPUSH", "frontend:drop.test", &format!("http://127.0.0.1:{}", 1000 + i)]),
            Reply::Int(i + 1)
        );
    }
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&log).unwrap().uid(), uid, "the access log it reopens on SIGUSR1 is the user's");
    assert_eq!(std::fs::metadata(dir.path().join("data")).unwrap().uid(), uid, "the data dir is the user's");
}

#[test]
fn a_non_root_start_with_another_user_is_refused() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to start the node as an unprivileged user");
        return;
    }
    test_user("hipache-raft-test");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let mut config = base_config(dir.path());
    config["user"] = json!("daemon");
    config["server"]["accessLog"] = Value::Null;
    let path = dir.path().join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    // runuser (util-linux, on every Debian) starts the node as the unprivileged test user.
    let out = Command::new("runuser")
        .args(["-u", "hipache-raft-test", "--"])
        .arg(binary())
        .arg("--config")
        .arg(&path)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("user: cannot switch to \"daemon\": not started as root"), "{stderr}");
}
