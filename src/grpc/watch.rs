//! The admin API's `Watch`: a bounded in-memory log of which keys of the routing database (0,
//! or the `driver` URL's) each applied
//! batch changed, so a client can resume from the applied index it last saw. Older positions
//! get a full dump of the current keys first (`snapshot = true`), then live changes.
//!
//! Only key names are kept; an event's value is read from the applied keyspace when the event
//! is sent. So an event is "key K changed at index I, and this is its value now", which is
//! what a watcher converging on the current state needs, and a hot key (a list appended to
//! thousands of times a second) costs no copy of its value per change.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::keyspace::{Entry, Keyspace, Value};
use crate::proto::admin_v1::WatchEvent;
use crate::raft::{now_ms, AppliedState, ApplyListener, Changed, RaftNode};

/// Changed keys kept for resuming watchers; older positions get a full dump instead.
const RETAINED_KEYS: usize = 100_000;
/// Batches a slow watcher may fall behind before its stream ends (it can resume).
const LAGGING: usize = 4096;

/// The keys of the watched database one applied batch changed, each with the index of the
/// entry that changed it.
#[derive(Debug)]
pub struct Batch {
    /// The batch's last index.
    pub index: u64,
    pub keys: Vec<(u64, Bytes)>,
    /// This node replaced its state with a snapshot at `index` (`keys` is empty): the changes
    /// between a live watcher's last event and `index` cannot be sent one by one, so its
    /// stream ends and the watcher resumes, getting a full dump.
    pub reload: bool,
}

struct Retained {
    batches: VecDeque<Arc<Batch>>,
    keys: usize,
    /// Every change after this index is retained.
    complete_after: u64,
}

pub struct ChangeLog {
    node: Arc<RaftNode>,
    /// The database watched: where the routing keys live.
    db: usize,
    retained: Mutex<Retained>,
    live: broadcast::Sender<Arc<Batch>>,
}

/// A watcher's starting point: what to send first, then live batches after `after`.
pub struct Start {
    pub backlog: Vec<WatchEvent>,
    pub after: u64,
    pub live: broadcast::Receiver<Arc<Batch>>,
}

fn event(index: u64, key: &[u8], entry: Option<&Entry>, now: u64, snapshot: bool) -> WatchEvent {
    let live = entry.filter(|e| e.expire_at_ms().is_none_or(|d| d > now));
    let (kind, values): (&str, Vec<Bytes>) = match live.map(|e| &e.value) {
        None => ("", Vec::new()),
        Some(Value::Str(s)) => ("string", vec![Bytes::clone(s)]),
        Some(Value::List(l)) => ("list", l.iter().collect()),
        Some(Value::Set(s)) => ("set", s.iter().cloned().collect()),
        Some(Value::Hash(h)) => ("hash", h.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect()),
    };
    WatchEvent {
        applied_index: index,
        key: String::from_utf8_lossy(key).into_owned(),
        exists: live.is_some(),
        r#type: kind.to_string(),
        values,
        snapshot,
    }
}

impl ChangeLog {
    /// Creates the log and registers it with the node's state machine.
    pub fn attach(node: &Arc<RaftNode>, db: usize) -> Arc<ChangeLog> {
        let log = Arc::new(ChangeLog {
            node: node.clone(),
            db,
            retained: Mutex::new(Retained { batches: VecDeque::new(), keys: 0, complete_after: u64::MAX }),
            live: broadcast::channel(LAGGING).0,
        });
        node.add_apply_listener(log.clone());
        log
    }

    /// Where a watch from `from_index` starts.
    pub fn start(&self, from_index: u64) -> Start {
        let retained = self.retained.lock().unwrap_or_else(|e| e.into_inner());
        let live = self.live.subscribe();
        if from_index >= retained.complete_after {
            let ks = self.node.local();
            let now = now_ms();
            let backlog = retained
                .batches
                .iter()
                .filter(|b| b.index > from_index)
                .flat_map(|b| b.events_after(from_index, &ks, self.db, now))
                .collect();
            let after = retained.batches.back().map_or(from_index, |b| b.index.max(from_index));
            return Start { backlog, after, live };
        }
        drop(retained);
        // Index and keyspace of one batch: the dump is exactly the state after `index`.
        let state = self.node.applied_state();
        Start { backlog: dump(&state.keyspace, self.db, state.index), after: state.index, live }
    }
}

impl Batch {
    /// The events of the changes after `index`, each key with its value in `ks`.
    pub fn events_after(&self, index: u64, ks: &Keyspace, db: usize, now: u64) -> Vec<WatchEvent> {
        let after = self.keys.iter().filter(|(i, _)| *i > index);
        after.map(|(i, k)| event(*i, k, ks.get(db, k), now, false)).collect()
    }
}

fn dump(ks: &Keyspace, watched: usize, index: u64) -> Vec<WatchEvent> {
    let now = now_ms();
    ks.iter()
        .filter(|(db, _, e)| *db == watched && e.expire_at_ms().is_none_or(|d| d > now))
        .map(|(_, key, e)| event(index, key, Some(e), now, true))
        .collect()
}

impl ApplyListener for ChangeLog {
    fn applied(&self, state: &AppliedState, changes: &[Changed], reload: bool) {
        let index = state.index;
        let mut retained = self.retained.lock().unwrap_or_else(|e| e.into_inner());
        if reload {
            // After a snapshot install nothing before `index` can be replayed exactly.
            retained.batches.clear();
            retained.keys = 0;
            retained.complete_after = index;
            let _ = self.live.send(Arc::new(Batch { index, keys: Vec::new(), reload: true }));
            return;
        }
        let keys: Vec<(u64, Bytes)> =
            changes.iter().filter(|c| c.change.db == self.db).map(|c| (c.index, c.change.key.clone())).collect();
        if keys.is_empty() {
            return;
        }
        let batch = Arc::new(Batch { index, keys, reload: false });
        retained.keys += batch.keys.len();
        retained.batches.push_back(batch.clone());
        while retained.keys > RETAINED_KEYS {
            let Some(old) = retained.batches.pop_front() else { break };
            retained.keys -= old.keys.len();
            retained.complete_after = old.index;
        }
        let _ = self.live.send(batch);
    }
}
