//! Host header normalisation and the frontend candidate order (docs/hipache-behaviour.md §3.1, §3.2).
//!
//! Pure: no IO, no allocation on the request path. The proxy normalises the `Host` value into a
//! stack buffer and asks the routing view for each [`Candidate`] in order; the first frontend
//! list that exists wins.
//!
//! Deliberate differences from Hipache 0.3.x (§9.2 "Fix"):
//! - the host is **always** lowercased (Hipache only lowercased when a port was present);
//! - a trailing dot is stripped (`example.com.` routes like `example.com`);
//! - bracketed IPv6 literals (`[::1]:8080`) are parsed (Hipache cut them to `[`).
//!
//! Kept from Hipache: the port is ignored; wildcards have at most 5 suffix labels; `*.a.b`
//! never matches `a.b` itself; the catch-all `*` comes last.

/// Longest host we route: DNS names are at most 253 bytes (255 on the wire minus framing).
pub const MAX_HOST_LEN: usize = 253;

/// Wildcard keys (`*.` + suffix) are tried for suffixes of at most this many labels (§3.2).
pub const MAX_WILDCARD_LABELS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Missing or empty Host (HTTP/1.0 without Host): Hipache's 400 "no host header".
    #[error("no host header")]
    Missing,
    #[error("host header is too long")]
    TooLong,
    /// Bytes that cannot be part of a host name (controls, spaces, `/`, `@`, non-ASCII), or
    /// a broken IPv6 literal. Hipache looked such values up as-is and answered 400; so do we.
    #[error("invalid host header")]
    Invalid,
}

/// A normalised host: lowercase, no port, no trailing dot. Lives on the stack.
#[derive(Clone, Copy)]
pub struct Host {
    buf: [u8; MAX_HOST_LEN],
    len: u8,
    /// A bracketed IPv6 literal has no DNS labels, so no wildcard candidates.
    ipv6: bool,
}

impl Host {
    /// Normalises a `Host` header (or HTTP/2 `:authority`) value.
    pub fn parse(raw: &[u8]) -> Result<Host, HostError> {
        if raw.is_empty() {
            return Err(HostError::Missing);
        }
        let (name, ipv6) = if raw[0] == b'[' {
            let close = raw.iter().position(|&b| b == b']').ok_or(HostError::Invalid)?;
            let rest = &raw[close + 1..];
            if !(rest.is_empty() || rest[0] == b':') {
                return Err(HostError::Invalid);
            }
            let inner = &raw[1..close];
            if inner.is_empty() || !inner.iter().all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.')) {
                return Err(HostError::Invalid);
            }
            // Keep the brackets: `frontend:[::1]` is how the Host header spells it.
            (&raw[..=close], true)
        } else {
            let end = raw.iter().position(|&b| b == b':').unwrap_or(raw.len());
            let mut name = &raw[..end];
            if let [head @ .., b'.'] = name {
                name = head;
            }
            (name, false)
        };
        if name.is_empty() {
            return Err(HostError::Missing);
        }
        if name.len() > MAX_HOST_LEN {
            return Err(HostError::TooLong);
        }
        let mut buf = [0u8; MAX_HOST_LEN];
        for (dst, &b) in buf.iter_mut().zip(name) {
            if !b.is_ascii_graphic() || matches!(b, b'/' | b'\\' | b'@' | b'?' | b'#') {
                return Err(HostError::Invalid);
            }
            *dst = b.to_ascii_lowercase();
        }
        Ok(Host { buf, len: name.len() as u8, ipv6 })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII graphic bytes are ever copied in.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The frontend keys to try, most specific first (§3.2).
    pub fn candidates(&self) -> Candidates<'_> {
        let host = self.as_bytes();
        let wildcards = if self.ipv6 { Suffixes::default() } else { Suffixes::of(host) };
        Candidates { host, state: State::Exact, wildcards, next_wildcard: 0 }
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Host").field(&self.as_str()).finish()
    }
}

/// Start offsets of the wildcard suffixes, longest first: for `a.b.c` the suffixes `b.c`
/// and `c`. At most [`MAX_WILDCARD_LABELS`] labels, and never the whole host. A fixed array
/// (offsets fit in a byte: hosts are at most 253 bytes) keeps the lookup allocation-free.
#[derive(Clone, Copy, Default)]
struct Suffixes {
    starts: [u8; MAX_WILDCARD_LABELS],
    len: u8,
}

impl Suffixes {
    fn of(host: &[u8]) -> Suffixes {
        let mut found = Suffixes::default();
        // Scan right to left, filling the array from its end so it ends up longest first.
        let mut slot = MAX_WILDCARD_LABELS;
        for (i, _) in host.iter().enumerate().rev().filter(|(_, &b)| b == b'.') {
            if slot == 0 {
                break;
            }
            slot -= 1;
            found.starts[slot] = (i + 1) as u8;
        }
        found.starts.copy_within(slot.., 0);
        found.len = (MAX_WILDCARD_LABELS - slot) as u8;
        found
    }

    fn get(&self, i: usize) -> Option<usize> {
        (i < self.len as usize).then(|| self.starts[i] as usize)
    }
}

/// One key to look up, in the form the routing view stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Candidate<'a> {
    /// `frontend:<host>`.
    Exact(&'a [u8]),
    /// `frontend:*.<suffix>`; carries the suffix only, so the lookup needs no buffer.
    Wildcard(&'a [u8]),
    /// `frontend:*`.
    CatchAll,
}

impl Candidate<'_> {
    /// Classifies the part of a `frontend:` key after the prefix, so the view can store
    /// each frontend where [`Host::candidates`] will look for it.
    pub fn of_key(key: &[u8]) -> Candidate<'_> {
        match key {
            b"*" => Candidate::CatchAll,
            [b'*', b'.', suffix @ ..] if !suffix.is_empty() => Candidate::Wildcard(suffix),
            _ => Candidate::Exact(key),
        }
    }
}

#[derive(Clone, Copy)]
enum State {
    Exact,
    Wildcards,
    CatchAll,
    Done,
}

pub struct Candidates<'a> {
    host: &'a [u8],
    state: State,
    wildcards: Suffixes,
    next_wildcard: usize,
}

impl<'a> Iterator for Candidates<'a> {
    type Item = Candidate<'a>;

    fn next(&mut self) -> Option<Candidate<'a>> {
        loop {
            match self.state {
                State::Exact => {
                    self.state = State::Wildcards;
                    return Some(Candidate::Exact(self.host));
                }
                State::Wildcards => match self.wildcards.get(self.next_wildcard) {
                    Some(start) => {
                        self.next_wildcard += 1;
                        return Some(Candidate::Wildcard(&self.host[start..]));
                    }
                    None => self.state = State::CatchAll,
                },
                State::CatchAll => {
                    self.state = State::Done;
                    return Some(Candidate::CatchAll);
                }
                State::Done => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Result<String, HostError> {
        Host::parse(raw.as_bytes()).map(|h| h.as_str().to_string())
    }

    fn keys(raw: &str) -> Vec<String> {
        let host = Host::parse(raw.as_bytes()).unwrap();
        host.candidates()
            .map(|c| match c {
                Candidate::Exact(h) => String::from_utf8_lossy(h).into_owned(),
                Candidate::Wildcard(s) => format!("*.{}", String::from_utf8_lossy(s)),
                Candidate::CatchAll => "*".into(),
            })
            .collect()
    }

    #[test]
    fn lowercases_and_strips_port_and_trailing_dot() {
        assert_eq!(norm("Example.COM").unwrap(), "example.com");
        assert_eq!(norm("example.com:8080").unwrap(), "example.com");
        assert_eq!(norm("EXAMPLE.com.:80").unwrap(), "example.com");
        assert_eq!(norm("example.com.").unwrap(), "example.com");
        assert_eq!(norm("127.0.0.1:80").unwrap(), "127.0.0.1");
    }

    #[test]
    fn parses_bracketed_ipv6() {
        assert_eq!(norm("[::1]:8080").unwrap(), "[::1]");
        assert_eq!(norm("[FE80::1]").unwrap(), "[fe80::1]");
        assert_eq!(norm("[::1"), Err(HostError::Invalid));
        assert_eq!(norm("[::1]x"), Err(HostError::Invalid));
        assert_eq!(norm("[zz]"), Err(HostError::Invalid));
        assert_eq!(keys("[::1]:80"), ["[::1]", "*"]);
    }

    #[test]
    fn rejects_missing_long_and_garbage_hosts() {
        assert_eq!(norm(""), Err(HostError::Missing));
        assert_eq!(norm(":80"), Err(HostError::Missing));
        assert_eq!(norm("."), Err(HostError::Missing));
        assert_eq!(norm(&"a".repeat(254)), Err(HostError::TooLong));
        assert!(norm(&"a".repeat(253)).is_ok());
        assert_eq!(norm("a b"), Err(HostError::Invalid));
        assert_eq!(norm("a/b"), Err(HostError::Invalid));
        assert_eq!(norm("user@host"), Err(HostError::Invalid));
        assert_eq!(Host::parse(b"caf\xc3\xa9").map(|_| ()), Err(HostError::Invalid));
    }

    #[test]
    fn candidate_order_matches_hipache() {
        assert_eq!(
            keys("foo.bar.baz.qux.quux"),
            ["foo.bar.baz.qux.quux", "*.bar.baz.qux.quux", "*.baz.qux.quux", "*.qux.quux", "*.quux", "*"]
        );
        assert_eq!(keys("localhost"), ["localhost", "*"]);
    }

    #[test]
    fn wildcards_have_at_most_five_suffix_labels() {
        // A 6-label host reaches `*.a.b.c.d.e`; a 7-label host too, never a 6-label suffix.
        assert_eq!(keys("x.a.b.c.d.e")[1], "*.a.b.c.d.e");
        let seven = keys("y.x.a.b.c.d.e");
        assert_eq!(seven[1], "*.a.b.c.d.e");
        assert!(!seven.contains(&"*.x.a.b.c.d.e".to_string()));
        assert_eq!(seven.len(), 1 + 5 + 1);
    }

    #[test]
    fn classifies_frontend_keys() {
        assert_eq!(Candidate::of_key(b"*"), Candidate::CatchAll);
        assert_eq!(Candidate::of_key(b"*.example.com"), Candidate::Wildcard(b"example.com"));
        assert_eq!(Candidate::of_key(b"example.com"), Candidate::Exact(b"example.com"));
        assert_eq!(Candidate::of_key(b"*."), Candidate::Exact(b"*."));
    }
}
