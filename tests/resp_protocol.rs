//! The RESP listener under abuse and at the edges of the protocol: malformed frames, inline
//! commands as `nc` sends them, deep pipelines, `requirepass`, RESP3 push messages. Where
//! Redis 7.0 defines the answer, the same bytes go to a private redis-server and the answers
//! must be identical.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::script::Script;
use common::{base_config, encode_command, fresh_node, redis_and_node, Node, RedisServer, UnixResp};
use hipache_raft::keyspace::command_table;

/// Our default `cluster` bulk limit (the 64 MiB; Redis's is 512 MiB).
const MAX_BULK: usize = 64 * 1024 * 1024;

/// Everything the server sends in answer to `bytes` until it closes the connection; fails if
/// it keeps the connection open (the read times out).
fn until_closed<S: Read + Write>(mut stream: S, bytes: &[u8]) -> Vec<u8> {
    stream.write_all(bytes).unwrap();
    let mut out = Vec::new();
    if let Err(e) = stream.read_to_end(&mut out) {
        panic!(
            "connection still open after {:?}: {e}; got {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(40)]),
            String::from_utf8_lossy(&out)
        );
    }
    out
}

fn tcp(node: &Node) -> TcpStream {
    let s = TcpStream::connect(node.resp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn unix(redis: &RedisServer) -> UnixStream {
    let s = UnixStream::connect(&redis.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

#[test]
fn protocol_errors_close_only_the_offending_connection_as_redis_does() {
    let (_dir, redis, node) = redis_and_node(&[], |_| {});
    let mut bystander = node.resp();
    // No line end: both servers give up once 64 KiB are buffered without one.
    let too_big_inline = vec![b'a'; 70 * 1024];
    let mut too_big_count = b"*".to_vec();
    too_big_count.extend(std::iter::repeat_n(b'1', 70 * 1024));
    let cases: Vec<&[u8]> = vec![
        b"*1\r\n$536870913\r\n", // over Redis's 512 MiB limit and ours
        b"*abc\r\n",
        b"*1\r\nfoo\r\n",
        b"*1\r\n$abc\r\n",
        b"*1\r\n$-1\r\n",
        b"SET \"a b\r\n",
        b"SET 'a b\r\n",
        b"GET \"a\"b\r\n",
        b"PING\r\n*1\r\nfoo\r\n", // the good command is answered first
        &too_big_inline,
        &too_big_count,
    ];
    for case in cases {
        let theirs = until_closed(unix(&redis), case);
        let ours = until_closed(tcp(&node), case);
        assert!(
            ours.starts_with(b"-ERR Protocol error: ") || ours.starts_with(b"+PONG\r\n-ERR Protocol error: "),
            "{ours:?}"
        );
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs),
            "for {:?}",
            String::from_utf8_lossy(&case[..case.len().min(40)])
        );
        assert_eq!(bystander.raw(&["PING"]), b"+PONG\r\n", "the other connection must keep working");
    }
}

#[test]
fn bulk_length_limit_is_64_mib() {
    let (_dir, node) = fresh_node();
    let mut bystander = node.resp();

    let over = format!("*2\r\n$4\r\nECHO\r\n${}\r\n", MAX_BULK + 1);
    assert_eq!(until_closed(tcp(&node), over.as_bytes()), b"-ERR Protocol error: invalid bulk length\r\n");
    assert_eq!(bystander.raw(&["PING"]), b"+PONG\r\n");

    // Exactly at the limit the argument is accepted and echoed back whole.
    let payload = vec![b'x'; MAX_BULK];
    let reply = bystander.raw(&[&b"ECHO"[..], &payload]);
    assert_eq!(reply.len(), format!("${MAX_BULK}\r\n").len() + MAX_BULK + 2);
    assert!(reply.starts_with(format!("${MAX_BULK}\r\n").as_bytes()));
}

#[test]
fn bulk_length_limit_follows_proto_max_bulk_len() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path());
    config["cluster"]["protoMaxBulkLen"] = 4096.into();
    let node = Node::start(dir.path(), &config);
    let over = "*2\r\n$4\r\nECHO\r\n$4097\r\n";
    assert_eq!(until_closed(tcp(&node), over.as_bytes()), b"-ERR Protocol error: invalid bulk length\r\n");
    let at = vec![b'x'; 4096];
    assert_eq!(node.resp().raw(&[&b"ECHO"[..], &at]).len(), "$4096\r\n".len() + 4096 + 2);
}

#[test]
fn inline_commands_as_nc_sends_them() {
    let (_dir, redis, node) = redis_and_node(&[], |_| {});
    let typed =
        b"PING\nSET greeting \"hello world\"\nGET greeting\n\nECHO 'it\\'s'\n  \r\nDEL greeting\r\nGET greeting\n";
    let replies = 6; // blank lines get no reply
    let mut theirs = UnixResp::connect(&redis.socket);
    let mut ours = node.resp();
    theirs.send_raw(typed);
    ours.send_raw(typed);
    for i in 0..replies {
        let (t, o) = (theirs.read_raw(), ours.read_raw());
        assert_eq!(String::from_utf8_lossy(&o), String::from_utf8_lossy(&t), "reply {i}");
    }
    assert_eq!(ours.raw(&["PING"]), b"+PONG\r\n", "no stray reply for the blank lines");
}

#[test]
fn a_thousand_pipelined_commands_in_one_write() {
    let (_dir, node) = fresh_node();
    let mut conn = node.resp();
    let mut batch = Vec::new();
    for i in 0..500 {
        batch.extend(encode_command(&["RPUSH", "pipe", &i.to_string()]));
        batch.extend(encode_command(&["LINDEX", "pipe", "-1"]));
    }
    conn.send_raw(&batch);
    for i in 0..500 {
        assert_eq!(conn.read_raw(), format!(":{}\r\n", i + 1).into_bytes(), "RPUSH #{i}");
        let value = i.to_string();
        assert_eq!(conn.read_raw(), format!("${}\r\n{value}\r\n", value.len()).into_bytes(), "LINDEX #{i}");
    }
    assert_eq!(conn.raw(&["LLEN", "pipe"]), b":500\r\n");
}

#[test]
fn requirepass_answers_like_redis() {
    let (_dir, redis, node) =
        redis_and_node(&["--requirepass", "pw"], |c| c["cluster"]["requirepass"] = serde_json::json!("pw"));
    let script = Script::parse("requirepass.txt", include_str!("data/requirepass.txt"));
    let mismatches = script.run_against(&redis, &node);
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
}

/// Every command but AUTH, HELLO and QUIT, with a valid argument count, gets NOAUTH.
#[test]
fn requirepass_refuses_every_other_command() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path());
    config["cluster"]["requirepass"] = serde_json::json!("pw");
    let node = Node::start(dir.path(), &config);
    let session_commands = [
        ("ping", 1),
        ("echo", 2),
        ("select", 2),
        ("info", 1),
        ("client", 2),
        ("command", 1),
        ("multi", 1),
        ("exec", 1),
        ("discard", 1),
        ("watch", 2),
        ("unwatch", 1),
        ("subscribe", 2),
        ("psubscribe", 2),
        ("unsubscribe", 1),
        ("punsubscribe", 1),
    ];
    let core_commands = command_table().iter().map(|c| (c.name, c.arity));
    let mut conn = node.resp();
    let mut checked = 0;
    for (name, arity) in session_commands.into_iter().chain(core_commands) {
        let mut argv = vec![name];
        argv.resize(arity.unsigned_abs() as usize, "1");
        assert_eq!(String::from_utf8_lossy(&conn.raw(&argv)), "-NOAUTH Authentication required.\r\n", "{argv:?}");
        checked += 1;
    }
    assert!(checked > 60, "only {checked} commands checked");
    assert_eq!(conn.raw(&["AUTH", "pw"]), b"+OK\r\n");
    assert_eq!(conn.raw(&["GET", "1"]), b"$-1\r\n");
}

#[test]
fn resp3_pubsub_uses_push_messages() {
    let (_dir, node) = fresh_node();
    let mut sub = node.resp();
    let mut publisher = node.resp();
    assert!(sub.raw(&["HELLO", "3"]).starts_with(b"%7\r\n"));
    assert_eq!(sub.raw(&["SUBSCRIBE", "news"]), b">3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n");
    assert_eq!(publisher.raw(&["PUBLISH", "news", "hi"]), b":1\r\n");
    assert_eq!(sub.read_raw(), b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n");
    // RESP3 connections may run ordinary commands while subscribed.
    assert_eq!(sub.raw(&["GET", "nokey"]), b"_\r\n");
    assert_eq!(sub.raw(&["PSUBSCRIBE", "n*"]), b">3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:2\r\n");
    assert_eq!(publisher.raw(&["PUBLISH", "news", "yo"]), b":2\r\n");
    assert_eq!(sub.read_raw(), b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nyo\r\n");
    assert_eq!(sub.read_raw(), b">4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nyo\r\n");
    assert_eq!(sub.raw(&["UNSUBSCRIBE", "news"]), b">3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:1\r\n");
    assert_eq!(publisher.raw(&["PUBLISH", "news", "gone"]), b":1\r\n", "the pattern still matches");
}

/// WATCH across two connections, on redis-server and on our node, byte for byte: a key missing
/// at WATCH that another client creates and deletes again aborts the EXEC; one left alone
/// does not.
#[test]
fn watch_of_a_missing_key_aborts_like_redis_when_it_comes_and_goes() {
    let (_dir, redis, node) = redis_and_node(&[], |_| {});
    let scenario = |watcher: &mut dyn FnMut(&[&str]) -> Vec<u8>, other: &mut dyn FnMut(&[&str]) -> Vec<u8>| {
        let mut out = Vec::new();
        for meddle in [true, false] {
            out.push(watcher(&["WATCH", "k"]));
            if meddle {
                out.push(other(&["SET", "k", "v"]));
                out.push(other(&["DEL", "k"]));
            } else {
                out.push(other(&["SET", "unrelated", "v"]));
            }
            out.push(watcher(&["MULTI"]));
            out.push(watcher(&["SET", "k", "mine"]));
            out.push(watcher(&["EXEC"]));
            out.push(watcher(&["DEL", "k"]));
        }
        out
    };
    let (mut a, mut b) = (UnixResp::connect(&redis.socket), UnixResp::connect(&redis.socket));
    let theirs = scenario(&mut |args| a.raw(args), &mut |args| b.raw(args));
    let (mut a, mut b) = (node.resp(), node.resp());
    let ours = scenario(&mut |args| a.raw(args), &mut |args| b.raw(args));
    let show = |v: &[Vec<u8>]| v.iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect::<Vec<_>>();
    assert_eq!(show(&ours), show(&theirs));
    assert_eq!(theirs[5], b"*-1\r\n", "the scenario does abort on Redis");
}
