//! Differential test: `tests/data/differential.txt` is sent line by line to a private
//! redis-server 7.0 and to our node, and the replies must be byte-identical.
//!
//! Exceptions, each marked on its line in the script (the format is described at its top):
//! INFO is never sent; COMMAND COUNT/DOCS and CLIENT ID compare the reply type only; HELLO
//! masks `id` and `version`; unordered collections (KEYS, SMEMBERS, SDIFF, SCAN) are compared
//! after sorting their elements, because Redis returns them in hash-table order; TTL/PTTL
//! compare within a stated tolerance, because time passes between asking the two servers;
//! CLIENT SETINFO is checked against Redis 7.2's answer, which 7.0 does not have.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{base_config, encode_command, Node, RawConn, RedisServer, Resp, UnixResp};
use hipache_raft::resp::decode::{decode, Limits};
use hipache_raft::resp::encode::parse_reply;
use hipache_raft::routes::Reply;

const SCRIPT: &str = include_str!("data/differential.txt");

/// How one line's replies are compared.
#[derive(Debug, Default)]
struct Flags {
    replies: usize,
    sorted: bool,
    approx: Option<i64>,
    shape: bool,
    hello: bool,
    ours: Option<String>,
}

#[derive(Debug)]
enum Action {
    Send(Vec<Vec<u8>>),
    Read,
    WaitExpired(Vec<u8>),
}

#[derive(Debug)]
struct Step {
    line: usize,
    text: String,
    conn: String,
    flags: Flags,
    action: Action,
}

/// Splits a command like redis-cli does (quotes, escapes), via our inline-command decoder;
/// both servers receive the same multibulk frame, so a splitting bug cannot hide a mismatch.
fn split(command: &str) -> Vec<Vec<u8>> {
    let mut buf = BytesMut::from(format!("{command}\r\n").as_bytes());
    let args = decode(&mut buf, &Limits::default()).expect("script line splits").expect("complete line");
    args.into_iter().map(|a| a.to_vec()).collect()
}

fn parse_flags(spec: &str, line: usize) -> Flags {
    let mut flags = Flags { replies: 1, ..Flags::default() };
    for flag in spec.split(',').filter(|f| !f.is_empty()) {
        match flag.split_once('=') {
            Some(("n", n)) => flags.replies = n.parse().unwrap(),
            Some(("approx", d)) => flags.approx = Some(d.parse().unwrap()),
            Some(("ours", reply)) => flags.ours = Some(format!("{reply}\r\n")),
            None if flag == "sorted" => flags.sorted = true,
            None if flag == "shape" => flags.shape = true,
            None if flag == "hello" => flags.hello = true,
            _ => panic!("differential.txt:{line}: unknown flag {flag:?}"),
        }
    }
    flags
}

fn parse_script(script: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for (i, text) in script.lines().enumerate() {
        let line = i + 1;
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let (head, command) = text.split_once(": ").unwrap_or_else(|| panic!("differential.txt:{line}: no `TAG: `"));
        let (conn, flags) = match head.split_once('[') {
            Some((conn, rest)) => (conn, parse_flags(rest.trim_end_matches(']'), line)),
            None => (head, parse_flags("", line)),
        };
        let action = match command.split_once(' ').unwrap_or((command, "")) {
            ("@read", _) => Action::Read,
            ("@wait-expired", key) => Action::WaitExpired(key.as_bytes().to_vec()),
            _ => Action::Send(split(command)),
        };
        steps.push(Step { line, text: text.to_string(), conn: conn.to_string(), flags, action });
    }
    steps
}

/// One server under test: named connections, opened on first use and after QUIT.
struct Target {
    connect: Box<dyn Fn() -> Box<dyn RawConn>>,
    conns: HashMap<String, Box<dyn RawConn>>,
}

impl Target {
    fn conn(&mut self, tag: &str) -> &mut Box<dyn RawConn> {
        let connect = &self.connect;
        self.conns.entry(tag.to_string()).or_insert_with(|| connect())
    }

    /// Runs one step and returns the replies it produced.
    fn run(&mut self, step: &Step) -> Vec<Vec<u8>> {
        let conn = self.conn(&step.conn);
        match &step.action {
            Action::Read => vec![conn.read_raw()],
            Action::Send(argv) => {
                conn.send_raw(&encode_command(argv));
                let replies = (0..step.flags.replies).map(|_| conn.read_raw()).collect();
                if argv[0].eq_ignore_ascii_case(b"quit") {
                    self.conns.remove(&step.conn);
                }
                replies
            }
            Action::WaitExpired(key) => {
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    conn.send_raw(&encode_command(&[&b"EXISTS"[..], key]));
                    if conn.read_raw() == b":0\r\n" {
                        return Vec::new();
                    }
                    assert!(Instant::now() < deadline, "line {}: key never expired", step.line);
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

fn parse(raw: &[u8]) -> Reply {
    parse_reply(raw).expect("well-formed reply").expect("complete reply").0
}

/// Sorts every array or set made only of bulk strings, at any depth (SCAN's key list).
fn sort_collections(reply: Reply) -> Reply {
    let sort = |items: Vec<Reply>| {
        let mut items: Vec<Reply> = items.into_iter().map(sort_collections).collect();
        if items.iter().all(|i| matches!(i, Reply::Bulk(_))) {
            items.sort_by_key(|i| format!("{i:?}"));
        }
        items
    };
    match reply {
        Reply::Array(items) => Reply::Array(sort(items)),
        Reply::Set(items) => Reply::Set(sort(items)),
        other => other,
    }
}

/// Masks the values that legitimately differ between two servers in a HELLO reply (a map in
/// RESP3, a flat key/value array in RESP2).
fn mask_hello(reply: Reply) -> Reply {
    let masked = |key: &Reply, value: Reply| match key {
        Reply::Bulk(k) if k.as_ref() == b"id" || k.as_ref() == b"version" => Reply::Nil,
        _ => value,
    };
    match reply {
        Reply::Map(pairs) => Reply::Map(pairs.into_iter().map(|(k, v)| (k.clone(), masked(&k, v))).collect()),
        Reply::Array(items) => {
            let mut out: Vec<Reply> = Vec::with_capacity(items.len());
            for item in items {
                let item = match out.last() {
                    Some(key) if out.len() % 2 == 1 => masked(key, item),
                    _ => item,
                };
                out.push(item);
            }
            Reply::Array(out)
        }
        other => other,
    }
}

/// `None` when the replies agree under the step's flags.
fn compare(flags: &Flags, theirs: &[u8], ours: &[u8]) -> Option<&'static str> {
    if theirs == ours {
        return None;
    }
    if theirs.first() != ours.first() {
        return Some("different reply types");
    }
    if flags.shape {
        return None;
    }
    let (theirs, ours) = (parse(theirs), parse(ours));
    let equal = if flags.sorted {
        sort_collections(theirs) == sort_collections(ours)
    } else if flags.hello {
        mask_hello(theirs) == mask_hello(ours)
    } else if let (Some(d), Reply::Int(a), Reply::Int(b)) = (flags.approx, &theirs, &ours) {
        (a - b).abs() <= d
    } else {
        false
    };
    (!equal).then_some("replies differ")
}

#[test]
fn script_replies_match_redis_byte_for_byte() {
    let steps = parse_script(SCRIPT);
    let sent = steps.iter().filter(|s| matches!(s.action, Action::Send(_))).count();
    assert!(sent >= 200, "the issue asks for at least 200 commands, the script has {sent}");

    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let node_dir = dir.path().join("node");
    std::fs::create_dir_all(&node_dir).unwrap();
    let node = Node::start(&node_dir, &base_config(&node_dir));

    let socket = redis.socket.clone();
    let mut reference =
        Target { connect: Box::new(move || Box::new(UnixResp::connect(&socket))), conns: HashMap::new() };
    let addr = node.resp;
    let mut ours = Target { connect: Box::new(move || Box::new(Resp::connect(addr))), conns: HashMap::new() };

    let mut mismatches = Vec::new();
    for step in &steps {
        let our_replies = ours.run(step);
        if let Some(expected) = &step.flags.ours {
            if our_replies != [expected.as_bytes()] {
                mismatches.push(format!(
                    "line {}: {}\n  expected: {expected:?}\n  ours:     {:?}",
                    step.line,
                    step.text,
                    our_replies.iter().map(|r| String::from_utf8_lossy(r)).collect::<Vec<_>>()
                ));
            }
            continue;
        }
        let their_replies = reference.run(step);
        for (theirs, ours) in their_replies.iter().zip(&our_replies) {
            if let Some(why) = compare(&step.flags, theirs, ours) {
                mismatches.push(format!(
                    "line {}: {} ({why})\n  redis: {:?}\n  ours:  {:?}",
                    step.line,
                    step.text,
                    String::from_utf8_lossy(theirs),
                    String::from_utf8_lossy(ours)
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
}

/// The comparison itself must be able to fail: a masked field or a sorted set must not hide
/// a real difference.
#[test]
fn comparison_rejects_real_differences() {
    let exact = Flags { replies: 1, ..Flags::default() };
    assert!(compare(&exact, b":1\r\n", b":2\r\n").is_some());
    assert!(compare(&exact, b"$-1\r\n", b"*-1\r\n").is_some());
    let sorted = Flags { sorted: true, ..Flags::default() };
    assert!(compare(&sorted, b"*2\r\n$1\r\na\r\n$1\r\nb\r\n", b"*2\r\n$1\r\nb\r\n$1\r\na\r\n").is_none());
    assert!(compare(&sorted, b"*2\r\n$1\r\na\r\n$1\r\nb\r\n", b"*2\r\n$1\r\na\r\n$1\r\nc\r\n").is_some());
    let approx = Flags { approx: Some(1), ..Flags::default() };
    assert!(compare(&approx, b":100\r\n", b":99\r\n").is_none());
    assert!(compare(&approx, b":100\r\n", b":97\r\n").is_some());
    let hello = Flags { hello: true, ..Flags::default() };
    let hello_reply = |id: &str, proto: &str| {
        format!("*6\r\n$2\r\nid\r\n:{id}\r\n$5\r\nproto\r\n:{proto}\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n").into_bytes()
    };
    assert!(compare(&hello, &hello_reply("5", "2"), &hello_reply("7", "2")).is_none());
    assert!(compare(&hello, &hello_reply("5", "2"), &hello_reply("5", "3")).is_some());
}
