//! Heap bytes per frontend of the replicated state and the routing view, without Raft, its log or
//! the allocator's own overhead: N frontends `frontend:h<i>.test` = [app<i>, two backend URLs],
//! applied as the state machine applies them (1,000 writes per entry), counted by a global
//! allocator that tracks live bytes; then the same keyspace serialized and loaded back, as a
//! restart loads a snapshot. docs/benchmarks.md ("a million frontends") quotes it.
//!
//! Usage: cargo run --release --example heap_per_frontend [N, default 100000]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use hipache_raft::keyspace::{ApplyCtx, Keyspace, NullPublisher};
use hipache_raft::routing::{RoutingKeys, RoutingView};

/// The system allocator, counting the bytes it has handed out and not had back.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Relaxed);
        LIVE.fetch_sub(layout.size(), Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let before = LIVE.load(Relaxed);
    let mut keyspace = Keyspace::new();
    let mut changes = Vec::new();
    for i in 0..n {
        let (a, b, port) = ((i >> 8) & 255, i & 255, 8000 + i % 1000);
        let argv: Vec<Bytes> = [
            "RPUSH".to_string(),
            format!("frontend:h{i}.test"),
            format!("app{i}"),
            format!("http://127.0.{a}.{b}:{port}"),
            format!("http://127.1.{a}.{b}:{}", port + 1000),
        ]
        .into_iter()
        .map(Bytes::from)
        .collect();
        let mut ctx = ApplyCtx { index: (i / 1000) as u64 + 1, now_ms: 1, publisher: &mut NullPublisher };
        keyspace.apply(0, &argv, &mut ctx);
        changes.extend(keyspace.take_changes());
    }
    let keyspace = Arc::new(keyspace);
    let mut view = RoutingView::default();
    view.apply(&RoutingKeys::default(), &keyspace, changes.iter(), false, 1);
    drop(changes);
    let total = LIVE.load(Relaxed) - before;
    println!("{n} frontends: {} heap bytes per frontend (keyspace and routing view)", total / n);

    // The same keyspace loaded from its serialized form, as a restart loads a snapshot.
    let bytes = postcard::to_stdvec(&*keyspace).expect("serialize");
    drop((view, keyspace));
    let before = LIVE.load(Relaxed);
    let loaded: Keyspace = postcard::from_bytes(&bytes).expect("deserialize");
    let total = LIVE.load(Relaxed) - before;
    println!("{n} frontends loaded from a snapshot: {} heap bytes per frontend", total / n);
    drop(loaded);
}
