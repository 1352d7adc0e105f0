//! The HTTP/1.1 fast path: a client connection's ordinary requests proxied with one parse of
//! each head, raw header copies and a pool of plain backend sockets, instead of hyper's
//! server and client (about three quarters of our per-request CPU, docs/benchmarks.md).
//!
//! It takes only what it can do exactly like the hyper path ([`head::parse_request`] says
//! which requests), and only for `http://` backends. Everything else — a request it
//! declines, a lookup that does not pick a plain backend (400/502 pages, `https://`
//! backends), HTTP/2, upgrades — goes to hyper with the bytes already read put back
//! ([`Rewind`]), for the rest of the connection. Both paths share the routing view, dead
//! marking, retry rules, metrics and access log.

pub(crate) mod chunked;
mod date;
pub(crate) mod head;
mod pool;
mod rewind;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, BytesMut};
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Method, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::access_log;
use super::body::{Body, OnEnd, Stalled};
use super::forward::ClientInfo;
use super::metrics::BackendError;
use super::now_ms;
use super::pages::msg;
use super::retry::Attempts;
use super::shared::Shared;
use crate::routing::backend::Frontend;
use crate::routing::host::Host;
use crate::routing::lookup::Lookup;
use chunked::ChunkedScanner;
use head::{BackendHead, ClientRequest, Framing, Parsed, MAX_HEADERS};
pub use pool::Pool;
pub use rewind::Rewind;

/// How a connection left the fast path.
pub enum Ended<I> {
    /// Closed (by either side, an idle timeout, or shutdown).
    Closed,
    /// hyper serves the rest of the connection, starting with the bytes put back; its first
    /// request has already made these attempts here.
    Hyper(Rewind<I>, Attempts),
}

/// Backend reads: one read takes a typical response whole.
const READ_CHUNK: usize = 16 * 1024;
/// Client reads: request heads are small, and an idle keep-alive connection holds only this.
const CLIENT_CHUNK: usize = 4 * 1024;

/// Serves `io` until it closes or hyper must take over. `idle_timeout` is `server.tcpTimeout`
/// (hyper's `header_read_timeout` on the other path); `shutdown` stops it between requests.
pub async fn serve<I>(
    shared: Arc<Shared>,
    client: Arc<ClientInfo>,
    mut io: I,
    idle_timeout: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) -> Ended<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn =
        Conn { shared: &shared, client: &client, bbuf: BytesMut::new(), out: Vec::new(), client_timeout: idle_timeout };
    // Bytes from the client not yet handled. A request stays in it until it is answered, so
    // a declined one goes to hyper as it arrived, with whatever follows it.
    let mut buf = BytesMut::new();
    // When the head being received must be complete (`server.headerTimeout`): set at its
    // first bytes, so a client trickling a byte at a time cannot hold the connection.
    let mut head_deadline: Option<Instant> = None;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let parsed = if buf.is_empty() {
            Parsed::Partial
        } else {
            head::parse_request(&buf, &mut headers, shared.max_retry_body)
        };
        let head_len = match &parsed {
            Parsed::Done(req) => req.head_len,
            _ => buf.len(),
        };
        if head_len > shared.max_header_size {
            return refuse(&mut io, &shared, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, msg::HEAD_TOO_LARGE).await;
        }
        match parsed {
            Parsed::Done(req) if buf.len() >= req.head_len + req.body_len => {
                head_deadline = None;
                let need = req.head_len + req.body_len;
                let flow = conn.proxy(&req, &buf[..need], &mut io).await;
                // Idle keep-alive connections keep no backend-sized buffers: thousands of
                // them would otherwise pin tens of KiB each.
                conn.bbuf = BytesMut::new();
                conn.out = Vec::new();
                match flow {
                    Flow::KeepAlive if !*shutdown.borrow() => {
                        buf.advance(need);
                        continue;
                    }
                    Flow::KeepAlive | Flow::Close => {
                        let _ = io.shutdown().await;
                        return Ended::Closed;
                    }
                    Flow::Abort => return Ended::Closed,
                    Flow::Decline(attempts) => return Ended::Hyper(Rewind::new(buf.freeze(), io), attempts),
                }
            }
            Parsed::Decline => return Ended::Hyper(Rewind::new(buf.freeze(), io), Attempts::default()),
            // The head is complete, the body is not: its reads have `tcpTimeout` each.
            Parsed::Done(_) => head_deadline = None,
            Parsed::Partial if buf.is_empty() => {}
            Parsed::Partial => {
                head_deadline = head_deadline.or_else(|| shared.header_timeout.map(|t| Instant::now() + t));
            }
        }
        let idle = buf.is_empty();
        if idle && *shutdown.borrow() {
            return Ended::Closed;
        }
        buf.reserve(CLIENT_CHUNK);
        // The nearer of the idle timeout (from now) and the head's deadline.
        let head_left = head_deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let wait = match (idle_timeout, head_left) {
            (Some(idle), Some(head)) => Some(idle.min(head)),
            (idle, head) => idle.or(head),
        };
        let read = async {
            match wait {
                Some(t) => tokio::time::timeout(t, io.read_buf(&mut buf)).await.ok(),
                None => Some(io.read_buf(&mut buf).await),
            }
        };
        let n = if idle {
            tokio::select! {
                n = read => n,
                // A dropped sender means no shutdown will ever come.
                Ok(_) = shutdown.wait_for(|stop| *stop) => return Ended::Closed,
            }
        } else {
            read.await
        };
        match n {
            None if head_deadline.is_some_and(|d| Instant::now() >= d) => {
                return refuse(&mut io, &shared, StatusCode::REQUEST_TIMEOUT, msg::HEAD_TIMEOUT).await;
            }
            None | Some(Ok(0) | Err(_)) => return Ended::Closed,
            Some(Ok(_)) => {}
        }
    }
}

/// Answers a client whose request head broke a limit, before any request exists, and closes:
/// what follows an oversized or unfinished head cannot be framed.
async fn refuse<I: AsyncWrite + Unpin>(
    io: &mut I,
    shared: &Shared,
    status: StatusCode,
    message: &'static str,
) -> Ended<I> {
    tracing::debug!(status = status.as_u16(), message, "request head refused");
    let _ = io.write_all(&shared.pages.error_message(status, message)).await;
    let _ = io.shutdown().await;
    Ended::Closed
}

/// What the connection does after one request.
enum Flow {
    KeepAlive,
    /// The response is complete but the connection must end (client asked, or the body
    /// was delimited by the backend closing).
    Close,
    /// Broken mid-response: close without further writes.
    Abort,
    /// Nothing was sent: hyper answers this request, after the attempts made here, and the
    /// rest of the connection.
    Decline(Attempts),
}

/// Why an attempt failed before anything reached the client.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("connect: {0}")]
    Connect(io::Error),
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("no response head in time")]
    Timeout,
    #[error("{0}")]
    Other(String),
    /// A pooled connection the backend had closed while idle: retried on a new connection,
    /// neither counted as a retry nor marking the backend.
    #[error("pooled connection closed by the backend")]
    Stale,
}

impl Failure {
    fn kind(&self) -> BackendError {
        match self {
            Failure::Connect(_) | Failure::ConnectTimeout => BackendError::Connect,
            Failure::Timeout => BackendError::Timeout,
            Failure::Other(_) | Failure::Stale => BackendError::Other,
        }
    }
}

/// A backend that answered with a response head.
struct Answered {
    conn: TcpStream,
    head_len: usize,
    status: u16,
    framing: Framing,
    reusable: bool,
}

/// Per-connection state and buffers.
struct Conn<'a> {
    shared: &'a Shared,
    client: &'a ClientInfo,
    /// Bytes from the backend.
    bbuf: BytesMut,
    /// The next write to the client.
    out: Vec<u8>,
    /// `server.tcpTimeout`, for writes to a client that stopped reading.
    client_timeout: Option<Duration>,
}

impl Conn<'_> {
    /// Answers `req`, whose head and body are `raw`.
    async fn proxy<I: AsyncWrite + Unpin>(&mut self, req: &ClientRequest<'_, '_>, raw: &[u8], io: &mut I) -> Flow {
        let start = Instant::now();
        let time = self.shared.access_log.is_some().then(SystemTime::now);
        let Ok(host) = Host::parse(req.host) else { return Flow::Decline(Attempts::default()) };
        let mut request = Vec::with_capacity(raw.len() + 160);
        req.write_backend_head(self.client, self.shared.h1_pool.keeps_alive(), &mut request);
        request.extend_from_slice(&raw[req.head_len..]);
        let head_request = req.method == "HEAD";

        let mut attempts = Attempts::default();
        let mut fresh_only = false;
        loop {
            let Some((frontend, idx, authority)) = pick(self.shared, &host) else { return Flow::Decline(attempts) };
            let backend_start = Instant::now();
            let failure = match self.attempt(&authority, &request, head_request, req.close, fresh_only).await {
                Ok(answered) => {
                    attempts.answered(self.shared, &host, &frontend, idx, answered.status);
                    self.shared.metrics.response(answered.status, start.elapsed());
                    let log = self.log_record(req, time, answered.status, &frontend, start, backend_start);
                    return self.relay(io, answered, req.close, log, (&authority, &host, &frontend, idx)).await;
                }
                Err(Failure::Stale) if !fresh_only => {
                    fresh_only = true;
                    continue;
                }
                Err(failure) => failure,
            };
            // The fast path takes only requests whose whole body it holds: always replayable.
            if let Err(message) = attempts.failed(self.shared, (&host, &frontend, idx), failure.kind(), &failure, true)
            {
                let page = self.shared.pages.error(StatusCode::BAD_GATEWAY, message, false);
                self.shared.metrics.response(page.status().as_u16(), start.elapsed());
                let log = self.log_record(req, time, page.status().as_u16(), &frontend, start, backend_start);
                return self.write_page(io, page, req.close, log).await;
            }
        }
    }

    /// Sends the request on a pooled or new connection and reads the response head; on
    /// success `self.out` holds the client's head.
    async fn attempt(
        &mut self,
        authority: &Authority,
        request: &[u8],
        head_request: bool,
        client_close: bool,
        fresh_only: bool,
    ) -> Result<Answered, Failure> {
        let pooled = if fresh_only { None } else { self.shared.h1_pool.checkout(authority) };
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(c) => c,
            None => connect(authority, self.shared.connect_timeout).await?,
        };
        let lost = |e: io::Error| if reused { Failure::Stale } else { Failure::Other(e.to_string()) };
        conn.write_all(request).await.map_err(lost)?;
        self.bbuf.clear();
        let (bbuf, out) = (&mut self.bbuf, &mut self.out);
        let read_head = async {
            let mut received = false;
            loop {
                bbuf.reserve(READ_CHUNK);
                match conn.read_buf(bbuf).await {
                    Ok(0) if !received => return Err(lost(io::ErrorKind::UnexpectedEof.into())),
                    Ok(0) => return Err(Failure::Other("the backend closed before a complete response head".into())),
                    Ok(_) => received = true,
                    Err(e) if !received => return Err(lost(e)),
                    Err(e) => return Err(Failure::Other(e.to_string())),
                }
                loop {
                    out.clear();
                    match date::with_now(|now| head::parse_response(bbuf, head_request, client_close, now, out)) {
                        Ok(Parsed::Done(BackendHead::Informational { head_len })) => bbuf.advance(head_len),
                        Ok(Parsed::Done(BackendHead::Final { head_len, status, framing, reusable })) => {
                            return Ok((head_len, status, framing, reusable));
                        }
                        Ok(Parsed::Partial | Parsed::Decline) => break,
                        Err(e) => return Err(Failure::Other(e.to_string())),
                    }
                }
            }
        };
        let (head_len, status, framing, reusable) = match self.shared.backend_timeout {
            Some(t) => tokio::time::timeout(t, read_head).await.map_err(|_| Failure::Timeout)??,
            None => read_head.await?,
        };
        Ok(Answered { conn, head_len, status, framing, reusable })
    }

    /// Sends the head in `self.out` with the body, then pools the backend connection if the
    /// response ended cleanly on it.
    async fn relay<I: AsyncWrite + Unpin>(
        &mut self,
        io: &mut I,
        answered: Answered,
        client_close: bool,
        log: Option<Box<dyn OnEnd>>,
        (authority, host, frontend, idx): (&Authority, &Host, &Frontend, usize),
    ) -> Flow {
        let Answered { mut conn, head_len, framing, reusable, .. } = answered;
        let (flow, sent, clean) = match self.relay_body(io, &mut conn, head_len, framing).await {
            Ok(relayed) => relayed,
            Err((Stalled(timeout), sent)) => {
                tracing::warn!(host = host.as_str(), idx, ?timeout, "backend body stalled; cutting the response");
                self.shared.dead.failed(host.as_bytes(), frontend, idx, BackendError::Timeout);
                (Flow::Abort, sent, false)
            }
        };
        if let Some(log) = log {
            log.ended(sent);
        }
        match flow {
            Flow::KeepAlive => {
                if reusable && clean {
                    self.shared.h1_pool.checkin(authority, conn);
                }
                if client_close || framing == Framing::Close {
                    Flow::Close
                } else {
                    Flow::KeepAlive
                }
            }
            other => other,
        }
    }

    /// Relays the body as the backend frames it, starting with what followed its head in
    /// `self.bbuf`. Returns the flow, the body bytes sent, and whether the backend sent
    /// nothing past the body's end (else its connection is not reused); or, when the backend
    /// sent nothing for `backendTimeout`, the stall and the bytes sent before it.
    async fn relay_body<I: AsyncWrite + Unpin>(
        &mut self,
        io: &mut I,
        conn: &mut TcpStream,
        head_len: usize,
        framing: Framing,
    ) -> Result<(Flow, u64, bool), (Stalled, u64)> {
        let mut scanner = ChunkedScanner::default();
        let mut left = if let Framing::Length(n) = framing { n } else { 0 };
        let mut sent = 0u64;
        let mut from = head_len;
        loop {
            let chunk = &self.bbuf[from..];
            let (take, done) = match framing {
                Framing::Empty => (0, true),
                Framing::Length(_) => {
                    let take = left.min(chunk.len() as u64);
                    (take as usize, take == left)
                }
                Framing::Chunked => match scanner.feed(chunk) {
                    Ok(Some(end)) => (end, true),
                    Ok(None) => (chunk.len(), false),
                    Err(e) => {
                        tracing::warn!(error = %e, "backend response body");
                        return Ok((Flow::Abort, sent, false));
                    }
                },
                Framing::Close => (chunk.len(), false),
            };
            let clean = take == chunk.len();
            self.out.extend_from_slice(&chunk[..take]);
            sent += take as u64;
            left = left.saturating_sub(take as u64);
            // A client that stops reading is cut after `tcpTimeout`, as one that stops sending.
            let written = match self.client_timeout {
                Some(t) => tokio::time::timeout(t, io.write_all(&self.out))
                    .await
                    .unwrap_or(Err(io::ErrorKind::TimedOut.into())),
                None => io.write_all(&self.out).await,
            };
            self.out.clear();
            if written.is_err() {
                return Ok((Flow::Abort, sent, false));
            }
            if done {
                let _ = io.flush().await;
                return Ok((Flow::KeepAlive, sent, clean));
            }
            self.bbuf.clear();
            self.bbuf.reserve(READ_CHUNK);
            from = 0;
            let read = conn.read_buf(&mut self.bbuf);
            let read = match self.shared.backend_timeout {
                Some(t) => tokio::time::timeout(t, read).await.map_err(|_| (Stalled(t), sent))?,
                None => read.await,
            };
            match read {
                Ok(0) if framing == Framing::Close => {
                    let _ = io.flush().await;
                    return Ok((Flow::KeepAlive, sent, false));
                }
                Ok(0) | Err(_) => return Ok((Flow::Abort, sent, false)),
                Ok(_) => {}
            }
        }
    }

    /// The access-log record of this request, when the log is on (§4.2).
    fn log_record(
        &self,
        req: &ClientRequest,
        time: Option<SystemTime>,
        status: u16,
        frontend: &Frontend,
        start: Instant,
        backend_start: Instant,
    ) -> Option<Box<dyn OnEnd>> {
        let (log, time) = (self.shared.access_log.as_ref()?, time?);
        let header = |name| req.header(name).and_then(|v| HeaderValue::from_bytes(v).ok());
        let request = access_log::Request {
            remote: header("x-real-ip").or_else(|| Some(self.client.ip.clone())),
            time,
            method: Method::from_bytes(req.method.as_bytes()).unwrap_or(Method::GET),
            uri: Uri::try_from(req.path).unwrap_or_else(|_| Uri::from_static("/")),
            version: Version::HTTP_11,
            referer: header("referer"),
            user_agent: header("user-agent"),
        };
        Some(log.on_end(request, status, frontend.id(), start, backend_start))
    }

    /// One of our own pages (502 after the last retry), in HTTP/1.1.
    async fn write_page<I: AsyncWrite + Unpin>(
        &mut self,
        io: &mut I,
        page: Response<Body>,
        close: bool,
        log: Option<Box<dyn OnEnd>>,
    ) -> Flow {
        let (parts, body) = page.into_parts();
        // Pages are in memory: collecting never waits.
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(parts.status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &parts.headers {
            head::put_header(out, name.as_str().as_bytes(), value.as_bytes());
        }
        if !parts.headers.contains_key(http::header::CONTENT_LENGTH) {
            head::put_header(out, b"content-length", body.len().to_string().as_bytes());
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);
        let written = io.write_all(out).await.and(io.flush().await);
        out.clear();
        if let Some(log) = log {
            log.ended(body.len() as u64);
        }
        match written {
            Ok(()) if close => Flow::Close,
            Ok(()) => Flow::KeepAlive,
            Err(_) => Flow::Abort,
        }
    }
}

/// A live `http://` backend for `host`, or `None` when hyper's path must answer (no frontend,
/// no live backend, an invalid or `https://` backend).
fn pick(shared: &Shared, host: &Host) -> Option<(Frontend, usize, Authority)> {
    match shared.view.load().lookup(host, now_ms(), |n| rand::random_range(0..n)) {
        Lookup::Backend(frontend, idx) => {
            let target = frontend.backend(idx).target.filter(|t| t.scheme == Scheme::HTTP)?;
            Some((frontend, idx, target.authority))
        }
        Lookup::NotFound | Lookup::NoBackend(_) => None,
    }
}

async fn connect(authority: &Authority, timeout: Option<Duration>) -> Result<TcpStream, Failure> {
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let connecting = TcpStream::connect((host, authority.port_u16().unwrap_or(80)));
    let stream = match timeout {
        Some(t) => tokio::time::timeout(t, connecting).await.map_err(|_| Failure::ConnectTimeout)?,
        None => connecting.await,
    }
    .map_err(Failure::Connect)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
