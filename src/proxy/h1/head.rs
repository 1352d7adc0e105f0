//! HTTP/1.1 heads on the fast path: which client requests it takes, the request line and
//! headers it sends the backend, and how a backend's response is framed and relayed.
//!
//! Pure: bytes in, decisions and bytes out. Anything this module is not sure about is
//! declined (`Parsed::Decline`) and goes to hyper, which answers it fully (hyper's 400s,
//! `Expect`, chunked request bodies, upgrades, HTTP/1.0, `X-Debug`, …). Declining is always
//! safe, so the fast path stays small and strict: it never guesses at message framing,
//! which is where request smuggling lives.

use super::super::forward::{is_hop_by_hop, ClientInfo};

/// Header slots for one parse; a message with more is declined (hyper allows 100).
pub const MAX_HEADERS: usize = 64;
/// A backend's response head larger than this is refused.
pub const MAX_HEAD: usize = 64 * 1024;

/// The outcome of looking at the bytes received so far.
#[derive(Debug, PartialEq)]
pub enum Parsed<T> {
    /// The head is not complete yet.
    Partial,
    Done(T),
    /// Not for the fast path: hyper takes the connection from this request on.
    Decline,
}

/// A client request the fast path takes: HTTP/1.1, origin-form target, one `Host`, no body
/// or a `Content-Length` body of at most `max_body` bytes (`server.maxRetryBody`, so every
/// attempt can resend it).
#[derive(Debug)]
pub struct ClientRequest<'h, 'b> {
    pub head_len: usize,
    pub body_len: usize,
    pub method: &'b str,
    pub path: &'b str,
    pub host: &'b [u8],
    /// The client sent `Connection: close`.
    pub close: bool,
    headers: &'h [httparse::Header<'b>],
    /// Which `X-Forwarded-*` headers the client sent (bits of [`FORWARDED`]).
    forwarded: u8,
}

/// `X-Forwarded-*` in the order [`ClientRequest::write_backend_head`] adds them.
const FORWARDED: [&str; 5] =
    ["x-forwarded-for", "x-real-ip", "x-forwarded-proto", "x-forwarded-protocol", "x-forwarded-port"];

/// Parses and classifies a client request head.
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
    max_body: u64,
) -> Parsed<ClientRequest<'h, 'b>> {
    let mut req = httparse::Request::new(headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        // The caller bounds the head's size (`server.maxHeaderSize`, 431).
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        // Too many headers, or malformed: hyper answers it (400 or 431).
        _ => return Parsed::Decline,
    };
    let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else { return Parsed::Decline };
    if !path.starts_with('/') {
        return Parsed::Decline;
    }
    let headers: &'h [httparse::Header<'b>] = req.headers;
    let mut host = None;
    let mut body_len = None;
    let mut close = false;
    let mut forwarded = 0u8;
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            if host.replace(h.value).is_some() {
                return Parsed::Decline;
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            match content_length(h.value) {
                Some(n) if body_len.is_none() && n <= max_body => body_len = Some(n as usize),
                _ => return Parsed::Decline,
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in tokens(h.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") {
                    // `Connection: upgrade` or names of headers to drop: hyper's path.
                    return Parsed::Decline;
                }
            }
        } else if ["transfer-encoding", "upgrade", "expect", "x-debug"].iter().any(|d| name.eq_ignore_ascii_case(d)) {
            return Parsed::Decline;
        } else if let Some(i) = FORWARDED.iter().position(|f| name.eq_ignore_ascii_case(f)) {
            forwarded |= 1 << i;
        }
    }
    let Some(host) = host else { return Parsed::Decline };
    if host == b"__ping__" {
        return Parsed::Decline;
    }
    let body_len = body_len.unwrap_or(0);
    Parsed::Done(ClientRequest { head_len, body_len, method, path, host, close, headers, forwarded })
}

impl ClientRequest<'_, '_> {
    /// Appends the backend's request head: the client's request line and headers minus
    /// hop-by-hop ones, plus the `X-Forwarded-*` headers the client did not send (§3.8).
    /// `Host` is forwarded as the client sent it, as Hipache does.
    pub fn write_backend_head(&self, client: &ClientInfo, keep_alive: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for h in self.headers.iter().filter(|h| !is_hop_by_hop(h.name)) {
            put_header(out, h.name.as_bytes(), h.value);
        }
        let values = [&client.ip, &client.ip, &client.proto, &client.proto, &client.port];
        for (i, (name, value)) in FORWARDED.iter().zip(values).enumerate() {
            if self.forwarded & (1 << i) == 0 {
                put_header(out, name.as_bytes(), value.as_bytes());
            }
        }
        if !keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// A header's value as the client sent it (the first one), for the access log.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }
}

/// How a backend response's body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Framing {
    /// No body: `HEAD`, 204, 304.
    Empty,
    Length(u64),
    /// Relayed as is, chunk framing included; the scanner finds its end.
    Chunked,
    /// Until the backend closes; the client connection closes after it too.
    Close,
}

/// A backend response head, already rewritten for the client.
#[derive(Debug, PartialEq)]
pub enum BackendHead {
    /// 1xx other than 101: dropped, as hyper's client does; the real response follows.
    Informational {
        head_len: usize,
    },
    Final {
        head_len: usize,
        status: u16,
        framing: Framing,
        reusable: bool,
    },
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum HeadError {
    #[error("malformed response head from the backend")]
    Malformed,
    #[error("response head from the backend is too large")]
    TooLarge,
    #[error("the backend answered 101 to a request that asked for no upgrade")]
    UnexpectedUpgrade,
    #[error("conflicting Content-Length headers from the backend")]
    BadLength,
}

/// Parses a backend response head and, for a final response, appends the client's head to
/// `out`: status line in HTTP/1.1 (an HTTP/1.0 backend must not downgrade the client),
/// hop-by-hop headers removed except `Transfer-Encoding` (the body is relayed as is), `date`
/// added when the backend sent none, and `connection: close` when the client connection ends
/// after this response.
pub fn parse_response(
    buf: &[u8],
    head_request: bool,
    client_close: bool,
    date: &[u8],
    out: &mut Vec<u8>,
) -> Result<Parsed<BackendHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(Parsed::Partial),
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    let (Some(version), Some(status)) = (resp.version, resp.code) else { return Err(HeadError::Malformed) };
    if status == 101 {
        return Err(HeadError::UnexpectedUpgrade);
    }
    if status < 200 {
        return Ok(Parsed::Done(BackendHead::Informational { head_len }));
    }
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut reusable = version == 1;
    let mut listed: Vec<&[u8]> = Vec::new();
    let mut dated = false;
    for h in resp.headers.iter() {
        dated |= h.name.eq_ignore_ascii_case("date");
        if h.name.eq_ignore_ascii_case("content-length") {
            match (content_length(h.value), length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => return Err(HeadError::BadLength),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding says whether the body is chunked (RFC 9112 §6.3).
            chunked = Some(tokens(h.value).last().is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in tokens(h.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    reusable = false;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") {
                    listed.push(token);
                }
            }
        }
    }
    let framing = if head_request || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), length) => {
                // Both framings at once: trust chunked, never reuse the connection.
                reusable &= length.is_none();
                Framing::Chunked
            }
            (Some(false), _) => Framing::Close,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::Close,
        }
    };
    reusable &= framing != Framing::Close;

    out.extend_from_slice(b"HTTP/1.1 ");
    // Three digits: httparse accepts nothing else.
    out.extend_from_slice(&[b'0' + (status / 100) as u8, b'0' + (status / 10 % 10) as u8, b'0' + (status % 10) as u8]);
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in resp.headers.iter() {
        // The body is relayed byte for byte, so its transfer codings stay announced.
        let relayed_framing = h.name.eq_ignore_ascii_case("transfer-encoding");
        let dropped = is_hop_by_hop(h.name) || listed.iter().any(|l| l.eq_ignore_ascii_case(h.name.as_bytes()));
        if relayed_framing || !dropped {
            put_header(out, h.name.as_bytes(), h.value);
        }
    }
    if !dated {
        put_header(out, b"date", date);
    }
    if client_close || framing == Framing::Close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Parsed::Done(BackendHead::Final { head_len, status, framing, reusable }))
}

pub fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A strict `Content-Length`: digits only, no sign, no list, no overflow.
fn content_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// Comma-separated tokens of a header value, trimmed, empty ones skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(raw: &str) -> Parsed<(usize, usize, bool, String)> {
        let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match parse_request(raw.as_bytes(), &mut h, 64 * 1024) {
            Parsed::Done(r) => {
                Parsed::Done((r.head_len, r.body_len, r.close, String::from_utf8_lossy(r.host).into_owned()))
            }
            Parsed::Partial => Parsed::Partial,
            Parsed::Decline => Parsed::Decline,
        }
    }

    #[test]
    fn plain_requests_are_taken() {
        let get = "GET /a?b HTTP/1.1\r\nHost: Example.com:8080\r\n\r\n";
        assert_eq!(classify(get), Parsed::Done((get.len(), 0, false, "Example.com:8080".into())));
        let post = "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nConnection: keep-alive, Close\r\n\r\nhello";
        assert_eq!(classify(post), Parsed::Done((post.len() - 5, 5, true, "a".into())));
        assert_eq!(classify("GET / HTTP/1.1\r\nHost: a\r\n"), Parsed::Partial);
    }

    #[test]
    fn anything_unusual_goes_to_hyper() {
        for raw in [
            "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: __ping__\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 65537\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: x-secret\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX-Debug: 1\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nbad header\r\n\r\n",
        ] {
            assert_eq!(classify(raw), Parsed::Decline, "{raw:?}");
        }
        let huge = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(classify(&huge), Parsed::Partial, "the size limit is the caller's");
    }

    #[test]
    fn backend_head_drops_hop_by_hop_and_adds_missing_forwarded_headers() {
        let raw = "GET /p HTTP/1.1\r\nHost: a\r\nKeep-Alive: 5\r\nConnection: keep-alive\r\nTE: trailers\r\nX-Real-IP: 9.9.9.9\r\nAccept: */*\r\n\r\n";
        let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let Parsed::Done(req) = parse_request(raw.as_bytes(), &mut h, 64 * 1024) else { panic!("declined") };
        let client = ClientInfo::new("::ffff:1.2.3.4".parse().unwrap(), false, 8080);
        let mut out = Vec::new();
        req.write_backend_head(&client, true, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /p HTTP/1.1\r\nHost: a\r\nX-Real-IP: 9.9.9.9\r\nAccept: */*\r\nx-forwarded-for: 1.2.3.4\r\n\
             x-forwarded-proto: http\r\nx-forwarded-protocol: http\r\nx-forwarded-port: 8080\r\n\r\n"
        );
        let mut out = Vec::new();
        req.write_backend_head(&client, false, &mut out);
        assert!(String::from_utf8(out).unwrap().ends_with("connection: close\r\n\r\n"));
        assert_eq!(req.header("x-real-ip"), Some(&b"9.9.9.9"[..]));
    }

    const TEST_DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    fn response(raw: &str, head: bool, close: bool) -> (Result<Parsed<BackendHead>, HeadError>, String) {
        let mut out = Vec::new();
        let r = parse_response(raw.as_bytes(), head, close, TEST_DATE.as_bytes(), &mut out);
        (r, String::from_utf8(out).unwrap())
    }

    fn done(raw: &str, status: u16, framing: Framing, reusable: bool) -> Result<Parsed<BackendHead>, HeadError> {
        Ok(Parsed::Done(BackendHead::Final { head_len: raw.len(), status, framing, reusable }))
    }

    #[test]
    fn response_framing() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(response(raw, false, false).0, done(raw, 200, Framing::Length(3), true));
        assert_eq!(response(raw, true, false).0, done(raw, 200, Framing::Empty, true));
        let raw = "HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(response(raw, false, false).0, done(raw, 204, Framing::Empty, true));
        let raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(response(raw, false, false).0, done(raw, 200, Framing::Chunked, true));
        let raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(response(raw, false, false).0, done(raw, 200, Framing::Chunked, false));
        let raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(response(raw, false, false).0, done(raw, 200, Framing::Close, false));
        let raw = "HTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(response(raw, false, false).0, done(raw, 200, Framing::Close, false));
        let raw = "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(response(raw, false, false).0, done(raw, 200, Framing::Length(1), false));
        let raw = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(response(raw, false, false).0, done(raw, 200, Framing::Length(1), false));
        let raw = "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n";
        assert_eq!(response(raw, false, false).0, Ok(Parsed::Done(BackendHead::Informational { head_len: raw.len() })));
        assert_eq!(response("HTTP/1.1 200 OK\r\n", false, false).0, Ok(Parsed::Partial));
    }

    #[test]
    fn bad_responses_are_errors() {
        assert_eq!(
            response("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false, false).0,
            Err(HeadError::BadLength)
        );
        assert_eq!(response("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false, false).0, Err(HeadError::BadLength));
        assert_eq!(response("HTTP/1.1 101 Switching\r\n\r\n", false, false).0, Err(HeadError::UnexpectedUpgrade));
        assert_eq!(response("HTTX/1.1 200 OK\r\n\r\n", false, false).0, Err(HeadError::Malformed));
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(response(&huge, false, false).0, Err(HeadError::TooLarge));
    }

    #[test]
    fn client_head_is_http_1_1_without_hop_by_hop_headers() {
        let raw = "HTTP/1.0 200 Fine\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\nX-Kept: 1\r\n\r\n";
        let kept = "HTTP/1.1 200 Fine\r\nContent-Length: 2\r\nX-Kept: 1\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n";
        assert_eq!(response(raw, false, false).1, format!("{kept}\r\n"));
        assert_eq!(response(raw, false, true).1, format!("{kept}connection: close\r\n\r\n"));
        // The backend's own Date is relayed, and no second one added.
        let raw = "HTTP/1.1 200 OK\r\nDATE: Mon, 07 Nov 1994 08:49:37 GMT\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(response(raw, false, false).1, raw);
        let raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(
            response(raw, false, false).1,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\nconnection: close\r\n\r\n"
        );
    }
}
