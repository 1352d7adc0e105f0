//! Responses the proxy produces itself: error pages and `__ping__` (§3.3, §3.9, §3.10).
//!
//! Pages are `<staticDir>/error_<code>.html`, else `error_default.html`, else the plain
//! message, with Hipache's no-cache headers. They are read once at start-up rather than
//! streamed from disk per request as Hipache did: an error storm must not become a disk
//! storm. Changing a page therefore needs a restart. Without `server.staticDir` the pages
//! bundled in the repository's `static/` are used; they are compiled into the binary, so an
//! installed binary needs no install directory (Hipache looked in `<install dir>/static`).

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use super::body::{full, Body};

pub static X_DEBUG_ERROR: HeaderName = HeaderName::from_static("x-debug-error");
pub static X_DEBUG_VERSION: HeaderName = HeaderName::from_static("x-debug-version-hipache");
pub static VERSION: HeaderValue = HeaderValue::from_static(concat!("hipache-raft/", env!("CARGO_PKG_VERSION")));

/// Error messages, Hipache's wording (`X-Debug-Error`, and the body when no page exists).
pub mod msg {
    pub const NO_HOST: &str = "no host header";
    pub const INVALID_HOST: &str = "invalid host header";
    /// The client sent a body that could not be read (aborted, or longer than announced).
    pub const BAD_BODY: &str = "cannot read the request body";
    /// The request head did not arrive within `server.headerTimeout`.
    pub const HEAD_TIMEOUT: &str = "request head not received in time";
    /// The request head is larger than `server.maxHeaderSize`.
    pub const HEAD_TOO_LARGE: &str = "request head too large";
    pub const NOT_FOUND: &str = "frontend not found";
    pub const NO_BACKEND: &str = "Cannot find a valid backend";
    pub const INVALID_BACKEND: &str = "backend is invalid";
    pub const MAX_RETRIES: &str = "Reached max retries limit";
    pub const RETRY_DISABLED: &str = "Retry on error is disabled";
    /// The body was already streamed to a failing backend, so it cannot be sent again.
    pub const CANNOT_RETRY: &str = "Cannot retry on error";
}

#[derive(Debug, Default, Clone)]
pub struct Pages {
    by_code: HashMap<u16, Bytes>,
    default: Option<Bytes>,
}

impl Pages {
    /// The repository's `static/` pages, compiled in.
    pub fn bundled() -> Pages {
        let page = |html: &'static [u8]| Bytes::from_static(html);
        Pages {
            by_code: HashMap::from([
                (400, page(include_bytes!("../../static/error_400.html"))),
                (502, page(include_bytes!("../../static/error_502.html"))),
                (504, page(include_bytes!("../../static/error_504.html"))),
            ]),
            default: Some(page(include_bytes!("../../static/error_default.html"))),
        }
    }

    /// Reads every `error_<code>.html` and `error_default.html` in `dir`. A missing directory
    /// is not fatal: the plain-text messages remain.
    pub fn load(dir: &Path) -> Pages {
        let mut pages = Pages::default();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "no error pages; answering plain text");
                return pages;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_prefix("error_")?.strip_suffix(".html")) else {
                continue;
            };
            let body = match std::fs::read(entry.path()) {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "cannot read error page");
                    continue;
                }
            };
            match stem {
                "default" => pages.default = Some(body),
                code => {
                    if let Ok(code) = code.parse() {
                        pages.by_code.insert(code, body);
                    }
                }
            }
        }
        pages
    }

    fn page(&self, status: StatusCode) -> Option<&Bytes> {
        match status {
            StatusCode::OK => None,
            _ => self.by_code.get(&status.as_u16()).or(self.default.as_ref()),
        }
    }

    /// An error response; `debug` adds `X-Debug-Error` (the request had `X-Debug`).
    pub fn error(&self, status: StatusCode, message: &'static str, debug: bool) -> Response<Body> {
        let mut resp = match self.page(status) {
            Some(html) => {
                let mut r = Response::new(full(html.clone()));
                for (name, value) in PAGE_HEADERS {
                    r.headers_mut().insert(name, HeaderValue::from_static(value));
                }
                r
            }
            None => plain(message),
        };
        *resp.status_mut() = status;
        if debug {
            resp.headers_mut().insert(X_DEBUG_ERROR.clone(), HeaderValue::from_static(message));
            resp.headers_mut().insert(X_DEBUG_VERSION.clone(), VERSION.clone());
        }
        resp
    }

    /// The same error as a whole HTTP/1.1 message that closes the connection, for the fast
    /// path, which answers a client before any request exists (a head too slow or too large).
    pub fn error_message(&self, status: StatusCode, message: &'static str) -> Vec<u8> {
        let (body, headers): (&[u8], &[(HeaderName, &str)]) = match self.page(status) {
            Some(html) => (html, &PAGE_HEADERS),
            None => (message.as_bytes(), &[(header::CONTENT_TYPE, "text/plain")]),
        };
        let mut out = format!("HTTP/1.1 {} {}\r\n", status.as_u16(), status.canonical_reason().unwrap_or(""));
        for (name, value) in headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()));
        let mut out = out.into_bytes();
        out.extend_from_slice(body);
        out
    }
}

/// Headers of an HTML error page: Hipache's, telling caches not to keep it.
const PAGE_HEADERS: [(HeaderName, &str); 4] = [
    (header::CONTENT_TYPE, "text/html"),
    (header::CACHE_CONTROL, "no-cache"),
    (header::PRAGMA, "no-cache"),
    (header::EXPIRES, "-1"),
];

/// `Host: __ping__`: 200 `ok`, no backend involved (§3.1).
pub fn ping() -> Response<Body> {
    plain("ok")
}

fn plain(text: &'static str) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from_static(text.as_bytes())));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_code_page_then_default_then_text() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("error_400.html"), "<p>400</p>").unwrap();
        std::fs::write(dir.path().join("error_default.html"), "<p>default</p>").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let pages = Pages::load(dir.path());
        let r = pages.error(StatusCode::BAD_REQUEST, msg::NOT_FOUND, true);
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()["content-type"], "text/html");
        assert_eq!(r.headers()["cache-control"], "no-cache");
        assert_eq!(r.headers()["pragma"], "no-cache");
        assert_eq!(r.headers()["expires"], "-1");
        assert_eq!(r.headers()["x-debug-error"], "frontend not found");
        let r = pages.error(StatusCode::BAD_GATEWAY, msg::NO_BACKEND, false);
        assert_eq!(r.headers()["content-type"], "text/html");
        assert!(!r.headers().contains_key("x-debug-error"));
        let bundled = Pages::bundled().error(StatusCode::BAD_REQUEST, msg::NOT_FOUND, false);
        assert_eq!(bundled.headers()["content-type"], "text/html");
        let none = Pages::load(&dir.path().join("missing"));
        let r = none.error(StatusCode::BAD_GATEWAY, msg::NO_BACKEND, false);
        assert_eq!(r.headers()["content-type"], "text/plain");
    }

    #[test]
    fn fast_path_errors_are_whole_messages_that_close() {
        let raw = Pages::bundled().error_message(StatusCode::REQUEST_TIMEOUT, msg::HEAD_TIMEOUT);
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{head}");
        assert!(head.contains("content-type: text/html\r\n") && head.contains("connection: close"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let plain = Pages::default().error_message(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, msg::HEAD_TOO_LARGE);
        let text = String::from_utf8(plain).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nrequest head too large"), "{text}");
    }
}
