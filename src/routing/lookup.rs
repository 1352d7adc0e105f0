//! Choosing a backend for a request host (docs/hipache-behaviour.md §3.2–§3.4).

use super::backend::Frontend;
use super::host::{Candidate, Host};
use super::view::RoutingView;

/// What the routing view says about a request host.
#[derive(Debug)]
pub enum Lookup {
    /// No candidate key holds a list: 400 "frontend not found".
    NotFound,
    /// The winning list has only its identifier, or every backend is dead: 502 "Cannot find a
    /// valid backend". An identifier-only list shadows wildcards and `*` (§2.1).
    NoBackend(Frontend),
    /// Backend `idx` (0-based, counting from list element 1) of `frontend`.
    Backend(Frontend, usize),
}

impl RoutingView {
    /// The first configured frontend for `host`: exact, wildcards, then `*`.
    pub fn frontend(&self, host: &Host, now_ms: u64) -> Option<Frontend> {
        host.candidates().find_map(|c| {
            let found = match c {
                Candidate::Exact(h) => self.exact(h),
                Candidate::Wildcard(suffix) => self.wildcard.get(suffix).cloned(),
                Candidate::CatchAll => self.catch_all.clone(),
            };
            found.filter(|f| f.visible(now_ms))
        })
    }

    /// Looks `host` up and picks a live backend uniformly at random; `pick(n)` returns a
    /// number in `0..n` (injected so tests are deterministic).
    pub fn lookup(&self, host: &Host, now_ms: u64, pick: impl FnOnce(usize) -> usize) -> Lookup {
        let Some(frontend) = self.frontend(host, now_ms) else {
            return Lookup::NotFound;
        };
        let key = host.as_bytes();
        let n = frontend.backend_count();
        let live = (0..n).filter(|&i| !self.is_dead(key, i, now_ms)).count();
        if live == 0 {
            return Lookup::NoBackend(frontend);
        }
        let nth = pick(live);
        // `nth < live`, so this always finds one; the fallback keeps it panic-free.
        let idx = (0..n).filter(|&i| !self.is_dead(key, i, now_ms)).nth(nth).unwrap_or(0);
        Lookup::Backend(frontend, idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::routing::view::DeadSet;
    use crate::routing::RoutingKeys;
    use bytes::Bytes;

    fn view() -> RoutingView {
        let mut node = crate::keyspace::testkit::Node::new();
        let frontends = [
            ("www.example.com", "exact", 1),
            ("idonly.example.com", "idonly", 0),
            ("*.example.com", "wild", 2),
            ("*.a.b.c.d.e", "five", 1),
            ("*.z.a.b.c.d.e", "six", 1),
            ("*", "all", 1),
        ];
        for (name, id, backends) in frontends {
            let urls: String = (0..backends).map(|i| format!(" http://127.0.0.{i}:80")).collect();
            node.run(&format!("RPUSH frontend:{name} {id}{urls}"));
        }
        let mut v = RoutingView::default();
        v.apply(&RoutingKeys::default(), &Arc::new(node.ks), &[], true, 0);
        v
    }

    fn id(v: &RoutingView, host: &str) -> String {
        match v.lookup(&Host::parse(host.as_bytes()).unwrap(), 0, |_| 0) {
            Lookup::NotFound => "404".into(),
            Lookup::NoBackend(f) => format!("502:{}", String::from_utf8_lossy(&f.id())),
            Lookup::Backend(f, _) => String::from_utf8_lossy(&f.id()).into_owned(),
        }
    }

    #[test]
    fn precedence() {
        let v = view();
        assert_eq!(id(&v, "www.example.com"), "exact");
        assert_eq!(id(&v, "WWW.Example.com:8080"), "exact");
        assert_eq!(id(&v, "api.example.com"), "wild");
        assert_eq!(id(&v, "example.com"), "all", "*.example.com does not match example.com");
        assert_eq!(id(&v, "idonly.example.com"), "502:idonly", "identifier-only shadows wildcards");
        assert_eq!(id(&v, "x.a.b.c.d.e"), "five");
        assert_eq!(id(&v, "y.z.a.b.c.d.e"), "five", "a 6-label suffix never matches");
        assert_eq!(id(&v, "other.org"), "all");
        let mut no_catch_all = v.clone();
        no_catch_all.catch_all = None;
        assert_eq!(id(&no_catch_all, "other.org"), "404");
    }

    #[test]
    fn skips_dead_backends() {
        let mut v = view();
        let pick_last = |n: usize| n - 1;
        let host = Host::parse(b"api.example.com").unwrap();
        assert!(matches!(v.lookup(&host, 0, pick_last), Lookup::Backend(_, 1)));
        v.dead.insert(Bytes::from("api.example.com"), DeadSet { members: Box::new([1]), expire_at_ms: None });
        assert!(matches!(v.lookup(&host, 0, pick_last), Lookup::Backend(_, 0)));
        v.local_dead.insert(Bytes::from("api.example.com"), DeadSet { members: Box::new([0]), expire_at_ms: Some(5) });
        assert!(matches!(v.lookup(&host, 0, pick_last), Lookup::NoBackend(_)));
        assert!(matches!(v.lookup(&host, 5, pick_last), Lookup::Backend(_, 0)), "overlay expired");
        // Dead sets are keyed by the request host, not by the matched frontend (§2.3).
        let other = Host::parse(b"www2.example.com").unwrap();
        assert!(matches!(v.lookup(&other, 0, pick_last), Lookup::Backend(_, 1)));
    }
}
