//! The warning at start for an admin listener that other hosts can reach without a password.
//! A listener off loopback is needed, so the test runs in a network namespace of its own,
//! where the wildcard address reaches nothing but that namespace's loopback.

use cluster_tests::net::sandbox;
use cluster_tests::node::{base_config, Node};
use serde_json::json;

const TEST: &str = "an_admin_listener_open_to_other_hosts_without_a_password_is_warned_about";

/// What the node logs when it starts with `cluster` merged into the test config.
fn start_log(cluster: serde_json::Value) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path());
    for (k, v) in cluster.as_object().unwrap() {
        config["cluster"][k] = v.clone();
    }
    let log = dir.path().join("node.log");
    let node = Node::start_logged(dir.path(), &config, &log, &[]);
    drop(node);
    std::fs::read_to_string(&log).unwrap()
}

#[test]
fn an_admin_listener_open_to_other_hosts_without_a_password_is_warned_about() {
    if !sandbox::enter_or_skip(TEST) {
        return;
    }
    let warned = |log: &str, listener: &str| {
        log.lines().any(|l| l.contains("WARN") && l.contains(listener) && l.contains("has no password"))
    };
    let open = start_log(json!({ "resp": "0.0.0.0:0", "grpc": "0.0.0.0:0" }));
    assert!(warned(&open, "cluster.resp is reachable from other hosts"), "{open}");
    assert!(warned(&open, "cluster.grpc is reachable from other hosts"), "{open}");

    let protected = start_log(json!({ "resp": "0.0.0.0:0", "grpc": "0.0.0.0:0",
                                      "requirepass": "s3cret", "secret": "cluster-s3cret" }));
    assert!(!protected.contains("has no password"), "{protected}");

    let loopback = start_log(json!({}));
    assert!(!loopback.contains("has no password"), "{loopback}");
}
