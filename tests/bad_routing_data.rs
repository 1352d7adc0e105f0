//! Routing data as careless tools write it, over real sockets: invalid backend URLs, keys
//! that are not UTF-8, a frontend that is not a list, a list of 100,000 backends, `dead:`
//! sets with members that are not indexes. The proxy answers (502 "backend is invalid", the
//! not-found page, or the request routed), never panics, keeps serving every other host, and
//! logs a problem once per change of the key, not once per request.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{base_config, Node};
use hipache_raft::keyspace::Reply;

/// A backend answering `200 ok` on a new connection per request.
fn backend() -> String {
    common::raw_backend(|mut conn| {
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    })
}

/// One request with `Connection: close`; the status line's code.
fn status(addr: SocketAddr, host: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status line: {answer:?}"))
}

#[test]
fn bad_routing_data_is_answered_and_logged_once_per_change() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let node = Node::start_logged(dir.path(), &base_config(dir.path()), &log, &[]);
    let addr: SocketAddr = node.listening["http"][0].as_str().unwrap().parse().unwrap();
    let good = backend();
    let mut r = node.resp();
    r.cmd(&["RPUSH", "frontend:good.test", "good", &good]);

    // Invalid URLs (no scheme, no host, garbage): 502 every time, one log line per change.
    r.cmd(&["RPUSH", "frontend:invalid.test", "bad", "not a url"]);
    for _ in 0..20 {
        assert_eq!(status(addr, "invalid.test"), 502);
    }
    r.cmd(&["LSET", "frontend:invalid.test", "1", "127.0.0.1:8080"]);
    for _ in 0..20 {
        assert_eq!(status(addr, "invalid.test"), 502);
    }
    // Keys and values that are not UTF-8, and a frontend that is a string, not a list.
    r.send_raw(&common::encode_command(&[&b"RPUSH"[..], b"frontend:\xff\xfe.test", b"x", b"http://\xff:1"]));
    assert_eq!(r.read_reply(), Reply::Int(2));
    r.cmd(&["SET", "frontend:string.test", "http://127.0.0.1:1"]);
    assert_eq!(status(addr, "string.test"), 400, "not a list: not a frontend");
    // Dead sets with members that are not indexes, or out of range: ignored, the rest counts.
    r.cmd(&["RPUSH", "frontend:deadjunk.test", "dj", &good]);
    r.cmd(&["SADD", "dead:deadjunk.test", "abc", "-1", "99999999999", "7"]);
    for _ in 0..5 {
        assert_eq!(status(addr, "deadjunk.test"), 200);
    }
    // 100,000 backends in one list, all valid: routed to one of them.
    let mut huge = vec!["RPUSH".to_string(), "frontend:huge.test".into(), "huge".into()];
    huge.extend(std::iter::repeat_n(good.clone(), 100_000));
    assert_eq!(r.cmd(&huge), Reply::Int(100_001));
    for _ in 0..5 {
        assert_eq!(status(addr, "huge.test"), 200);
    }
    // Every other host is still served.
    assert_eq!(status(addr, "good.test"), 200);
    assert_eq!(r.cmd(&["PING"]), Reply::Status("PONG".into()));

    let text = std::fs::read_to_string(&log).unwrap();
    let invalid = text.matches("backend URL is invalid").count();
    assert_eq!(invalid, 2, "once per change of the list, not per request:\n{text}");
    assert_eq!(text.matches("dead set members that are not backend indexes").count(), 1, "{text}");
    assert!(!text.contains("panicked"), "{text}");
}
