//! Runs a differential script (format: the top of `tests/data/differential.txt`) against a
//! reference redis-server and our node, and lists every reply that differs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hipache_raft::keyspace::Reply;
use hipache_raft::resp::decode::{decode, Limits};
use hipache_raft::resp::encode::parse_reply;

use super::{encode_command, Node, RawConn, RedisServer, Resp, UnixResp};

/// How one line's replies are compared.
#[derive(Debug, Default)]
pub struct Flags {
    pub replies: usize,
    pub sorted: bool,
    pub approx: Option<i64>,
    pub shape: bool,
    pub hello: bool,
    pub ours: Option<String>,
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
pub fn split(command: &str) -> Vec<Vec<u8>> {
    let mut buf = BytesMut::from(format!("{command}\r\n").as_bytes());
    let args = decode(&mut buf, &Limits::default()).expect("script line splits").expect("complete line");
    args.into_iter().map(|a| a.to_vec()).collect()
}

fn parse_flags(spec: &str, at: &str) -> Flags {
    let mut flags = Flags { replies: 1, ..Flags::default() };
    for flag in spec.split(',').filter(|f| !f.is_empty()) {
        match flag.split_once('=') {
            Some(("n", n)) => flags.replies = n.parse().unwrap(),
            Some(("approx", d)) => flags.approx = Some(d.parse().unwrap()),
            Some(("ours", reply)) => flags.ours = Some(format!("{reply}\r\n")),
            None if flag == "sorted" => flags.sorted = true,
            None if flag == "shape" => flags.shape = true,
            None if flag == "hello" => flags.hello = true,
            _ => panic!("{at}: unknown flag {flag:?}"),
        }
    }
    flags
}

/// A parsed script; `file` names it in messages.
pub struct Script {
    file: &'static str,
    steps: Vec<Step>,
}

impl Script {
    pub fn parse(file: &'static str, script: &str) -> Script {
        let mut steps = Vec::new();
        for (i, text) in script.lines().enumerate() {
            let line = i + 1;
            let text = text.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            let at = format!("{file}:{line}");
            let (head, command) = text.split_once(": ").unwrap_or_else(|| panic!("{at}: no `TAG: `"));
            let (conn, flags) = match head.split_once('[') {
                Some((conn, rest)) => (conn, parse_flags(rest.trim_end_matches(']'), &at)),
                None => (head, parse_flags("", &at)),
            };
            let action = match command.split_once(' ').unwrap_or((command, "")) {
                ("@read", _) => Action::Read,
                ("@wait-expired", key) => Action::WaitExpired(key.as_bytes().to_vec()),
                _ => Action::Send(split(command)),
            };
            steps.push(Step { line, text: text.to_string(), conn: conn.to_string(), flags, action });
        }
        Script { file, steps }
    }

    /// How many commands the script sends.
    pub fn commands(&self) -> usize {
        self.steps.iter().filter(|s| matches!(s.action, Action::Send(_))).count()
    }

    /// Runs the script on `redis` and `node`, each with its own connections.
    pub fn run_against(&self, redis: &RedisServer, node: &Node) -> Vec<String> {
        let socket = redis.socket.clone();
        let mut reference = Target::new(move || Box::new(UnixResp::connect(&socket)));
        let addr = node.resp;
        let mut ours = Target::new(move || Box::new(Resp::connect(addr)));
        self.run(&mut reference, &mut ours)
    }

    /// Runs every step on both servers; returns one message per differing reply, naming the
    /// line and showing both byte strings.
    fn run(&self, reference: &mut Target, ours: &mut Target) -> Vec<String> {
        let mut mismatches = Vec::new();
        let show =
            |replies: &[Vec<u8>]| replies.iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect::<Vec<_>>();
        for step in &self.steps {
            let at = format!("{}:{}: {}", self.file, step.line, step.text);
            let our_replies = ours.run(step);
            if let Some(expected) = &step.flags.ours {
                if our_replies != [expected.as_bytes()] {
                    mismatches.push(format!("{at}\n  expected: {expected:?}\n  ours:     {:?}", show(&our_replies)));
                }
                continue;
            }
            let their_replies = reference.run(step);
            for (theirs, ours) in their_replies.iter().zip(&our_replies) {
                if let Some(why) = compare(&step.flags, theirs, ours) {
                    mismatches.push(format!(
                        "{at} ({why})\n  redis: {:?}\n  ours:  {:?}",
                        String::from_utf8_lossy(theirs),
                        String::from_utf8_lossy(ours)
                    ));
                }
            }
        }
        mismatches
    }
}

/// One server under test: named connections, opened on first use and after QUIT.
struct Target {
    connect: Box<dyn Fn() -> Box<dyn RawConn>>,
    conns: HashMap<String, Box<dyn RawConn>>,
}

impl Target {
    fn new(connect: impl Fn() -> Box<dyn RawConn> + 'static) -> Target {
        Target { connect: Box::new(connect), conns: HashMap::new() }
    }

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
pub fn compare(flags: &Flags, theirs: &[u8], ours: &[u8]) -> Option<&'static str> {
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
