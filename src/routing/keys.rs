//! The names of Hipache's keys (docs/hipache-behaviour.md §2.1) under a `driver` URL's database
//! and `#prefix` (§5.1).

use bytes::Bytes;

const FRONTEND: &[u8] = b"frontend:";
const DEAD: &[u8] = b"dead:";
const TLS: &[u8] = b"tls:";
/// Written by an external health checker; never prefixed, as in Hipache and hchecker.
pub const HCHECKER_PING: &[u8] = b"hchecker_ping";

/// Where the routing keys live: Hipache's `driver` URL `redis://…/DB#prefix` (first URL) picks
/// the database its tools `SELECT` and a prefix in front of `frontend:` and `dead:` keys. We put
/// the prefix in front of `tls:` too (our own key, per tenant like `frontend:`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingKeys {
    pub db: usize,
    pub prefix: Bytes,
}

impl RoutingKeys {
    /// `<prefix>frontend:<name>`.
    pub fn frontend_key(&self, name: &[u8]) -> Bytes {
        self.key(FRONTEND, name)
    }

    /// Runs `f` on `<prefix>frontend:<name>` built on the stack: a request's lookup builds one
    /// to a few of these and must not allocate for them.
    pub fn with_frontend_key<R>(&self, name: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
        const STACK: usize = 320;
        let len = self.prefix.len() + FRONTEND.len() + name.len();
        if len > STACK {
            return f(&self.frontend_key(name));
        }
        let mut buf = [0u8; STACK];
        let mut at = 0;
        for part in [&self.prefix[..], FRONTEND, name] {
            buf[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        f(&buf[..len])
    }

    /// `<prefix>dead:<host>`: the key a passive mark writes.
    pub fn dead_key(&self, host: &[u8]) -> Bytes {
        self.key(DEAD, host)
    }

    /// The frontend name of a `<prefix>frontend:` key.
    pub fn frontend_name<'a>(&self, key: &'a [u8]) -> Option<&'a [u8]> {
        self.strip(key, FRONTEND)
    }

    /// The request host of a `<prefix>dead:` key.
    pub fn dead_host<'a>(&self, key: &'a [u8]) -> Option<&'a [u8]> {
        self.strip(key, DEAD)
    }

    /// The server name of a `<prefix>tls:` key.
    pub fn tls_name<'a>(&self, key: &'a [u8]) -> Option<&'a [u8]> {
        self.strip(key, TLS)
    }

    /// A `KEYS` pattern matching `<prefix>frontend:<pattern>` (`dead:` with `dead = true`):
    /// glob characters in the prefix are escaped, so only `pattern` is a glob.
    pub fn pattern(&self, dead: bool, pattern: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(self.prefix.len() + pattern.len() + 10);
        for &b in self.prefix.iter() {
            if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.extend_from_slice(if dead { DEAD } else { FRONTEND });
        out.extend_from_slice(pattern);
        Bytes::from(out)
    }

    fn key(&self, kind: &[u8], name: &[u8]) -> Bytes {
        Bytes::from([self.prefix.as_ref(), kind, name].concat())
    }

    fn strip<'a>(&self, key: &'a [u8], kind: &[u8]) -> Option<&'a [u8]> {
        key.strip_prefix(self.prefix.as_ref())?.strip_prefix(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_under_a_prefix() {
        let keys = RoutingKeys { db: 3, prefix: Bytes::from("hip_") };
        assert_eq!(keys.frontend_key(b"a.com"), "hip_frontend:a.com");
        assert_eq!(keys.dead_key(b"a.com"), "hip_dead:a.com");
        assert_eq!(keys.frontend_name(b"hip_frontend:*.a.com"), Some(b"*.a.com".as_slice()));
        assert_eq!(keys.frontend_name(b"frontend:a.com"), None, "no prefix: not ours");
        assert_eq!(keys.dead_host(b"hip_dead:a.com"), Some(b"a.com".as_slice()));
        assert_eq!(keys.tls_name(b"hip_tls:a.com"), Some(b"a.com".as_slice()));
        let plain = RoutingKeys::default();
        assert_eq!(plain.frontend_name(b"frontend:a.com"), Some(b"a.com".as_slice()));
        let globby = RoutingKeys { db: 0, prefix: Bytes::from("a*[b]") };
        assert_eq!(globby.pattern(false, b"*"), r"a\*\[b\]frontend:*");
        assert_eq!(globby.pattern(true, b"x.com"), r"a\*\[b\]dead:x.com");
    }
}
