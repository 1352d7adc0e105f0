//! Node-local pub/sub fan-out.
//!
//! `PUBLISH` is a replicated log entry; every node delivers it to its own subscribers when it
//! applies the entry (see `raft/state_machine.rs`), so a subscriber on any node sees each
//! message once, in log order. This hub only knows the subscribers of this process.

use std::collections::HashMap;
use std::sync::RwLock;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::keyspace::glob;

/// A message on its way to one subscribed connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Message { channel: Bytes, payload: Bytes },
    PMessage { pattern: Bytes, channel: Bytes, payload: Bytes },
}

pub type ConnId = u64;
pub type Sender = mpsc::UnboundedSender<Message>;

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
                if tx.send(Message::Message { channel: channel.clone(), payload: payload.clone() }).is_ok() {
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
                if tx.send(msg).is_ok() {
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

    #[test]
    fn delivers_to_channel_and_pattern_subscribers() {
        let hub = PubSub::default();
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        hub.subscribe(1, Bytes::from("dead"), tx1, false);
        hub.subscribe(2, Bytes::from("d*"), tx2, true);
        assert_eq!(hub.publish(&Bytes::from("dead"), &Bytes::from("x")), 2);
        assert_eq!(rx1.try_recv().unwrap(), Message::Message { channel: "dead".into(), payload: "x".into() });
        assert!(matches!(rx2.try_recv().unwrap(), Message::PMessage { .. }));
        hub.unsubscribe(1, &Bytes::from("dead"), false);
        assert_eq!(hub.publish(&Bytes::from("dead"), &Bytes::from("y")), 1);
        assert_eq!(hub.counts(), (0, 1));
    }
}
