//! The README's "Managing routes with redis-cli" walkthrough, executed as written: each
//! `$ redis-cli -p 6380 …` line runs through the real `/usr/bin/redis-cli` against a node and
//! must print exactly the lines the README shows; then the same commands go through redis-py
//! with its default settings (RESP3), formatted as redis-cli would print them.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::fresh_node;
use common::script::split;

const SECTION: &str = "## Managing routes with redis-cli";
const PROMPT: &str = "$ redis-cli -p 6380 ";

struct Step {
    args: Vec<String>,
    expected: String,
}

/// The walkthrough's commands and the output the README shows for each.
fn walkthrough() -> Vec<Step> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let start = readme.find(SECTION).unwrap_or_else(|| panic!("README.md has no {SECTION:?} section"));
    let section = &readme[start + SECTION.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut steps: Vec<Step> = Vec::new();
    let mut in_block = false;
    for line in section.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
        } else if let Some(command) = line.strip_prefix(PROMPT).filter(|_| in_block) {
            let args = split(command).into_iter().map(|a| String::from_utf8(a).unwrap()).collect();
            steps.push(Step { args, expected: String::new() });
        } else if in_block {
            let step = steps.last_mut().expect("output before the first command");
            if !step.expected.is_empty() {
                step.expected.push('\n');
            }
            step.expected.push_str(line);
        }
    }
    steps
}

#[test]
fn readme_walks_through_hipache_routes() {
    let steps = walkthrough();
    let text: Vec<String> = steps.iter().map(|s| s.args.join(" ")).collect();
    for needle in ["rpush frontend:", "lrange frontend:", "frontend:*.example.com", "dead:", "del frontend:"] {
        assert!(text.iter().any(|t| t.contains(needle)), "the walkthrough must show {needle:?}: {text:#?}");
    }
    assert!(steps.iter().all(|s| !s.expected.is_empty()), "every command shows its output");
}

#[test]
fn readme_walkthrough_through_redis_cli() {
    let (_dir, node) = fresh_node();
    let port = node.resp.port().to_string();
    for step in walkthrough() {
        // redis-cli prints the terminal format (`(integer) 1`) only to a tty unless told.
        let out = Command::new("/usr/bin/redis-cli").args(["--no-raw", "-p", &port]).args(&step.args).output().unwrap();
        assert!(out.status.success(), "redis-cli {:?}: {}", step.args, String::from_utf8_lossy(&out.stderr));
        let printed = String::from_utf8(out.stdout).unwrap();
        assert_eq!(printed.trim_end_matches('\n'), step.expected, "redis-cli -p 6380 {}", step.args.join(" "));
    }
}

#[test]
fn readme_walkthrough_through_redis_py_resp3() {
    let (_dir, node) = fresh_node();
    let steps = walkthrough();
    let request = serde_json::json!({
        "port": node.resp.port(),
        "commands": steps.iter().map(|s| &s.args).collect::<Vec<_>>(),
    });
    let mut child = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/readme_walkthrough.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    // No skip when redis-py is missing: CI installs it (.ci/run), so its absence is a failure.
    assert!(out.status.success(), "redis-py walkthrough failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let printed: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    for (step, printed) in steps.iter().zip(&printed) {
        assert_eq!(printed, &step.expected, "redis-py: {}", step.args.join(" "));
    }
    assert_eq!(printed.len(), steps.len());
}
