//! Pipelines are batches: the commands a client sent without waiting are answered exactly as if
//! sent one at a time (and as redis-server answers them), while their writes reach the Raft log
//! together instead of one round each.

mod common;

use common::{encode_command, fresh_node, redis_and_node, RawConn, Resp};
use hipache_raft::keyspace::Reply;

/// A fixed pseudo-random mix of writes, reads, errors, SELECT, MULTI/EXEC and WATCH.
fn script() -> Vec<Vec<String>> {
    let mut seed: u64 = 0x5eed_1234_abcd_0001;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let mut out: Vec<Vec<String>> = Vec::new();
    let cmd = |parts: &[&str]| parts.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for i in 0..600 {
        let k = format!("frontend:h{}.test", next(5));
        let v = format!("http://127.0.0.{}:{}", next(200) + 1, 8000 + i);
        let c = match next(22) {
            0..=5 => cmd(&["RPUSH", &k, &v]),
            6 => cmd(&["LPUSH", &k, &v, "extra"]),
            7 => cmd(&["LRANGE", &k, "0", "-1"]),
            8 => cmd(&["LPOP", &k]),
            9 => cmd(&["LREM", &k, "0", &v]),
            10 => cmd(&["DEL", &k, "dead:h1.test"]),
            11 => cmd(&["SADD", "dead:h1.test", &next(4).to_string()]),
            12 => cmd(&["SCARD", "dead:h1.test"]),
            13 => cmd(&["INCR", "counter"]),
            14 => cmd(&["SET", "hchecker_ping", &next(1000).to_string()]),
            15 => cmd(&["LLEN", "hchecker_ping"]),
            16 => cmd(&["SELECT", &next(2).to_string()]),
            17 => cmd(&["NOSUCHCOMMAND", &k]),
            18 => cmd(&["RPUSH", &k]),
            19 => cmd(&["EXISTS", &k, "counter"]),
            20 => cmd(&["HSET", "tls:h.test", "certificate", &v]),
            _ => cmd(&["LINDEX", &k, "1"]),
        };
        out.push(c);
        if i % 97 == 0 {
            for c in [
                cmd(&["MULTI"]),
                cmd(&["RPUSH", &k, "in-multi"]),
                cmd(&["INCR", "counter"]),
                cmd(&["LLEN", &k]),
                cmd(&["EXEC"]),
            ] {
                out.push(c);
            }
        }
        if i % 131 == 0 {
            // An EXEC aborted by a write of the same pipeline between WATCH and EXEC.
            for c in [
                cmd(&["WATCH", "counter"]),
                cmd(&["INCR", "counter"]),
                cmd(&["MULTI"]),
                cmd(&["GET", "counter"]),
                cmd(&["EXEC"]),
            ] {
                out.push(c);
            }
        }
    }
    out
}

fn pipelined(conn: &mut impl RawConn, commands: &[Vec<String>]) -> Vec<Vec<u8>> {
    let bytes: Vec<u8> = commands.iter().flat_map(|c| encode_command(c)).collect();
    conn.send_raw(&bytes);
    commands.iter().map(|_| conn.read_raw()).collect()
}

fn one_at_a_time(conn: &mut impl RawConn, commands: &[Vec<String>]) -> Vec<Vec<u8>> {
    commands
        .iter()
        .map(|c| {
            conn.send_raw(&encode_command(c));
            conn.read_raw()
        })
        .collect()
}

#[test]
fn a_pipeline_is_answered_as_one_command_at_a_time_and_as_redis_does() {
    let commands = script();
    let (_dir, redis, node) = redis_and_node(&[], |_| {});
    let (_dir2, other) = fresh_node();
    let ours = pipelined(&mut node.resp(), &commands);
    let single = one_at_a_time(&mut other.resp(), &commands);
    let theirs = pipelined(&mut Resp::connect_unix(&redis.socket), &commands);
    for (i, c) in commands.iter().enumerate() {
        let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        assert_eq!(show(&ours[i]), show(&single[i]), "command {i} {c:?}: pipelined vs one at a time");
        assert_eq!(show(&ours[i]), show(&theirs[i]), "command {i} {c:?}: hipache-raft vs redis-server");
    }
}

fn applied_index(r: &mut Resp) -> u64 {
    let Reply::Bulk(info) = r.cmd(&["INFO", "raft"]) else { panic!("INFO raft") };
    let info = String::from_utf8_lossy(&info).into_owned();
    let line = info.lines().find(|l| l.starts_with("raft_applied_index:")).expect("raft_applied_index");
    line["raft_applied_index:".len()..].trim().parse().unwrap()
}

/// What go-redis met: 1,000 pipelined RPUSH each waited for its own Raft round (seconds in
/// all), past the client's read timeout. Now they take one entry.
#[test]
fn a_pipeline_of_a_thousand_writes_is_one_log_entry() {
    let (_dir, node) = fresh_node();
    let mut r = node.resp();
    let before = applied_index(&mut r);
    let commands: Vec<Vec<String>> = (0..1000)
        .map(|i| vec!["RPUSH".into(), "frontend:bulk.test".into(), format!("http://127.0.0.1:{}", 10_000 + i)])
        .collect();
    let replies = pipelined(&mut r, &commands);
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply, format!(":{}\r\n", i + 1).as_bytes(), "reply {i} in order");
    }
    let entries = applied_index(&mut r) - before;
    // One entry per chunk the socket delivered; one Raft round per write before.
    assert!(entries <= 10, "1,000 pipelined writes took {entries} log entries");
    assert_eq!(r.cmd(&["LLEN", "frontend:bulk.test"]), Reply::Int(1000));
}
