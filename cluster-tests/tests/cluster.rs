//! Issue 5's acceptance tests: 3–4 real node processes on loopback.

use std::process::Command;
use std::time::Duration;

use cluster_tests::cluster::{http_get, raft_info, Backend, Cluster};
use cluster_tests::node::{binary, bulk, encode_command, eventually, Resp};
use hipache_raft::keyspace::Reply;
use serde_json::json;

fn lrange(resp: &mut Resp, key: &str) -> Reply {
    resp.cmd(&["LRANGE", key, "0", "-1"])
}

fn readonly(resp: &mut Resp) -> &mut Resp {
    assert_eq!(resp.cmd(&["READONLY"]), Reply::Status("OK".into()));
    resp
}

#[test]
fn follower_write_is_read_linearizably_everywhere_and_wait_counts_replicas() {
    let c = Cluster::start(3, json!({}));
    let leader = c.leader(Duration::from_secs(20)).expect("a leader");
    let follower = c.followers(leader)[0];
    let backend = Backend::start("backend-a");
    let mut f = c.members[follower].resp();
    for m in &c.members {
        assert_eq!(http_get(&m.http(), "www.example.com").0, 400, "not routed yet on node {}", m.id);
    }
    assert_eq!(f.cmd(&["RPUSH", "frontend:www.example.com", "app", &backend.url]), Reply::Int(2));
    assert_eq!(f.cmd(&["WAIT", "2", "1000"]), Reply::Int(2));
    // WAIT 2 means every proxy routes it now: the very next request on each node.
    for m in &c.members {
        assert_eq!(http_get(&m.http(), "www.example.com"), (200, "backend-a".to_string()), "proxy of node {}", m.id);
    }
    // The node that took a write has applied it when it answers (WAIT counts only the others):
    // its own proxy routes the new frontend at once, write after write.
    for i in 0..20 {
        let host = format!("h{i}.example.com");
        assert_eq!(f.cmd(&["RPUSH", &format!("frontend:{host}"), "app", &backend.url]), Reply::Int(2));
        assert_eq!(http_get(&c.members[follower].http(), &host).0, 200, "follower's proxy, write {i}");
        assert_eq!(f.cmd(&["WAIT", "2", "1000"]), Reply::Int(2));
        for m in &c.members {
            assert_eq!(http_get(&m.http(), &host).0, 200, "proxy of node {} after WAIT, write {i}", m.id);
        }
    }
    let expected = Reply::Array(vec![bulk("app"), bulk(&backend.url)]);
    for m in &c.members {
        assert_eq!(lrange(&mut m.resp(), "frontend:www.example.com"), expected, "linearizable read on node {}", m.id);
        // After WAIT 2, every replica has applied it: local reads see it too.
        assert_eq!(
            lrange(readonly(&mut m.resp()), "frontend:www.example.com"),
            expected,
            "local read on node {}",
            m.id
        );
    }
    // A transaction through a follower is one entry: atomic and answered with EXEC's array.
    f.send_raw(b"MULTI\r\nRPUSH t 1\r\nLRANGE t 0 -1\r\nEXEC\r\n");
    assert_eq!(f.read_reply(), Reply::Status("OK".into()));
    assert_eq!(f.read_reply(), Reply::Status("QUEUED".into()));
    assert_eq!(f.read_reply(), Reply::Status("QUEUED".into()));
    assert_eq!(f.read_reply(), Reply::Array(vec![Reply::Int(1), Reply::Array(vec![bulk("1")])]));
    // ROLE shows the Raft view in Redis's shape.
    let Reply::Array(role) = c.members[follower].resp().cmd(&["ROLE"]) else { panic!("ROLE") };
    assert_eq!(role[0], bulk("slave"));
}

#[test]
fn killed_leader_is_replaced_and_catches_up_after_restart() {
    let mut c = Cluster::start(3, json!({}));
    let leader = c.leader(Duration::from_secs(20)).expect("a leader");
    assert_eq!(c.members[leader].resp().cmd(&["RPUSH", "k", "before"]), Reply::Int(1));
    c.kill(leader);
    // Right after the kill a follower still names the dead leader: the write waits out the
    // election and lands, or the client is told to retry; never an ambiguous error.
    let survivor = (leader + 1) % 3;
    let reply = c.members[survivor].resp().cmd(&["RPUSH", "during-election", "x"]);
    assert!(
        matches!(&reply, Reply::Int(1)) || matches!(&reply, Reply::Error(e) if e.starts_with("TRYAGAIN")),
        "write during the election: {reply:?}"
    );
    let new_leader = c.leader(Duration::from_secs(15)).expect("a new leader within a few seconds");
    assert_ne!(new_leader, leader);
    for f in c.followers(new_leader).into_iter().chain([new_leader]) {
        let reply = c.members[f].resp().cmd(&["RPUSH", "k", &format!("after-{f}")]);
        assert!(matches!(reply, Reply::Int(_)), "write through node {} after failover: {reply:?}", f + 1);
    }
    c.restart(leader);
    let mut restarted = c.members[leader].resp();
    let expected = c.members[new_leader].resp().cmd(&["LRANGE", "k", "0", "-1"]);
    let Reply::Array(items) = &expected else { panic!("LRANGE: {expected:?}") };
    assert_eq!(items.len(), 3);
    assert!(
        eventually(Duration::from_secs(15), || lrange(readonly(&mut restarted), "k") == expected),
        "the restarted node catches up from its data dir"
    );
}

#[test]
fn new_node_joins_a_purged_log_by_snapshot_and_is_removed_again() {
    let mut c = Cluster::start(3, json!({ "snapshotThreshold": 50 }));
    let leader = c.leader(Duration::from_secs(20)).expect("a leader");
    let mut l = c.members[leader].resp();
    for i in 0..300 {
        assert_eq!(l.cmd(&["SET", &format!("key:{i}"), &i.to_string()]), Reply::Status("OK".into()));
    }
    assert!(
        eventually(Duration::from_secs(10), || {
            raft_info(&mut l).get("raft_purged_index").and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) > 0
        }),
        "the leader purged its log after a snapshot"
    );
    let fourth = c.add_member();
    let mut n4 = c.members[fourth].resp();
    readonly(&mut n4);
    assert!(
        eventually(Duration::from_secs(10), || n4.cmd(&["DBSIZE"]) == Reply::Int(300)),
        "the new node installed the snapshot: {:?}",
        n4.cmd(&["DBSIZE"])
    );
    assert_eq!(n4.cmd(&["GET", "key:299"]), bulk("299"));
    let voters = raft_info(&mut n4)["raft_members"].clone();
    assert_eq!(voters.split(',').count(), 4, "{voters}");

    let out = Command::new(binary())
        .args(["cluster", "--addr", &c.members[0].grpc(), "remove-node", "--id", "4"])
        .output()
        .unwrap();
    assert!(out.status.success(), "remove-node: {}", String::from_utf8_lossy(&out.stderr));
    let status = Command::new(binary()).args(["cluster", "--addr", &c.members[0].grpc(), "status"]).output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    assert_eq!(status.lines().filter(|l| l.starts_with(|ch: char| ch.is_ascii_digit())).count(), 3, "{status}");
    let reply = c.members[fourth].resp().cmd(&["SET", "x", "y"]);
    assert!(
        matches!(&reply, Reply::Error(e) if e.contains("removed")),
        "a removed node refuses writes and says why: {reply:?} {:?} {status}",
        raft_info(&mut c.members[fourth].resp())
    );
}

#[test]
fn node_with_a_wrong_secret_is_refused() {
    let c = Cluster::start(1, json!({ "secret": "right" }));
    let dir = c.dir.path().join("intruder");
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = cluster_tests::node::base_config(&dir);
    config["cluster"]["nodeId"] = json!(9);
    config["cluster"]["secret"] = json!("wrong");
    config["cluster"]["join"] = json!([c.members[0].grpc()]);
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = Command::new(binary()).arg("--config").arg(&path).current_dir(&dir).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wrong cluster secret"), "the error says why: {stderr}");
    let members = raft_info(&mut c.members[0].resp())["raft_members"].clone();
    assert!(!members.contains("9@"), "{members}");
}

#[test]
fn dead_mark_by_one_proxy_reaches_subscribers_on_another_node() {
    let c = Cluster::start(3, json!({}));
    c.leader(Duration::from_secs(20)).expect("a leader");
    let live = Backend::start("live");
    // A port nothing listens on: connections are refused.
    let refused = format!("http://127.0.0.1:{}", cluster_tests::cluster::free_port());
    let mut admin = c.members[0].resp();
    admin.cmd(&["RPUSH", "frontend:dead.example.com", "app", &refused, &live.url]);
    assert_eq!(admin.cmd(&["WAIT", "2", "1000"]), Reply::Int(2));
    let mut subscriber = c.members[2].resp();
    subscriber.cmd(&["SUBSCRIBE", "dead"]);
    // Random choice: keep asking node 1's proxy until it has picked (and marked) the dead one.
    let mut marked = false;
    for _ in 0..50 {
        assert_eq!(
            http_get(&c.members[0].http(), "dead.example.com"),
            (200, "live".to_string()),
            "retried to the live backend"
        );
        // RESP2 connection: SMEMBERS answers a plain array.
        if c.members[0].resp().cmd(&["SMEMBERS", "dead:dead.example.com"]) == Reply::Array(vec![bulk("0")]) {
            marked = true;
            break;
        }
    }
    assert!(marked, "node 1's proxy marked backend 0 dead");
    assert_eq!(
        subscriber.read_reply(),
        Reply::Array(vec![bulk("message"), bulk("dead"), bulk(&format!("dead.example.com;{refused};0;2"))])
    );
}

#[test]
fn publish_reaches_subscribers_on_every_node_once() {
    let c = Cluster::start(3, json!({}));
    c.leader(Duration::from_secs(20)).expect("a leader");
    let mut subscribers: Vec<Resp> = c.members.iter().map(|m| m.resp()).collect();
    for s in &mut subscribers {
        assert_eq!(s.cmd(&["SUBSCRIBE", "dead"]), Reply::Array(vec![bulk("subscribe"), bulk("dead"), Reply::Int(1)]));
    }
    // Through each node in turn, twice: every subscriber, wherever it is connected, gets
    // every message once, in the order they were published.
    let mut sent = Vec::new();
    for round in 0..2 {
        for (i, m) in c.members.iter().enumerate() {
            let message = format!("www.example.com;http://127.0.0.{}:80;{round};3", i + 1);
            assert_eq!(
                m.resp().cmd(&["PUBLISH", "dead", &message]),
                Reply::Int(1),
                "one subscriber on the node that took it"
            );
            sent.push(message);
        }
    }
    for (n, s) in subscribers.iter_mut().enumerate() {
        for message in &sent {
            assert_eq!(
                s.read_reply(),
                Reply::Array(vec![bulk("message"), bulk("dead"), bulk(message)]),
                "subscriber on node {}",
                n + 1
            );
        }
        // Nothing more was queued for it: a duplicate would arrive before the PING's answer.
        s.send_raw(&cluster_tests::node::encode_command(&["PING"]));
        assert_eq!(
            s.read_reply(),
            Reply::Array(vec![bulk("pong"), bulk("")]),
            "subscriber on node {} got a duplicate",
            n + 1
        );
    }

    // PUBLISH answers how many clients of the node that took it received the message, as in
    // Redis Cluster; not how many the leader, which applied it first, has.
    let leader = c.leader(Duration::from_secs(20)).expect("a leader");
    let follower = c.followers(leader)[0];
    let mut listener = c.members[follower].resp();
    listener.cmd(&["SUBSCRIBE", "counted"]);
    assert_eq!(c.members[follower].resp().cmd(&["PUBLISH", "counted", "m"]), Reply::Int(1));
    assert_eq!(c.members[leader].resp().cmd(&["PUBLISH", "counted", "m"]), Reply::Int(0));
}

#[test]
fn nodes_advertise_configured_names() {
    let c = Cluster::start_with(2, json!({}), true);
    let leader = c.leader(Duration::from_secs(20)).expect("a leader");
    let members = raft_info(&mut c.members[leader].resp())["raft_members"].clone();
    assert_eq!(members.matches("@localhost:").count(), 2, "{members}");
    // Forwarding dials the advertised name.
    let follower = c.followers(leader)[0];
    let mut f = c.members[follower].resp();
    assert_eq!(f.cmd(&["SET", "k", "v"]), Reply::Status("OK".into()));
    assert_eq!(f.cmd(&["WAIT", "1", "2000"]), Reply::Int(1));
}

/// A node's own dead mark lasts only until the replicated state says otherwise: once node 1's
/// mark is applied, a health checker clearing `dead:<host>` through node 2 revives the backend
/// on node 1 for its very next request (docs/compatibility.md, "Dead marks").
#[test]
fn dead_mark_cleared_through_another_node_revives_the_backend_on_the_marking_node() {
    // A TTL far longer than the test, so only the fix can end the mark.
    let c = Cluster::start_configured(3, json!({}), json!({ "deadBackendTTL": 120 }), false);
    c.leader(Duration::from_secs(20)).expect("a leader");
    let (flaky, other) = (Backend::start("flaky"), Backend::start("other"));
    flaky.set_status(502);
    let mut admin = c.members[1].resp();
    admin.cmd(&["RPUSH", "frontend:revive.example.com", "app", &flaky.url, &other.url]);
    assert_eq!(admin.cmd(&["WAIT", "2", "2000"]), Reply::Int(2));
    // Random choice: ask node 1's proxy until it has picked the failing backend once.
    for _ in 0..200 {
        if flaky.hits() > 0 {
            break;
        }
        http_get(&c.members[0].http(), "revive.example.com");
    }
    assert!(flaky.hits() > 0, "node 1's proxy never picked backend 0");
    let marked = eventually(Duration::from_secs(10), || {
        admin.cmd(&["SMEMBERS", "dead:revive.example.com"]) == Reply::Array(vec![bulk("0")])
    });
    assert!(marked, "node 1's mark is replicated");
    let mut local = c.members[0].resp();
    readonly(&mut local);
    let applied_on_1 = eventually(Duration::from_secs(10), || {
        local.cmd(&["SMEMBERS", "dead:revive.example.com"]) == Reply::Array(vec![bulk("0")])
    });
    assert!(applied_on_1, "node 1 applied its own mark");
    flaky.set_status(200);
    // The checker clears the mark through node 2 and, so that the next request has one
    // choice only, marks the other backend instead.
    admin.cmd(&["MULTI"]);
    admin.cmd(&["DEL", "dead:revive.example.com"]);
    admin.cmd(&["SADD", "dead:revive.example.com", "1"]);
    admin.cmd(&["EXPIRE", "dead:revive.example.com", "60"]);
    admin.cmd(&["EXEC"]);
    let cleared_on_1 = eventually(Duration::from_secs(10), || {
        local.cmd(&["SMEMBERS", "dead:revive.example.com"]) == Reply::Array(vec![bulk("1")])
    });
    assert!(cleared_on_1, "node 1 applied the checker's change");
    assert_eq!(http_get(&c.members[0].http(), "revive.example.com"), (200, "flaky".to_string()));
}

/// The README's `cluster add-node` / `status` / `remove-node`, through the real CLI: a fourth
/// node started with an empty data dir and a `--join` target it cannot reach is added from
/// outside, catches up, and is removed again.
#[test]
fn cli_adds_and_removes_a_node_as_the_readme_shows() {
    let mut c = Cluster::start(3, json!({}));
    let leader = c.leader(Duration::from_secs(20)).expect("a leader");
    c.members[leader].resp().cmd(&["RPUSH", "frontend:cli.test", "app", "http://127.0.0.1:9"]);
    let fourth = c.reserve_member();
    let unreachable = format!("127.0.0.1:{}", cluster_tests::cluster::free_port());
    let config = c.config(fourth, vec![unreachable]);
    let dir = c.members[fourth].dir.clone();
    // It prints its listeners only once it is a member: start it on a thread.
    let starting = std::thread::spawn(move || cluster_tests::node::Node::start(&dir, &config));
    let cli = |args: &[&str]| {
        let out = Command::new(binary()).args(["cluster", "--addr", &c.members[0].grpc()]).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (grpc, resp) = (c.members[fourth].grpc(), format!("127.0.0.1:{}", c.members[fourth].resp_port));
    let mut added = String::new();
    for _ in 0..50 {
        let out = Command::new(binary())
            .args([
                "cluster",
                "--addr",
                &c.members[0].grpc(),
                "add-node",
                "--id",
                "4",
                "--grpc",
                &grpc,
                "--resp",
                &resp,
            ])
            .output()
            .unwrap();
        if out.status.success() {
            added = String::from_utf8_lossy(&out.stdout).into_owned();
            break;
        }
        // The node may not be listening on its gRPC port yet.
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(added.contains(&grpc), "add-node printed the new membership: {added}");
    let node4 = starting.join().expect("node 4 started once added");
    let mut n4 = node4.resp();
    readonly(&mut n4);
    assert!(
        eventually(Duration::from_secs(10), || lrange(&mut n4, "frontend:cli.test") != Reply::Array(vec![])),
        "node 4 caught up"
    );
    let status = cli(&["status"]);
    assert_eq!(status.lines().filter(|l| l.starts_with(|ch: char| ch.is_ascii_digit())).count(), 4, "{status}");
    cli(&["remove-node", "--id", "4"]);
    let status = cli(&["status"]);
    assert_eq!(status.lines().filter(|l| l.starts_with(|ch: char| ch.is_ascii_digit())).count(), 3, "{status}");
    drop(node4);
}

/// Several proposals of a node are in flight at once, and batches may reach the log in either
/// order; a client's pipeline must not. Six clients, three on a follower (forwarded) and three
/// on the leader, pipeline RPUSHes to one list concurrently: every value lands once, and each
/// client's values are in the order it sent them.
#[test]
fn concurrent_pipelines_keep_each_clients_order_and_apply_once() {
    const CLIENTS: usize = 6;
    const ROUNDS: usize = 10;
    const PER_ROUND: usize = 200;
    let c = Cluster::start(3, json!({}));
    let leader = c.leader(Duration::from_secs(20)).expect("a leader");
    let follower = c.followers(leader)[0];
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let mut resp = c.members[if client % 2 == 0 { follower } else { leader }].resp();
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    let mut pipeline = Vec::new();
                    for k in 0..PER_ROUND {
                        let value = format!("{client}:{}", round * PER_ROUND + k);
                        pipeline.extend(encode_command(&["RPUSH", "l", &value]));
                    }
                    resp.send_raw(&pipeline);
                    for _ in 0..PER_ROUND {
                        assert!(matches!(resp.read_reply(), Reply::Int(_)), "client {client}");
                    }
                }
            })
        })
        .collect();
    for t in clients {
        t.join().unwrap();
    }
    let Reply::Array(items) = lrange(&mut c.members[leader].resp(), "l") else { panic!("LRANGE l") };
    assert_eq!(items.len(), CLIENTS * ROUNDS * PER_ROUND, "every value once");
    let mut next = [0usize; CLIENTS];
    for item in items {
        let Reply::Bulk(b) = item else { panic!("{item:?}") };
        let (client, n) = std::str::from_utf8(&b).unwrap().split_once(':').unwrap();
        let (client, n): (usize, usize) = (client.parse().unwrap(), n.parse().unwrap());
        assert_eq!(n, next[client], "client {client}'s values out of order or repeated");
        next[client] += 1;
    }
}

/// `cluster remove-node` of the leader, asked of the leader itself: it demotes itself, steps
/// down, and the next leader removes it; the others go on taking writes. (Before, the leader
/// then appended the second membership entry as a non-voter, openraft 0.9 panicked, and the
/// removal answered "raft stopped: panicked".)
#[test]
fn removing_the_leader_through_itself_hands_over_to_the_others() {
    let mut c = Cluster { logs: true, ..Cluster::start_configured(0, json!({}), json!({}), false) };
    for _ in 0..3 {
        c.add_member();
    }
    let leader = c.leader(Duration::from_secs(20)).expect("a leader");
    let id = c.members[leader].id.to_string();
    let out = Command::new(binary())
        .args(["cluster", "--addr", &c.members[leader].grpc(), "remove-node", "--id", &id])
        .output()
        .unwrap();
    assert!(out.status.success(), "remove-node of the leader: {}", String::from_utf8_lossy(&out.stderr));
    let other = c.followers(leader)[0];
    let mut resp = c.members[other].resp();
    assert!(
        eventually(Duration::from_secs(15), || resp.cmd(&["RPUSH", "after", "x"]) == Reply::Int(1)),
        "the remaining nodes took no write"
    );
    let members = raft_info(&mut resp).get("raft_members").cloned().unwrap_or_default();
    assert!(!members.split(',').any(|m| m.starts_with(&format!("{id}@"))), "{members}");
    let log = std::fs::read_to_string(c.members[leader].log_path()).unwrap_or_default();
    assert!(!log.contains("panicked"), "the removed leader panicked: {log}");
}
