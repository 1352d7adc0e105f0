//! The published routing view: one `ArcSwap` of `routing::RoutingView` that request handlers
//! and the TLS resolver read lock-free, kept current by the Raft apply path and by this node's
//! dead marks. Writers serialise on a mutex and publish with one `store`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use bytes::Bytes;
use defer_drop::DeferDrop;

use crate::raft::{AppliedState, ApplyListener, Changed};
use crate::routing::{RoutingKeys, RoutingView};

/// The published view plus its writer lock. Shared by the request handlers, the TLS
/// resolver and the Raft apply path.
#[derive(Default)]
pub struct SharedView {
    current: ArcSwap<RoutingView>,
    writer: Mutex<()>,
    keys: RoutingKeys,
}

impl SharedView {
    pub fn new(keys: RoutingKeys) -> SharedView {
        SharedView { keys, ..SharedView::default() }
    }

    pub fn keys(&self) -> &RoutingKeys {
        &self.keys
    }

    /// Lock-free; the guard avoids a reference-count bump on the hot path.
    pub fn load(&self) -> Guard<Arc<RoutingView>> {
        self.current.load()
    }

    fn update(&self, f: impl FnOnce(&mut RoutingView)) {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = RoutingView::clone(&self.current.load());
        f(&mut next);
        // Freed off the applying thread, as the applied state it reflects (`Applied::publish`).
        drop(DeferDrop::new(self.current.swap(Arc::new(next))));
    }

    /// Adds `idx` to the node-local dead set of `host` for `ttl` (`RoutingView::mark_local`).
    pub fn mark_local(&self, host: &Bytes, idx: usize, ttl: Duration, now_ms: u64) -> bool {
        let mut fresh = false;
        self.update(|view| fresh = view.mark_local(host, idx, ttl, now_ms));
        fresh
    }
}

impl std::fmt::Debug for SharedView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys_in_routing_db = self.load().keyspace.db_stats(self.keys.db).0;
        f.debug_struct("SharedView").field("keys_in_routing_db", &keys_in_routing_db).finish()
    }
}

impl ApplyListener for SharedView {
    fn applied(&self, state: &AppliedState, changes: &[Changed], reload: bool) {
        let changes = changes.iter().map(|c| &c.change);
        self.update(|view| view.apply(&self.keys, &state.keyspace, changes, reload, super::now_ms()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_published_and_coalesced() {
        let shared = SharedView::default();
        let host = Bytes::from("h");
        assert!(shared.mark_local(&host, 0, Duration::from_secs(1), 0));
        assert!(!shared.mark_local(&host, 0, Duration::from_secs(1), 10), "coalesced while fresh");
        assert!(shared.load().is_dead(b"h", 0, 999), "published to readers");
    }
}
