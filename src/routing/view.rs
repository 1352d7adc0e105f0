//! The routing view: everything a request (or a TLS handshake) reads, built from the keyspace
//! and published whole (the proxy's `SharedView` holds it behind ONE `ArcSwap`).
//!
//! Why whole: frontends, dead marks and certificates must be seen together (two swaps
//! updated apart let a reader see a frontend with another state's dead marks; Pingora's
//! authors describe that mistake in their own design notes). Why persistent maps: the
//! view is republished after every applied Raft batch, and the scale target is 1,000,000
//! frontends, so an update must cost O(changed keys) — `imbl` maps share structure, so
//! cloning the view is O(1) and each changed key is O(log n).
//!
//! Exact-host frontends, nearly all of them, are not copied here: the view holds the applied
//! keyspace it was built from (an O(1) clone of the same state) and a lookup reads
//! `frontend:<host>` from it. A copy per frontend doubled the memory at a million frontends.
//! Wildcards and the catch-all are kept here, so a host that matches no exact key probes only
//! the wildcard suffixes that exist.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls::sign::CertifiedKey;

use super::backend::Frontend;
use super::certs;
use super::host::{Candidate, Host};
use super::keys::{RoutingKeys, HCHECKER_PING};
use crate::keyspace::{Change, Entry, Keyspace, Value};

pub type Map<V> = imbl::GenericHashMap<Bytes, V, foldhash::fast::RandomState, imbl::shared_ptr::DefaultSharedPtr>;

/// Dead backend indexes of one request host, with the deadline of the whole set (the
/// `EXPIRE` on `dead:<host>` covers every member, §2.3).
#[derive(Debug, Clone, PartialEq)]
pub struct DeadSet {
    pub members: Box<[u32]>,
    pub expire_at_ms: Option<u64>,
}

impl DeadSet {
    fn contains(&self, idx: usize, now_ms: u64) -> bool {
        self.expire_at_ms.is_none_or(|t| t > now_ms) && self.members.iter().any(|&m| m as usize == idx)
    }
}

#[derive(Clone, Default)]
pub struct RoutingView {
    /// The applied state this view reflects; exact-host frontends are read from it.
    pub(crate) keyspace: Arc<Keyspace>,
    /// Where the routing keys live in `keyspace`.
    pub(crate) keys: RoutingKeys,
    /// `frontend:*.<suffix>` by suffix, so a lookup probes with a slice of the request host.
    pub(crate) wildcard: Map<Frontend>,
    /// `frontend:*`.
    pub(crate) catch_all: Option<Frontend>,
    /// Replicated `dead:<request-host>` sets.
    pub(crate) dead: Map<DeadSet>,
    /// Node-local marks, visible before (or without) the Raft write: the next request on
    /// this node must already skip a backend that just failed (§9.3).
    pub(crate) local_dead: Map<DeadSet>,
    /// `tls:<servername>` and `tls:*.<parent>` certificates, parsed once.
    pub(crate) certs: Map<Arc<CertifiedKey>>,
    /// `hchecker_ping` (unix seconds) and its key deadline.
    pub(crate) hchecker_ping: Option<(u64, Option<u64>)>,
}

/// How long an `hchecker_ping` keeps passive checks off (§1.3).
const HCHECKER_FRESH_S: u64 = 30;

impl RoutingView {
    /// `frontend:<host>` as stored: `None` unless it is a (non-empty) list.
    pub(crate) fn exact(&self, host: &[u8]) -> Option<Frontend> {
        self.keys.with_frontend_key(host, |key| match self.keyspace.get(self.keys.db, key) {
            Some(e) => match &e.value {
                Value::List(list) => Frontend::from_list(list.clone(), e.expire_at_ms(), e.version),
                _ => None,
            },
            None => None,
        })
    }

    /// Whether `idx` of `host`'s list is marked dead, replicated or locally.
    pub fn is_dead(&self, host: &[u8], idx: usize, now_ms: u64) -> bool {
        let check = |m: &Map<DeadSet>| m.get(host).is_some_and(|d| d.contains(idx, now_ms));
        (!self.dead.is_empty() && check(&self.dead)) || (!self.local_dead.is_empty() && check(&self.local_dead))
    }

    /// An external health checker wrote `hchecker_ping` in the last 30 s: it owns `dead:*`,
    /// so we only publish (Hipache's rule, §2.3.4).
    pub fn hchecker_active(&self, now_ms: u64) -> bool {
        match self.hchecker_ping {
            Some((ping_s, expire)) => {
                expire.is_none_or(|t| t > now_ms) && (now_ms / 1000).saturating_sub(ping_s) <= HCHECKER_FRESH_S
            }
            None => false,
        }
    }

    /// The certificate for an SNI name: exact `tls:<name>`, then `tls:*.<parent>`.
    pub fn cert_for(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        if self.certs.is_empty() {
            return None;
        }
        if let Some(c) = self.certs.get(server_name.as_bytes()) {
            return Some(c.clone());
        }
        let (_, parent) = server_name.split_once('.')?;
        self.certs.get(format!("*.{parent}").as_bytes()).cloned()
    }

    /// Applies one key of the routing database as it now is (`None`: deleted or not a routing
    /// key's type). A change to a host's `frontend:` list or `dead:` set also drops that host's
    /// node-local marks: the replicated keys are the truth, a local mark only bridges the time
    /// until this node's own `SADD` of the same mark is applied (which is itself such a change).
    /// Brings the view in step with `key`, whose entry `entry` looks up: only when the view
    /// keeps something for that key. An exact-host frontend, nearly every change, is read
    /// from the keyspace by requests, so it costs no lookup here (a bulk load of a million
    /// frontends applies a million changes).
    fn set<'e>(&mut self, keys: &RoutingKeys, key: &[u8], entry: impl FnOnce() -> Option<&'e Entry>) {
        let entry = || entry().map_or((None, None, 0), |e| (Some(&e.value), e.expire_at_ms(), e.version));
        if key == HCHECKER_PING {
            let (value, expire_at_ms, _) = entry();
            self.hchecker_ping = match value {
                Some(Value::Str(s)) => {
                    std::str::from_utf8(s).ok().and_then(|s| s.trim().parse().ok()).map(|p| (p, expire_at_ms))
                }
                _ => None,
            };
            return;
        }
        if let Some(name) = keys.frontend_name(key) {
            let frontend = || match entry() {
                (Some(Value::List(list)), expire_at_ms, version) => {
                    Frontend::from_list(list.clone(), expire_at_ms, version)
                }
                _ => None,
            };
            match Candidate::of_key(name) {
                Candidate::CatchAll => {
                    self.catch_all = frontend();
                    self.local_dead = Map::default();
                }
                Candidate::Wildcard(suffix) => {
                    if !self.local_dead.is_empty() {
                        self.local_dead.retain(|host, _| !routed_by_wildcard(host, suffix));
                    }
                    set_or_remove(&mut self.wildcard, Bytes::copy_from_slice(suffix), frontend())
                }
                Candidate::Exact(_) => {
                    self.local_dead.remove(name);
                }
            }
        } else if let Some(host) = keys.dead_host(key) {
            let dead = match entry() {
                (Some(Value::Set(members)), expire_at_ms, _) => {
                    let indexes: Box<[u32]> =
                        members.iter().filter_map(|m| std::str::from_utf8(m).ok()?.parse().ok()).collect();
                    if indexes.len() < members.len() {
                        // Once per change of the set; the members that are indexes still count.
                        tracing::warn!(
                            key = %String::from_utf8_lossy(key),
                            ignored = members.len() - indexes.len(),
                            "dead set members that are not backend indexes are ignored"
                        );
                    }
                    Some(DeadSet { members: indexes, expire_at_ms })
                }
                _ => None,
            };
            self.local_dead.remove(host);
            set_or_remove(&mut self.dead, Bytes::copy_from_slice(host), dead);
        } else if let Some(name) = keys.tls_name(key) {
            let name = std::str::from_utf8(name).unwrap_or_default().to_ascii_lowercase();
            let cert = match entry().0 {
                Some(Value::Hash(fields)) => match certs::certified_key_from_hash(&**fields) {
                    Ok(c) => Some(Arc::new(c)),
                    Err(e) => {
                        // Skipped, never fatal: other names keep their handshakes.
                        tracing::warn!(key = %String::from_utf8_lossy(key), error = %e, "ignoring unusable TLS certificate");
                        None
                    }
                },
                _ => None,
            };
            set_or_remove(&mut self.certs, Bytes::from(name), cert);
        }
    }

    /// Adds `idx` to the node-local dead set of `host` for `ttl`. Returns false when it was
    /// already marked and fresh: repeated failures of one backend coalesce into one Raft write.
    pub fn mark_local(&mut self, host: &Bytes, idx: usize, ttl: Duration, now_ms: u64) -> bool {
        // Marked already, locally or in the replicated set (this node's own mark, applied,
        // has replaced the local one): nothing new to say.
        if self.is_dead(host, idx, now_ms) {
            return false;
        }
        let deadline = now_ms + ttl.as_millis() as u64;
        // Like `EXPIRE` on the replicated set, a new mark refreshes the whole set's TTL.
        let mut members: Vec<u32> = match self.local_dead.get(host) {
            Some(d) if d.expire_at_ms.is_some_and(|t| t > now_ms) => d.members.to_vec(),
            _ => Vec::new(),
        };
        members.push(idx as u32);
        self.local_dead.insert(host.clone(), DeadSet { members: members.into(), expire_at_ms: Some(deadline) });
        true
    }

    /// Brings the view up to date with an applied batch: the keys in `changes`, or everything
    /// when `reload` (a snapshot was installed, anything may have changed; the local overlay
    /// is kept).
    pub fn apply<'a>(
        &mut self,
        keys: &RoutingKeys,
        keyspace: &Arc<Keyspace>,
        changes: impl IntoIterator<Item = &'a Change>,
        reload: bool,
        now_ms: u64,
    ) {
        if reload {
            *self = RoutingView { local_dead: self.local_dead.clone(), ..RoutingView::default() };
            for (db, key, entry) in keyspace.iter() {
                if db == keys.db {
                    self.set(keys, key, || Some(entry));
                }
            }
        } else {
            for change in changes.into_iter().filter(|c| c.db == keys.db) {
                self.set(keys, &change.key, || keyspace.get(keys.db, &change.key));
            }
        }
        self.keyspace = keyspace.clone();
        self.keys = keys.clone();
        self.prune_local(now_ms);
    }

    /// Drops local marks whose TTL has passed, so the overlay stays as small as the set of
    /// recently failing backends.
    fn prune_local(&mut self, now_ms: u64) {
        if self.local_dead.iter().any(|(_, d)| d.expire_at_ms.is_some_and(|t| t <= now_ms)) {
            self.local_dead.retain(|_, d| d.expire_at_ms.is_none_or(|t| t > now_ms));
        }
    }
}

/// Whether `frontend:*.<suffix>` is one of the keys a lookup of `host` tries: the lookup's own
/// candidate rule, so exactly the hosts this wildcard can route.
fn routed_by_wildcard(host: &[u8], suffix: &[u8]) -> bool {
    Host::parse(host).is_ok_and(|h| h.candidates().any(|c| c == Candidate::Wildcard(suffix)))
}

fn set_or_remove<V: Clone>(map: &mut Map<V>, key: Bytes, value: Option<V>) {
    match value {
        Some(v) => {
            map.insert(key, v);
        }
        None => {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(view: &mut RoutingView, key: &str, value: Option<Value>, expire: Option<u64>) {
        let entry = value.map(|value| Entry::new(value, expire, 1));
        view.set(&RoutingKeys::default(), key.as_bytes(), || entry.as_ref());
    }

    /// Runs `cmds` on a keyspace and applies the keys they changed to `view`.
    fn run(view: &mut RoutingView, node: &mut crate::keyspace::testkit::Node, cmds: &[&str]) {
        for cmd in cmds {
            node.run(cmd);
        }
        let changes = node.ks.take_changes();
        view.apply(&RoutingKeys::default(), &Arc::new(node.ks.clone()), &changes, false, 0);
    }

    #[test]
    fn frontends_land_where_candidates_look() {
        let (mut v, mut node) = (RoutingView::default(), crate::keyspace::testkit::Node::new());
        let lists =
            ["RPUSH frontend:a.com a http://x:1", "RPUSH frontend:*.b.com b http://x:2", "RPUSH frontend:* all"];
        run(&mut v, &mut node, &lists);
        assert_eq!(v.exact(b"a.com").unwrap().id(), "a");
        assert_eq!(v.wildcard.get(b"b.com".as_slice()).unwrap().id(), "b");
        assert_eq!(v.catch_all.as_ref().unwrap().backend_count(), 0);
        run(&mut v, &mut node, &["DEL frontend:a.com", "SET frontend:* x", "SET frontend:c.com x"]);
        assert!(v.exact(b"a.com").is_none() && v.exact(b"c.com").is_none() && v.catch_all.is_none());
        assert!(v.wildcard.get(b"b.com".as_slice()).is_some());
    }

    #[test]
    fn dead_sets_and_overlay() {
        let mut v = RoutingView::default();
        let members = ["1", "x"].iter().map(|s| Bytes::from(*s)).collect();
        set(&mut v, "dead:a.com", Some(Value::Set(Box::new(members))), Some(1000));
        assert!(v.is_dead(b"a.com", 1, 999));
        assert!(!v.is_dead(b"a.com", 1, 1000));
        assert!(!v.is_dead(b"a.com", 0, 0));

        let host = Bytes::from("h");
        assert!(v.mark_local(&host, 0, Duration::from_secs(1), 0));
        assert!(!v.mark_local(&host, 0, Duration::from_secs(1), 10), "coalesced while fresh");
        assert!(v.mark_local(&host, 1, Duration::from_secs(1), 500));
        assert!(v.is_dead(b"h", 0, 1499), "a new mark refreshes the set's TTL");
        assert!(!v.is_dead(b"h", 0, 1500));
        assert!(v.mark_local(&host, 0, Duration::from_secs(1), 2000), "marks again once expired");
    }

    fn apply(view: &mut RoutingView, keyspace: &Arc<Keyspace>, keys: &[&str]) {
        let changes: Vec<Change> =
            keys.iter().map(|k| Change { db: 0, key: Bytes::copy_from_slice(k.as_bytes()) }).collect();
        view.apply(&RoutingKeys::default(), keyspace, &changes, false, 0);
    }

    #[test]
    fn a_replicated_change_of_a_host_drops_its_local_marks() {
        let mut v = RoutingView::default();
        let ttl = Duration::from_secs(30);
        let ks = Arc::new(Keyspace::default());
        for host in ["a.com", "b.com", "x.w.com", "w.com", "other.org"] {
            assert!(v.mark_local(&Bytes::from(host), 1, ttl, 0));
        }
        let marked = |v: &RoutingView, h: &str| v.is_dead(h.as_bytes(), 1, 1);
        apply(&mut v, &ks, &["dead:a.com"]);
        assert!(!marked(&v, "a.com"), "DEL/SREM/SADD of dead:<host> replaces the local mark");
        assert!(marked(&v, "b.com"));
        apply(&mut v, &ks, &["frontend:b.com"]);
        assert!(!marked(&v, "b.com"), "a rewritten frontend forgets marks made by index");
        apply(&mut v, &ks, &["frontend:*.w.com"]);
        assert!(!marked(&v, "x.w.com") && marked(&v, "w.com"), "a wildcard covers strict subdomains only");
        apply(&mut v, &ks, &["tls:other.org", "hchecker_ping", "frontend2:other.org"]);
        assert!(marked(&v, "other.org"), "other keys leave marks alone");
        apply(&mut v, &ks, &["frontend:*"]);
        assert!(!marked(&v, "other.org") && !marked(&v, "w.com"), "the catch-all can route any host");
    }

    #[test]
    fn routing_keys_database_and_prefix() {
        let keys = RoutingKeys { db: 3, prefix: Bytes::from("hip_") };
        let mut view = RoutingView::default();
        let mut node = crate::keyspace::testkit::Node::new();
        for (db, key) in
            [(3, "hip_frontend:a.com"), (0, "frontend:b.com"), (3, "frontend:c.com"), (0, "hip_frontend:d.com")]
        {
            node.db = db;
            node.run(&format!("RPUSH {key} id http://127.0.0.1:1"));
        }
        view.apply(&keys, &Arc::new(node.ks), &[], true, 0);
        assert!(view.exact(b"a.com").is_some());
        for other in ["b.com", "c.com", "d.com"] {
            assert!(view.exact(other.as_bytes()).is_none(), "only <prefix>frontend: keys of the configured database");
        }
    }

    #[test]
    fn hchecker_ping_freshness() {
        let mut v = RoutingView::default();
        assert!(!v.hchecker_active(100_000));
        set(&mut v, "hchecker_ping", Some(Value::Str(Box::new(Bytes::from("100")))), None);
        assert!(v.hchecker_active(130_000));
        assert!(!v.hchecker_active(131_000));
    }
}

/// The view against a plain model of Hipache's keys after 100,000 random changes applied in
/// random batches, as the apply path hands them over: every lookup (frontend, backend count,
/// dead marks) must be what the model says.
#[cfg(test)]
mod model_tests {
    use std::collections::{BTreeSet, HashMap};
    use std::sync::Arc;

    use super::RoutingView;
    use crate::keyspace::testkit::Node;
    use crate::routing::host::{Candidate, Host};
    use crate::routing::RoutingKeys;

    #[derive(Clone, Debug)]
    enum Model {
        List(Vec<String>),
        Set(BTreeSet<String>),
        Str,
    }

    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    const REQUEST_HOSTS: [&str; 8] =
        ["h0.test", "h1.test", "h2.test", "h3.test", "a.w0.test", "b.w1.test", "h0.w0.test", "other.org"];
    const FRONTENDS: [&str; 8] =
        ["h0.test", "h1.test", "h2.test", "h3.test", "*.w0.test", "*.w1.test", "h0.w0.test", "*"];

    /// One random command and the model's version of it (Redis semantics, simply).
    fn change(rng: &mut Rng, model: &mut HashMap<String, Model>) -> String {
        let frontend = format!("frontend:{}", FRONTENDS[rng.below(FRONTENDS.len())]);
        let dead = format!("dead:{}", REQUEST_HOSTS[rng.below(REQUEST_HOSTS.len())]);
        let item = format!("http://127.0.0.{}:80", rng.below(4));
        let list = |m: &mut HashMap<String, Model>, k: &str| match m.get(k) {
            Some(Model::List(l)) => Some(l.clone()),
            None => Some(Vec::new()),
            _ => None,
        };
        let store = |m: &mut HashMap<String, Model>, k: &str, l: Vec<String>| {
            if l.is_empty() {
                m.remove(k);
            } else {
                m.insert(k.to_string(), Model::List(l));
            }
        };
        match rng.below(9) {
            0..=2 => {
                if let Some(mut l) = list(model, &frontend) {
                    l.push(item.clone());
                    store(model, &frontend, l);
                }
                format!("RPUSH {frontend} {item}")
            }
            3 => {
                if let Some(mut l) = list(model, &frontend) {
                    if !l.is_empty() {
                        l.remove(0);
                    }
                    store(model, &frontend, l);
                }
                format!("LPOP {frontend}")
            }
            4 => {
                if let Some(mut l) = list(model, &frontend) {
                    l.retain(|x| *x != item);
                    store(model, &frontend, l);
                }
                format!("LREM {frontend} 0 {item}")
            }
            5 => {
                model.remove(&frontend);
                format!("DEL {frontend}")
            }
            6 if rng.below(10) == 0 => {
                model.insert(frontend.clone(), Model::Str);
                format!("SET {frontend} x")
            }
            6 | 7 => {
                let member = rng.below(4).to_string();
                if let Model::Set(s) = model.entry(dead.clone()).or_insert_with(|| Model::Set(BTreeSet::new())) {
                    s.insert(member.clone());
                }
                format!("SADD {dead} {member}")
            }
            _ => {
                let member = rng.below(4).to_string();
                if let Some(Model::Set(s)) = model.get_mut(&dead) {
                    s.remove(&member);
                    if s.is_empty() {
                        model.remove(&dead);
                    }
                }
                format!("SREM {dead} {member}")
            }
        }
    }

    /// What the model routes `host` to: the first candidate holding a list, its backend count
    /// and the dead indexes of `host`.
    fn expected(model: &HashMap<String, Model>, host: &str) -> Option<(usize, BTreeSet<usize>)> {
        let parsed = Host::parse(host.as_bytes()).unwrap();
        let found = parsed.candidates().find_map(|c| {
            let name = match c {
                Candidate::Exact(h) => String::from_utf8_lossy(h).into_owned(),
                Candidate::Wildcard(s) => format!("*.{}", String::from_utf8_lossy(s)),
                Candidate::CatchAll => "*".to_string(),
            };
            match model.get(&format!("frontend:{name}")) {
                Some(Model::List(l)) => Some(l.len() - 1),
                _ => None,
            }
        })?;
        let dead = match model.get(&format!("dead:{host}")) {
            Some(Model::Set(s)) => s.iter().filter_map(|m| m.parse().ok()).collect(),
            _ => BTreeSet::new(),
        };
        Some((found, dead))
    }

    fn actual(view: &RoutingView, host: &str) -> Option<(usize, BTreeSet<usize>)> {
        let f = view.frontend(&Host::parse(host.as_bytes()).unwrap(), 0)?;
        let n = f.backend_count();
        Some((n, (0..n.max(4)).filter(|&i| view.is_dead(host.as_bytes(), i, 0)).collect()))
    }

    #[test]
    fn the_view_matches_a_model_after_100_000_random_changes() {
        let (mut rng, mut model, mut node) = (Rng(0x9e37_79b9_7f4a_7c15), HashMap::new(), Node::new());
        node.now = 0;
        let keys = RoutingKeys::default();
        let mut view = RoutingView::default();
        let mut applied = 0;
        while applied < 100_000 {
            let batch = 1 + rng.below(20);
            for _ in 0..batch {
                let cmd = change(&mut rng, &mut model);
                node.run(&cmd);
            }
            applied += batch;
            let changes = node.ks.take_changes();
            view.apply(&keys, &Arc::new(node.ks.clone()), &changes, false, 0);
            if applied % 1000 < batch {
                for host in REQUEST_HOSTS {
                    let want = expected(&model, host)
                        .map(|(n, dead)| (n, dead.into_iter().filter(|&i| i < n.max(4)).collect()));
                    assert_eq!(actual(&view, host), want, "{host} after {applied} changes");
                }
            }
        }
        // A view rebuilt from scratch agrees with the one kept up to date change by change.
        let mut rebuilt = RoutingView::default();
        rebuilt.apply(&keys, &Arc::new(node.ks.clone()), &[], true, 0);
        for host in REQUEST_HOSTS {
            assert_eq!(actual(&rebuilt, host), actual(&view, host), "{host}");
        }
        assert_eq!(rebuilt.dead.len(), view.dead.len());
    }
}
