//! Idle backend connections of the fast path, one pool per proxy worker, keyed by backend
//! address, so frontends that share a backend share its connections and a routing change
//! does not drop them. Per worker: the checkout and checkin of every request take this lock,
//! which no other thread contends.
//!
//! Checkout is last-in-first-out: the most recently used connection is the least likely to
//! have been closed by the backend's own keep-alive timeout. A connection the backend did
//! close anyway is noticed by the request that takes it and retried on a new connection
//! (`exchange` in `mod.rs`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::uri::Authority;
use tokio::net::TcpStream;

/// How long an idle connection is kept; below common backend keep-alive timeouts (nginx 75 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

struct Idle {
    stream: TcpStream,
    since: Instant,
}

pub struct Pool {
    /// Keyed by the authority's text: backend URLs are normalised when the routing view parses
    /// them, and hashing bytes is cheaper than `Authority`'s case-insensitive `Hash`/`Eq`.
    idle: Mutex<HashMap<Box<str>, Vec<Idle>, foldhash::fast::RandomState>>,
    /// `server.maxSockets` when `httpKeepAlive` is on, else 0 (never pool).
    max_idle: usize,
}

impl Pool {
    pub fn new(max_idle: usize) -> Pool {
        Pool { idle: Mutex::default(), max_idle }
    }

    /// Whether connections are kept at all (`server.httpKeepAlive`).
    pub fn keeps_alive(&self) -> bool {
        self.max_idle > 0
    }

    pub fn checkout(&self, backend: &Authority) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let conns = idle.get_mut(backend.as_str())?;
        let newest = conns.pop()?;
        if newest.since.elapsed() < IDLE_TIMEOUT {
            return Some(newest.stream);
        }
        // The newest is too old, so all are.
        conns.clear();
        None
    }

    pub fn checkin(&self, backend: &Authority, stream: TcpStream) {
        if self.max_idle == 0 {
            return;
        }
        let since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        match idle.get_mut(backend.as_str()) {
            Some(conns) if conns.len() >= self.max_idle => {}
            Some(conns) => conns.push(Idle { stream, since }),
            None => {
                idle.insert(backend.as_str().into(), vec![Idle { stream, since }]);
            }
        }
    }

    /// Closes connections idle longer than [`IDLE_TIMEOUT`] and forgets backends without any,
    /// so removed backends do not keep sockets or map entries.
    pub fn evict_expired(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|_, conns| {
            conns.retain(|c| c.since.elapsed() < IDLE_TIMEOUT);
            !conns.is_empty()
        });
    }

    #[cfg(test)]
    fn idle(&self, backend: &Authority) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).get(backend.as_str()).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair(listener: &tokio::net::TcpListener) -> TcpStream {
        TcpStream::connect(listener.local_addr().unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn keeps_at_most_max_idle_and_hands_out_the_newest() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let key: Authority = "127.0.0.1:1".parse().unwrap();
        let pool = Pool::new(2);
        let (a, b, c) = (pair(&listener).await, pair(&listener).await, pair(&listener).await);
        let b_port = b.local_addr().unwrap().port();
        pool.checkin(&key, a);
        pool.checkin(&key, b);
        pool.checkin(&key, c);
        assert_eq!(pool.idle(&key), 2);
        assert_eq!(pool.checkout(&key).unwrap().local_addr().unwrap().port(), b_port);
        pool.evict_expired();
        assert_eq!(pool.idle(&key), 1);
        let off = Pool::new(0);
        off.checkin(&key, pair(&listener).await);
        assert!(off.checkout(&key).is_none() && !off.keeps_alive());
    }
}
