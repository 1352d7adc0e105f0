//! Node-local pub/sub fan-out.
//!
//! `PUBLISH` is a replicated log entry; every node delivers it to its own subscribers when it
//! applies the entry (see `raft/state_machine.rs`), so a subscriber on any node sees each
//! message once, in log order. This hub only knows the subscribers of this process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::keyspace::glob;

/// A message on its way to one subscribed connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Message {
        channel: Bytes,
        payload: Bytes,
    },
    PMessage {
        pattern: Bytes,
        channel: Bytes,
        payload: Bytes,
    },
    /// The subscriber's queue passed its limit: the connection is to be closed, as Redis
    /// closes a subscriber past `client-output-buffer-limit pubsub`.
    Overflowed,
}

impl Message {
    /// What it holds in a subscriber's queue, for the queue's limit.
    fn size(&self) -> usize {
        match self {
            Message::Message { channel, payload } => channel.len() + payload.len(),
            Message::PMessage { pattern, channel, payload } => pattern.len() + channel.len() + payload.len(),
            Message::Overflowed => 0,
        }
    }
}

pub type ConnId = u64;

/// A subscriber's queue: messages wait in it while the connection writes earlier ones, so a
/// subscriber that reads slower than messages come would hold them all. Past `limit` bytes
/// the queue takes no more and tells the connection to close (Redis's default for pub/sub
/// clients is a hard 32 MB).
pub fn queue(limit: usize) -> (Sender, Receiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (Sender { tx, queued: queued.clone(), limit }, Receiver { rx, queued })
}

#[derive(Clone, Debug)]
pub struct Sender {
    tx: mpsc::UnboundedSender<Message>,
    queued: Arc<AtomicUsize>,
    limit: usize,
}

impl Sender {
    /// Queues `msg`; false when the subscriber is gone or past its limit.
    fn send(&self, msg: Message) -> bool {
        let size = msg.size();
        let before = self.queued.fetch_add(size, Ordering::AcqRel);
        if before + size > self.limit {
            // Only the message that crosses the limit says so; the count stays above it, so
            // every later one is refused until the connection is gone.
            if before <= self.limit {
                let _ = self.tx.send(Message::Overflowed);
            }
            return false;
        }
        self.tx.send(msg).is_ok()
    }
}

pub struct Receiver {
    rx: mpsc::UnboundedReceiver<Message>,
    queued: Arc<AtomicUsize>,
}

impl Receiver {
    pub async fn recv(&mut self) -> Option<Message> {
        let msg = self.rx.recv().await?;
        self.queued.fetch_sub(msg.size(), Ordering::AcqRel);
        Some(msg)
    }
}

#[derive(Default)]
struct Subscribers {
    channels: HashMap<Bytes, HashMap<ConnId, Sender>>,
    patterns: HashMap<Bytes, HashMap<ConnId, Sender>>,
}

#[derive(Default)]
pub struct PubSub {
    subs: RwLock<Subscribers>,
}

impl PubSub {
    /// Delivers to every subscriber of `channel` and every matching pattern; returns how many
    /// receivers got it (Redis's PUBLISH reply).
    pub fn publish(&self, channel: &Bytes, payload: &Bytes) -> i64 {
        let subs = self.subs.read().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        if let Some(conns) = subs.channels.get(channel) {
            for tx in conns.values() {
                if tx.send(Message::Message { channel: channel.clone(), payload: payload.clone() }) {
                    n += 1;
                }
            }
        }
        for (pattern, conns) in &subs.patterns {
            if !glob::matches(pattern, channel) {
                continue;
            }
            for tx in conns.values() {
                let msg =
                    Message::PMessage { pattern: pattern.clone(), channel: channel.clone(), payload: payload.clone() };
                if tx.send(msg) {
                    n += 1;
                }
            }
        }
        n
    }

    pub fn subscribe(&self, conn: ConnId, channel: Bytes, tx: Sender, pattern: bool) {
        let mut subs = self.subs.write().unwrap_or_else(|e| e.into_inner());
        let map = if pattern { &mut subs.patterns } else { &mut subs.channels };
        map.entry(channel).or_default().insert(conn, tx);
    }

    pub fn unsubscribe(&self, conn: ConnId, channel: &Bytes, pattern: bool) {
        let mut subs = self.subs.write().unwrap_or_else(|e| e.into_inner());
        let map = if pattern { &mut subs.patterns } else { &mut subs.channels };
        if let Some(conns) = map.get_mut(channel) {
            conns.remove(&conn);
            if conns.is_empty() {
                map.remove(channel);
            }
        }
    }

    /// Number of channels and patterns with at least one subscriber (INFO).
    pub fn counts(&self) -> (usize, usize) {
        let subs = self.subs.read().unwrap_or_else(|e| e.into_inner());
        (subs.channels.len(), subs.patterns.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(rx: &mut Receiver) -> Message {
        let m = rx.rx.try_recv().expect("a queued message");
        rx.queued.fetch_sub(m.size(), Ordering::AcqRel);
        m
    }

    #[test]
    fn delivers_to_channel_and_pattern_subscribers() {
        let hub = PubSub::default();
        let (tx1, mut rx1) = queue(1024);
        let (tx2, mut rx2) = queue(1024);
        hub.subscribe(1, Bytes::from("dead"), tx1, false);
        hub.subscribe(2, Bytes::from("d*"), tx2, true);
        assert_eq!(hub.publish(&Bytes::from("dead"), &Bytes::from("x")), 2);
        assert_eq!(next(&mut rx1), Message::Message { channel: "dead".into(), payload: "x".into() });
        assert!(matches!(next(&mut rx2), Message::PMessage { .. }));
        hub.unsubscribe(1, &Bytes::from("dead"), false);
        assert_eq!(hub.publish(&Bytes::from("dead"), &Bytes::from("y")), 1);
        assert_eq!(hub.counts(), (0, 1));
    }

    /// A subscriber that does not keep up is told once to close, and queues nothing more.
    #[test]
    fn a_queue_past_its_limit_overflows_once() {
        let hub = PubSub::default();
        let (tx, mut rx) = queue(10);
        hub.subscribe(1, Bytes::from("c"), tx, false);
        let payload = Bytes::from("1234");
        assert_eq!(hub.publish(&Bytes::from("c"), &payload), 1, "5 bytes queued");
        assert_eq!(hub.publish(&Bytes::from("c"), &payload), 1, "10 bytes queued: at the limit");
        assert_eq!(next(&mut rx), Message::Message { channel: "c".into(), payload: payload.clone() });
        assert_eq!(hub.publish(&Bytes::from("c"), &payload), 1, "read one: room again");
        assert_eq!(hub.publish(&Bytes::from("c"), &payload), 0, "past the limit");
        assert_eq!(hub.publish(&Bytes::from("c"), &payload), 0);
        let rest: Vec<Message> = std::iter::from_fn(|| rx.rx.try_recv().ok()).collect();
        assert_eq!(rest.len(), 3, "{rest:?}");
        assert_eq!(rest[2], Message::Overflowed, "once, after what was queued");
    }
}
