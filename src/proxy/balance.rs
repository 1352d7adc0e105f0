//! Spreads client connections over the proxy workers by how many each serves.
//!
//! All workers wait on the same listen sockets, and whichever is free takes the next
//! connection; left at that, one worker can take a whole burst of new connections (wrk opening
//! 64 at once all landed on one of two workers). So the worker that accepts a connection hands
//! it to the worker with the fewest open connections when that is fewer than its own: one
//! channel send per connection, never per request. (`SO_REUSEPORT` spreads connections by a
//! hash of their addresses instead; measured, the worker that drew more set a worse p99,
//! docs/benchmarks.md.)

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_rustls::TlsAcceptor;

/// An accepted connection on its way to the worker that will serve it.
pub struct Incoming {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    /// The listener it came in on: its port and TLS acceptor.
    pub port: u16,
    pub tls: Option<TlsAcceptor>,
    /// Its place under `server.maxConnections`.
    pub permit: OwnedSemaphorePermit,
    /// Counted for the worker it goes to from the moment it was picked, so the next pick,
    /// maybe on another thread before that worker runs, already sees it.
    pub open: Open,
}

/// The workers' open-connection counts and hand-off channels.
pub struct Balance {
    /// Padded: each worker updates its own count on every connection; they must not share a
    /// cache line.
    open: Box<[CachePadded<AtomicUsize>]>,
    handoff: Box<[mpsc::UnboundedSender<Incoming>]>,
}

impl Balance {
    /// The balance of `workers` workers, and each worker's receiving end.
    pub fn new(workers: usize) -> (Arc<Balance>, Vec<mpsc::UnboundedReceiver<Incoming>>) {
        let (handoff, receivers) = (0..workers).map(|_| mpsc::unbounded_channel()).unzip::<_, _, Vec<_>, _>();
        let open = (0..workers).map(|_| CachePadded::new(AtomicUsize::new(0))).collect();
        (Arc::new(Balance { open, handoff: handoff.into() }), receivers)
    }

    /// Which worker should serve a connection that worker `accepted` took: the one with the
    /// fewest open connections, unless that is no fewer than `accepted`'s own. The caller
    /// counts it there at once ([`Balance::open`]).
    pub fn pick(&self, accepted: usize) -> usize {
        let count = |w: usize| self.open[w].load(Ordering::Relaxed);
        let (least, fewest) =
            (0..self.open.len()).map(|w| (w, count(w))).min_by_key(|&(_, n)| n).unwrap_or((accepted, 0));
        if fewest < count(accepted) {
            least
        } else {
            accepted
        }
    }

    /// Sends `incoming` to worker `to`; gives it back when that worker has stopped.
    pub fn hand_off(&self, to: usize, incoming: Incoming) -> Result<(), Incoming> {
        self.handoff[to].send(incoming).map_err(|e| e.0)
    }

    /// Counts a connection worker `worker` serves, until the guard drops.
    pub fn open(self: &Arc<Self>, worker: usize) -> Open {
        self.open[worker].fetch_add(1, Ordering::Relaxed);
        Open { balance: self.clone(), worker }
    }
}

/// One open connection of a worker.
pub struct Open {
    balance: Arc<Balance>,
    worker: usize,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.balance.open[self.worker].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_goes_to_the_worker_with_the_fewest_unless_the_acceptor_is_one_of_them() {
        let (balance, _rx) = Balance::new(3);
        assert_eq!(balance.pick(1), 1, "all idle: the acceptor keeps it");
        let first = balance.open(1);
        assert_eq!(balance.pick(1), 0, "worker 0 has fewer");
        let _second = balance.open(0);
        assert_eq!(balance.pick(1), 2);
        let _third = balance.open(2);
        assert_eq!(balance.pick(2), 2, "a tie keeps it where it was accepted");
        let _fourth = balance.open(2);
        assert_eq!(balance.pick(2), 0);
        drop(first);
        assert_eq!(balance.pick(0), 1, "a closed connection frees its worker's place");
    }
}
