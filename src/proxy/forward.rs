//! Request and response header rewriting between client and backend (§3.8).

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// What a connection knows about its client, rendered once per connection as header values.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The peer address. IPv4-mapped IPv6 peers (dual-stack sockets) are shown as IPv4, and
    /// real IPv6 peers as-is: Hipache prefixed `::ffff:` to everything not starting with
    /// `::`, turning `1.2.3.4` into `::ffff:1.2.3.4` and `2001:db8::1` into nonsense (§9.2).
    pub ip: HeaderValue,
    /// `http` or `https`: from the listener, where Hipache's TLS test broke on Node ≥ 0.12.
    pub proto: HeaderValue,
    /// The listener's real port; Hipache hard-coded 80/443 (§9.2).
    pub port: HeaderValue,
}

impl ClientInfo {
    pub fn new(peer: IpAddr, tls: bool, port: u16) -> ClientInfo {
        let ip = peer.to_canonical().to_string();
        ClientInfo {
            ip: HeaderValue::try_from(ip).unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            proto: HeaderValue::from_static(if tls { "https" } else { "http" }),
            port: HeaderValue::from(port),
        }
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_PROTOCOL: HeaderName = HeaderName::from_static("x-forwarded-protocol");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// Adds the `X-Forwarded-*` headers the client did not send. Set-only-when-absent is
/// Hipache's rule (spoofable, issue #165) and is kept for compatibility (§9.2 "Keep").
/// Unlike Hipache, WebSocket upgrades get them too.
pub fn add_forwarded(headers: &mut HeaderMap, client: &ClientInfo) {
    for (name, value) in [
        (&X_FORWARDED_FOR, &client.ip),
        (&X_REAL_IP, &client.ip),
        (&X_FORWARDED_PROTO, &client.proto),
        (&X_FORWARDED_PROTOCOL, &client.proto),
        (&X_FORWARDED_PORT, &client.port),
    ] {
        if !headers.contains_key(name) {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// Headers that describe one hop and must not be forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers, including those named by `Connection`. On an upgrade the
/// `Connection: upgrade` and `Upgrade` headers are what the backend must see, so they stay.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if !upgrade {
        if let Some(listed) = headers.get(header::CONNECTION).and_then(|v| v.to_str().ok()).map(str::to_owned) {
            for name in listed.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                headers.remove(name);
            }
        }
        headers.remove(header::UPGRADE);
    }
    for name in &HOP_BY_HOP {
        if upgrade && *name == header::CONNECTION {
            continue;
        }
        headers.remove(name);
    }
}

/// An HTTP/1.1 upgrade request (WebSocket): `Connection` lists `upgrade` and `Upgrade` is set.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::try_from(*k).unwrap(), HeaderValue::try_from(*v).unwrap()))
            .collect()
    }

    #[test]
    fn forwarded_headers_only_when_absent() {
        let client = ClientInfo::new("::ffff:1.2.3.4".parse().unwrap(), true, 8443);
        let mut h = headers(&[("x-forwarded-for", "9.9.9.9")]);
        add_forwarded(&mut h, &client);
        assert_eq!(h["x-forwarded-for"], "9.9.9.9");
        assert_eq!(h["x-real-ip"], "1.2.3.4");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-protocol"], "https");
        assert_eq!(h["x-forwarded-port"], "8443");
    }

    #[test]
    fn ipv6_peers_are_not_mangled() {
        let client = ClientInfo::new("2001:db8::1".parse().unwrap(), false, 80);
        assert_eq!(client.ip, "2001:db8::1");
        assert_eq!(client.proto, "http");
    }

    #[test]
    fn strips_hop_by_hop() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let mut h = headers(&[("connection", "keep-alive, Upgrade"), ("upgrade", "websocket"), ("te", "trailers")]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert!(h.contains_key("connection"));
        assert!(!h.contains_key("te"));
        assert!(!is_upgrade(&headers(&[("upgrade", "websocket")])));
    }
}
