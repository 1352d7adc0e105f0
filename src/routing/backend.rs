//! Frontends and backends as the proxy reads them: a frontend is the stored list itself (a
//! shared handle on the keyspace's bytes), and the one backend a request picks is parsed from
//! its URL when picked.
//!
//! Why not parse every list when it is applied, as earlier versions did: at a million
//! frontends the parsed copies cost more memory than the keyspace itself (540 bytes per
//! frontend on top of the list), while parsing the picked URL costs well under a microsecond
//! per request and one small copy of the URL (which `Uri::from_maybe_shared` then shares).

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Uri};

use crate::keyspace::List;

/// A `frontend:<host>` list: element 0 is the identifier, the rest are backend URLs.
#[derive(Debug, Clone)]
pub struct Frontend {
    list: List,
    /// Replicated key expiry; an expired frontend is invisible, as to a Redis replica's reads.
    expire_at_ms: Option<u64>,
    /// The key's version (log index of its last change): what "this list as it is now" is
    /// called, so a problem with it is reported once per change rather than per request.
    version: u64,
}

impl Frontend {
    /// `None` for an empty list, which Hipache treats as "not configured" (the lookup falls
    /// through to the next candidate).
    pub fn from_list(list: List, expire_at_ms: Option<u64>, version: u64) -> Option<Frontend> {
        (!list.is_empty()).then_some(Frontend { list, expire_at_ms, version })
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Hipache's "virtual host": only shown in the access log and `X-Debug-Vhost`.
    pub fn id(&self) -> Bytes {
        self.list.get(0).unwrap_or_default()
    }

    pub fn backend_count(&self) -> usize {
        self.list.len().saturating_sub(1)
    }

    /// Backend `idx` (0-based, counting from list element 1), parsed. An index past the end
    /// (a caller's bug) gives an invalid backend, answered 502, not a panic.
    pub fn backend(&self, idx: usize) -> Backend {
        Backend::parse(&self.list.get(idx + 1).unwrap_or_default())
    }

    /// Every backend URL as stored, in list order.
    pub fn backend_urls(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.list.iter().skip(1)
    }

    pub fn visible(&self, now_ms: u64) -> bool {
        self.expire_at_ms.is_none_or(|t| t > now_ms)
    }
}

#[derive(Debug)]
pub struct Backend {
    /// The URL exactly as stored: published on the `dead` channel and in `X-Debug-Backend-Url`.
    pub url: Bytes,
    /// `None` when the URL has no host: choosing it answers 502 "backend is invalid" (§3.3),
    /// while the list's indexes (and so `dead:` members) stay those of the stored list.
    pub target: Option<Target>,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// `https` for `https://` and `wss://` URLs, `http` for everything else. Hipache ignored
    /// the scheme and always spoke plain HTTP (issue #231); we honour TLS (§9.2).
    pub scheme: Scheme,
    /// Host and port only: userinfo, path and query of the URL are ignored, as in Hipache.
    pub authority: Authority,
}

impl Backend {
    pub fn parse(url: &Bytes) -> Backend {
        Backend { url: url.clone(), target: parse_target(url) }
    }

    /// The URL as a header value, for `X-Debug-Backend-Url`.
    pub fn url_header(&self) -> HeaderValue {
        HeaderValue::from_maybe_shared(self.url.clone()).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    }
}

fn parse_target(url: &Bytes) -> Option<Target> {
    let uri = Uri::from_maybe_shared(url.clone()).ok()?;
    // Like Node's `url.parse` in Hipache, a URL without `scheme://` has no host.
    uri.scheme()?;
    let authority = uri.authority()?;
    let host = authority.host();
    if host.is_empty() {
        return None;
    }
    let tls = uri.scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("wss"));
    let scheme = if tls { Scheme::HTTPS } else { Scheme::HTTP };
    // Rebuild the authority so that userinfo never reaches the backend's connection pool key
    // (only then: the common case shares the URL's bytes).
    let authority = match authority.port_u16() {
        _ if !authority.as_str().contains('@') => authority.clone(),
        Some(port) => Authority::try_from(format!("{host}:{port}")).ok()?,
        None => Authority::try_from(host).ok()?,
    };
    Some(Target { scheme, authority })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Option<(String, String)> {
        parse_target(&Bytes::copy_from_slice(url.as_bytes())).map(|t| (t.scheme.to_string(), t.authority.to_string()))
    }

    #[test]
    fn parses_backend_urls() {
        assert_eq!(target("http://127.0.0.1:8080"), Some(("http".into(), "127.0.0.1:8080".into())));
        assert_eq!(target("http://a.example/path?q"), Some(("http".into(), "a.example".into())));
        assert_eq!(target("https://a.example"), Some(("https".into(), "a.example".into())));
        assert_eq!(target("WSS://a:1"), Some(("https".into(), "a:1".into())));
        assert_eq!(target("http://u:p@a:81"), Some(("http".into(), "a:81".into())));
        assert_eq!(target("http://[::1]:81"), Some(("http".into(), "[::1]:81".into())));
        assert_eq!(target("http://"), None);
        assert_eq!(target("/just/a/path"), None);
        assert_eq!(target("not a url"), None);
        assert_eq!(target("127.0.0.1:8080"), None);
    }

    #[test]
    fn frontend_keeps_list_indexes() {
        let list: List = ["app", "http://a:1", "garbage", "http://b:2"].into_iter().map(Bytes::from).collect();
        let f = Frontend::from_list(list.clone(), None, 1).unwrap();
        assert_eq!(f.id(), "app");
        assert_eq!(f.backend_count(), 3);
        assert!(f.backend(1).target.is_none());
        assert_eq!(f.backend(2).url, "http://b:2");
        assert!(f.backend(3).target.is_none(), "past the end: invalid, not a panic");
        assert!(Frontend::from_list(List::new(), None, 1).is_none());
        assert!(f.visible(0));
        let expiring = Frontend::from_list(list.clone(), Some(10), 1).unwrap();
        assert!(expiring.visible(9) && !expiring.visible(10));
    }
}
