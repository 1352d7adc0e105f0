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

use common::redis_and_node;
use common::script::{compare, Flags, Script};

#[test]
fn script_replies_match_redis_byte_for_byte() {
    let script = Script::parse("differential.txt", include_str!("data/differential.txt"));
    assert!(script.commands() >= 200, "the issue asks for at least 200 commands, the script has {}", script.commands());

    let (_dir, redis, node) = redis_and_node(&[], |_| {});
    let mismatches = script.run_against(&redis, &node);
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
        format!("*6\r\n$2\r\nid\r\n:{id}\r\n$5\r\nproto\r\n:{proto}\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n")
            .into_bytes()
    };
    assert!(compare(&hello, &hello_reply("5", "2"), &hello_reply("7", "2")).is_none());
    assert!(compare(&hello, &hello_reply("5", "2"), &hello_reply("5", "3")).is_some());
}
