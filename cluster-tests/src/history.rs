//! The record of a fault-test run: every client operation with its invocation and completion
//! times on one monotonic clock, and every nemesis event, written as JSON lines.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum F {
    /// `RPUSH key value`.
    Append,
    /// `LRANGE key 0 -1`, linearizable (the default for every connection).
    Read,
    /// `LRANGE key 0 -1` on a `READONLY` connection: the node's own replica, which promises
    /// less (see `checker::check_local_reads`).
    LocalRead,
    /// `WATCH` two lists, read them, `MULTI`/`LREM`/`RPUSH`/`EXEC`: an element moved from one
    /// to the other (`crate::transfer`).
    Transfer,
    /// Both transfer lists read in one `MULTI … EXEC`.
    ReadBoth,
}

impl F {
    /// Operations on one list-append key (`checker::check_key`), not transfers.
    pub fn is_list_append(&self) -> bool {
        matches!(self, F::Append | F::Read | F::LocalRead)
    }
}

/// How it ended: `Ok` definitely happened, `Fail` definitely did not, `Info` may have happened
/// (a timeout, a lost connection, an error that does not say) at any time after invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Fail,
    Info,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Op {
    /// Worker process; a worker that got `Info` continues under a new process number.
    pub process: u64,
    /// Index of the node the operation was sent to.
    pub node: usize,
    pub f: F,
    pub key: String,
    /// The appended element (appends only).
    pub value: Option<String>,
    pub inv_ns: u64,
    /// `None` for `Info`: the operation may take effect at any later time.
    pub cmp_ns: Option<u64>,
    pub outcome: Outcome,
    /// The list length an ok `RPUSH` returned.
    pub len: Option<usize>,
    /// The list an ok read returned.
    pub list: Option<Vec<String>>,
    /// The error or reply text of a `Fail` or `Info`.
    pub error: Option<String>,
}

/// A fault applied or healed.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at_ns: u64,
    pub what: String,
}

/// Everything recorded so far; shared by the workers and the nemesis.
#[derive(Clone)]
pub struct History {
    start: Instant,
    inner: Arc<Mutex<Recorded>>,
}

#[derive(Default)]
struct Recorded {
    ops: Vec<Op>,
    events: Vec<Event>,
}

impl Default for History {
    fn default() -> History {
        History { start: Instant::now(), inner: Arc::default() }
    }
}

impl History {
    /// Nanoseconds since the run started, on the monotonic clock every record uses.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn op(&self, op: Op) {
        self.inner.lock().unwrap().ops.push(op);
    }

    pub fn event(&self, what: impl Into<String>) {
        let event = Event { at_ns: self.now(), what: what.into() };
        eprintln!("[nemesis {:>7.3}s] {}", event.at_ns as f64 / 1e9, event.what);
        self.inner.lock().unwrap().events.push(event);
    }

    pub fn ops(&self) -> Vec<Op> {
        self.inner.lock().unwrap().ops.clone()
    }

    pub fn events(&self) -> Vec<Event> {
        self.inner.lock().unwrap().events.clone()
    }

    /// `history.jsonl`: one line per operation and per event, in time order.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let recorded = self.inner.lock().unwrap();
        let mut lines: Vec<(u64, String)> = recorded
            .ops
            .iter()
            .map(|op| (op.inv_ns, serde_json::to_string(op).unwrap_or_default()))
            .chain(recorded.events.iter().map(|e| {
                let line = serde_json::json!({ "process": "nemesis", "at_ns": e.at_ns, "what": e.what });
                (e.at_ns, line.to_string())
            }))
            .collect();
        lines.sort_by_key(|(t, _)| *t);
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for (_, line) in lines {
            writeln!(out, "{line}")?;
        }
        out.flush()
    }
}
