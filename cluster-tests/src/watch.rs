//! Watch streams across the faults: one gRPC `Watch` client per node, resuming after every
//! broken stream from the last index it received, and the checks that each saw every applied
//! change once, in log order, ending on the final values.
//!
//! Every node applies the same log, so the change of key K at index I is the same event on
//! every node. Which changes exist is taken from all watchers together: a change one watcher
//! saw must be in every other watcher's stream that covered its index. A stream covers the
//! indexes after its starting point (its `from_index`, or the index of the dump it began
//! with) up to the last index it received, less that last index, whose batch the stream may
//! have been cut in the middle of (the next stream resumes from just before it).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hipache_raft::proto::admin_v1::admin_client::AdminClient;
use hipache_raft::proto::admin_v1::{WatchEvent, WatchRequest};

/// One event as received.
#[derive(Debug, Clone)]
pub struct Event {
    pub index: u64,
    pub key: String,
    /// The key's value when the node sent the event (list elements; empty when deleted).
    pub values: Vec<String>,
    /// Part of a dump that began the stream.
    pub snapshot: bool,
}

/// One stream: where it started, what it received, how it ended.
#[derive(Debug, Clone, Default)]
pub struct Stream {
    pub from_index: u64,
    pub events: Vec<Event>,
    pub end: Option<String>,
}

/// The watcher threads of a run.
pub struct Watchers {
    stop: Arc<AtomicBool>,
    streams: Vec<Arc<Mutex<Vec<Stream>>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Watchers {
    /// Starts one watcher per gRPC address, each from index 0.
    pub fn start(grpc_addrs: &[String]) -> Watchers {
        let stop = Arc::new(AtomicBool::new(false));
        let streams: Vec<Arc<Mutex<Vec<Stream>>>> = grpc_addrs.iter().map(|_| Arc::default()).collect();
        let threads = grpc_addrs
            .iter()
            .zip(&streams)
            .map(|(addr, streams)| {
                let (addr, streams, stop) = (addr.clone(), streams.clone(), stop.clone());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
                    rt.block_on(watch(addr, streams, stop));
                })
            })
            .collect();
        Watchers { stop, streams, threads }
    }

    /// Waits (at most `within`) until every watcher has received a change of `marker` (the
    /// last write of the run, so a watcher that has it has everything before it), then stops
    /// them and returns each one's streams.
    pub fn finish(self, marker: &str, within: Duration) -> Vec<Vec<Stream>> {
        let deadline = Instant::now() + within;
        let has_marker =
            |s: &Arc<Mutex<Vec<Stream>>>| s.lock().unwrap().iter().any(|st| st.events.iter().any(|e| e.key == marker));
        while Instant::now() < deadline && !self.streams.iter().all(has_marker) {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        self.streams.iter().map(|s| s.lock().unwrap().clone()).collect()
    }
}

async fn watch(addr: String, streams: Arc<Mutex<Vec<Stream>>>, stop: Arc<AtomicBool>) {
    let mut last: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        // Resume from just before the last index received: its batch may have been cut.
        let from_index = last.saturating_sub(1);
        streams.lock().unwrap().push(Stream { from_index, ..Stream::default() });
        let record_end = |why: String| {
            if let Some(s) = streams.lock().unwrap().last_mut() {
                s.end = Some(why);
            }
        };
        let opened = async {
            let mut client = AdminClient::connect(format!("http://{addr}")).await.map_err(|e| e.to_string())?;
            client.watch(WatchRequest { from_index }).await.map(|r| r.into_inner()).map_err(|e| e.to_string())
        };
        let mut stream = match tokio::time::timeout(Duration::from_secs(2), opened).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                record_end(e);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(_) => {
                record_end("no stream within 2 s".into());
                continue;
            }
        };
        loop {
            if stop.load(Ordering::SeqCst) {
                record_end("stopped".into());
                return;
            }
            match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
                Err(_) => continue,
                Ok(Some(Ok(e))) => {
                    last = last.max(e.applied_index);
                    if let Some(s) = streams.lock().unwrap().last_mut() {
                        s.events.push(event(e));
                    }
                }
                Ok(Some(Err(status))) => {
                    record_end(format!("{:?}: {}", status.code(), status.message()));
                    break;
                }
                Ok(None) => {
                    record_end("ended".into());
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn event(e: WatchEvent) -> Event {
    Event {
        index: e.applied_index,
        key: e.key,
        values: e.values.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect(),
        snapshot: e.snapshot,
    }
}

/// The indexes a stream covers: after its start, before the last index it received.
fn covered(s: &Stream) -> Option<(u64, u64)> {
    let start = s.events.iter().filter(|e| e.snapshot).map(|e| e.index).max().unwrap_or(s.from_index).max(s.from_index);
    let last = s.events.iter().map(|e| e.index).max()?;
    (last > start + 1).then_some((start, last - 1))
}

/// Checks every watcher's streams (`watchers[n]` watched node n) against each other and the
/// final lists of the list-append keys; returns what is wrong.
pub fn check(watchers: &[Vec<Stream>], finals: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut changes: HashMap<(u64, &str), usize> = HashMap::new();
    for (n, streams) in watchers.iter().enumerate() {
        for s in streams {
            for e in s.events.iter().filter(|e| !e.snapshot) {
                changes.entry((e.index, e.key.as_str())).or_insert(n);
            }
        }
    }
    for (n, streams) in watchers.iter().enumerate() {
        let node = format!("n{}'s watch", n + 1);
        for (c, s) in streams.iter().enumerate() {
            let where_ = format!("{node}, stream {c} (from {})", s.from_index);
            // Log order, each change once, a dump only first.
            let mut once = HashSet::new();
            let mut live = false;
            for pair in s.events.windows(2) {
                if pair[1].index < pair[0].index {
                    wrong.push(format!("{where_}: index {} after {}", pair[1].index, pair[0].index));
                }
            }
            for e in &s.events {
                if e.snapshot && live {
                    wrong.push(format!("{where_}: a dump event of {} after live events", e.key));
                }
                live |= !e.snapshot;
                if !e.snapshot && !once.insert((e.index, e.key.as_str())) {
                    wrong.push(format!("{where_}: the change of {} at {} twice", e.key, e.index));
                }
                if let Some(last) = finals.get(&e.key) {
                    if !last.starts_with(&e.values) {
                        wrong.push(format!(
                            "{where_}: {} at {} holds {:?}, not a prefix of its final list",
                            e.key, e.index, e.values
                        ));
                    }
                }
            }
            // Every change another watcher saw within this stream's range.
            if let Some((from, to)) = covered(s) {
                let mut missed: Vec<_> =
                    changes.iter().filter(|((i, k), _)| *i > from && *i <= to && !once.contains(&(*i, *k))).collect();
                missed.sort();
                if let Some(((i, k), by)) = missed.first() {
                    wrong.push(format!(
                        "{where_}: missed {} changes in ({from}, {to}], first {k} at {i} (seen by n{})",
                        missed.len(),
                        *by + 1
                    ));
                }
            }
        }
        // Ends on the final values.
        let mut latest: HashMap<&str, &Event> = HashMap::new();
        for e in streams.iter().flat_map(|s| &s.events) {
            latest.insert(e.key.as_str(), e);
        }
        for (key, last) in finals {
            match latest.get(key.as_str()) {
                Some(e) if &e.values == last => {}
                Some(e) => wrong.push(format!(
                    "{node}: last event of {key} holds {} elements, final {}",
                    e.values.len(),
                    last.len()
                )),
                None if last.is_empty() => {}
                None => wrong.push(format!("{node}: no event of {key}")),
            }
        }
    }
    let events: usize = watchers.iter().flatten().map(|s| s.events.len()).sum();
    let streams: usize = watchers.iter().map(Vec::len).sum();
    eprintln!(
        "watch streams: {streams} streams on {} nodes, {events} events, {} distinct changes, {} problems",
        watchers.len(),
        changes.len(),
        wrong.len()
    );
    wrong
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(index: u64, key: &str, values: &[&str]) -> Event {
        Event { index, key: key.into(), values: values.iter().map(|v| v.to_string()).collect(), snapshot: false }
    }

    fn stream(from_index: u64, events: Vec<Event>) -> Stream {
        Stream { from_index, events, end: None }
    }

    fn finals() -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([("k".to_string(), vec!["a".to_string(), "b".to_string()])])
    }

    fn good() -> Vec<Event> {
        vec![ev(1, "k", &["a"]), ev(2, "x", &[]), ev(3, "k", &["a", "b"]), ev(4, "m", &[])]
    }

    #[test]
    fn identical_streams_and_resumed_ones_pass() {
        let resumed = vec![stream(0, good()[..2].to_vec()), stream(1, good()[1..].to_vec())];
        let dump = Event { snapshot: true, ..ev(2, "k", &["a"]) };
        let from_dump = vec![stream(0, vec![dump, ev(3, "k", &["a", "b"]), ev(4, "m", &[])])];
        assert_eq!(check(&[vec![stream(0, good())], resumed, from_dump], &finals()), Vec::<String>::new());
    }

    #[test]
    fn a_missed_change_a_repeat_disorder_and_a_stale_end_fail() {
        let whole = vec![stream(0, good())];
        let missed = vec![stream(0, vec![ev(1, "k", &["a"]), ev(3, "k", &["a", "b"]), ev(4, "m", &[])])];
        let twice = vec![stream(0, [good(), vec![ev(3, "k", &["a", "b"])]].concat())];
        let disorder =
            vec![stream(0, vec![ev(1, "k", &["a"]), ev(3, "k", &["a", "b"]), ev(2, "x", &[]), ev(4, "m", &[])])];
        let stale = vec![stream(0, vec![ev(1, "k", &["a"]), ev(2, "x", &[])])];
        let phantom = vec![stream(0, [good(), vec![ev(5, "k", &["a", "z"])]].concat())];
        for (name, bad) in
            [("missed", missed), ("twice", twice), ("disorder", disorder), ("stale", stale), ("phantom", phantom)]
        {
            let wrong = check(&[whole.clone(), bad], &finals());
            assert!(!wrong.is_empty(), "{name} passed");
            assert!(wrong.iter().all(|w| w.starts_with("n2")), "{name}: {wrong:?}");
        }
    }
}
