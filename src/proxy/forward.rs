//! Request and response header rewriting between client and backend (§3.8).

use std::net::IpAddr;

use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};

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
    // At most one grow of the map (hyper sizes it for the headers it parsed), and one hash
    // per name through `entry` instead of `contains_key` + `insert`.
    headers.reserve(5);
    for (name, value) in [
        (&X_FORWARDED_FOR, &client.ip),
        (&X_REAL_IP, &client.ip),
        (&X_FORWARDED_PROTO, &client.proto),
        (&X_FORWARDED_PROTOCOL, &client.proto),
        (&X_FORWARDED_PORT, &client.port),
    ] {
        if let Entry::Vacant(slot) = headers.entry(name.clone()) {
            slot.insert(value.clone());
        }
    }
}

/// Headers that describe one hop and must not be forwarded (RFC 9110 §7.6.1), then
/// `Upgrade`, which only an upgrade forwards. Bit `i` of [`hop_by_hop_bits`] is entry `i`.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];
const CONNECTION_BIT: u8 = 1;
/// `Connection` and `Upgrade`: what the backend must see on an upgrade.
const UPGRADE_KEEPS: u8 = CONNECTION_BIT | 1 << 6;

/// Which [`HOP_BY_HOP`] names `headers` holds, in one pass over its names: every `remove`
/// hashes its name, and most messages hold none of these (or only `Connection`).
fn hop_by_hop_bits(headers: &HeaderMap) -> u8 {
    headers.keys().fold(0, |bits, name| bits | HOP_BY_HOP.iter().position(|h| h == name).map_or(0, |i| 1 << i))
}

/// Whether a header name (any case) is one of [`HOP_BY_HOP`]: the fast path's raw-header form
/// of the same rule.
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h.as_str()))
}

/// Removes hop-by-hop headers, including those named by `Connection`. On an upgrade the
/// `Connection: upgrade` and `Upgrade` headers are what the backend must see, so they stay.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let mut present = hop_by_hop_bits(headers);
    if present == 0 {
        return;
    }
    if upgrade {
        present &= !UPGRADE_KEEPS;
    } else if present & CONNECTION_BIT != 0 {
        // The names `Connection` lists that are actually present (usually none: it says
        // `keep-alive` or `close`), matched without allocating; header names are lowercase.
        let listed: Vec<HeaderName> = match headers.get(header::CONNECTION).and_then(|v| v.to_str().ok()) {
            Some(value) => value
                .split(',')
                .map(str::trim)
                .filter_map(|token| headers.keys().find(|name| name.as_str().eq_ignore_ascii_case(token)).cloned())
                .collect(),
            None => Vec::new(),
        };
        for name in listed {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
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
        pairs.iter().map(|(k, v)| (HeaderName::try_from(*k).unwrap(), HeaderValue::try_from(*v).unwrap())).collect()
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
            ("connection", "Keep-Alive, X-Private"),
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
