//! One proxied request, as a sequence of named steps (see `LIFECYCLE.md`):
//! ping → host → body → [lookup → attempt → classify]* → respond.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as _, Incoming};

use super::access_log;
use super::body::{empty, full, idle_limited, streamed, Body, Observed};
use super::forward::{add_forwarded, is_upgrade, strip_hop_by_hop, ClientInfo};
use super::metrics::BackendError;
use super::pages::{self, msg};
use super::retry::Attempts;
use super::shared::Shared;
use super::{now_ms, upgrade};
use crate::routing::backend::Frontend;
use crate::routing::host::{Host, HostError};
use crate::routing::lookup::Lookup;

static X_DEBUG: HeaderName = HeaderName::from_static("x-debug");
static X_DEBUG_BACKEND_URL: HeaderName = HeaderName::from_static("x-debug-backend-url");
static X_DEBUG_BACKEND_ID: HeaderName = HeaderName::from_static("x-debug-backend-id");
static X_DEBUG_VHOST: HeaderName = HeaderName::from_static("x-debug-vhost");
static X_DEBUG_FRONTEND_KEY: HeaderName = HeaderName::from_static("x-debug-frontend-key");
static X_DEBUG_TIME_TOTAL: HeaderName = HeaderName::from_static("x-debug-time-total");
static X_DEBUG_TIME_BACKEND: HeaderName = HeaderName::from_static("x-debug-time-backend");

/// The request body as far as retrying is concerned.
enum RequestBody {
    /// Empty or buffered: every attempt sends a copy.
    Replayable(Bytes),
    /// Streams to the first attempt only.
    Streaming(Option<Incoming>),
}

/// What the request looked like, for the access log and X-Debug headers.
struct Context {
    start: Instant,
    /// The client's HTTP version (the backend request is always HTTP/1.1).
    version: Version,
    time: SystemTime,
    host: Host,
    debug: bool,
}

/// Answers one request. `attempts` is what the fast path already spent on it before handing
/// the connection over (nothing for any other request).
pub async fn handle(
    shared: Arc<Shared>,
    client: Arc<ClientInfo>,
    mut req: Request<Incoming>,
    attempts: Attempts,
) -> Result<Response<Body>, Infallible> {
    let start = Instant::now();
    let debug = req.headers().contains_key(&X_DEBUG);
    let raw_host = request_host(&req);
    // Exact and case-sensitive, port included, as in Hipache (§3.1).
    if raw_host == b"__ping__" {
        return Ok(respond(&shared, pages::ping(), start));
    }
    let host = match Host::parse(raw_host) {
        Ok(h) => h,
        Err(e) => {
            let message = if e == HostError::Missing { msg::NO_HOST } else { msg::INVALID_HOST };
            return Ok(respond(&shared, shared.pages.error(StatusCode::BAD_REQUEST, message, debug), start));
        }
    };
    let ctx = Context { start, version: req.version(), time: SystemTime::now(), host, debug };
    let upgrade = req.version() == Version::HTTP_11 && is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let body = match read_body(body, upgrade, shared.max_retry_body).await {
        Ok(b) => b,
        // The client went away or sent a broken body: nobody reads this answer.
        Err(()) => {
            return Ok(respond(&shared, shared.pages.error(StatusCode::BAD_REQUEST, msg::BAD_BODY, debug), start))
        }
    };
    prepare_headers(&mut parts, &client, upgrade);
    Ok(proxy(&shared, &ctx, parts, body, client_upgrade, attempts).await)
}

/// `Host`, or the HTTP/2 `:authority` when there is no `Host` header.
fn request_host<B>(req: &Request<B>) -> &[u8] {
    match req.headers().get(header::HOST) {
        Some(h) => h.as_bytes(),
        None => req.uri().authority().map_or(b"".as_slice(), |a| a.as_str().as_bytes()),
    }
}

async fn read_body(body: Incoming, upgrade: bool, max: u64) -> Result<RequestBody, ()> {
    if upgrade || body.is_end_stream() {
        return Ok(RequestBody::Replayable(Bytes::new()));
    }
    match body.size_hint().exact() {
        Some(len) if len <= max => {
            let collected =
                Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX)).collect().await.map_err(|_| ())?;
            Ok(RequestBody::Replayable(collected.to_bytes()))
        }
        _ => Ok(RequestBody::Streaming(Some(body))),
    }
}

/// Request headers as the backend sees them: hop-by-hop removed, `X-Forwarded-*` added,
/// `Host` kept as the client sent it (Hipache), or taken from `:authority` for HTTP/2.
fn prepare_headers(parts: &mut Parts, client: &ClientInfo, upgrade: bool) {
    if parts.version == Version::HTTP_2 && !parts.headers.contains_key(header::HOST) {
        if let Some(value) = parts.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
            parts.headers.insert(header::HOST, value);
        }
    }
    strip_hop_by_hop(&mut parts.headers, upgrade);
    add_forwarded(&mut parts.headers, client);
    // Backends speak HTTP/1.1 whatever the client negotiated.
    parts.version = Version::HTTP_11;
}

/// The lookup → attempt → retry loop (§3.6).
async fn proxy(
    shared: &Shared,
    ctx: &Context,
    parts: Parts,
    mut body: RequestBody,
    mut client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    mut attempts: Attempts,
) -> Response<Body> {
    let path = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    loop {
        let (frontend, idx) = match shared.view.load().lookup(&ctx.host, now_ms(), |n| rand::random_range(0..n)) {
            Lookup::NotFound => return error(shared, ctx, StatusCode::BAD_REQUEST, msg::NOT_FOUND),
            Lookup::NoBackend(_) => return error(shared, ctx, StatusCode::BAD_GATEWAY, msg::NO_BACKEND),
            Lookup::Backend(f, i) => (f, i),
        };
        let backend = frontend.backend(idx);
        let Some(target) = &backend.target else {
            shared.invalid.report(&ctx.host, &frontend, idx);
            return error(shared, ctx, StatusCode::BAD_GATEWAY, msg::INVALID_BACKEND);
        };
        let uri = Uri::builder()
            .scheme(target.scheme.clone())
            .authority(target.authority.clone())
            .path_and_query(path.clone());
        let attempt_body = match &mut body {
            RequestBody::Replayable(b) if b.is_empty() => empty(),
            RequestBody::Replayable(b) => full(b.clone()),
            // A client whose upload stops is cut after `backendTimeout` too, so it cannot
            // hold a backend connection; the backend is not to blame, nothing is marked.
            RequestBody::Streaming(b) => b.take().map_or_else(empty, |b| match shared.backend_timeout {
                Some(timeout) => idle_limited(streamed(b), timeout, Box::new(|| {})),
                None => streamed(b),
            }),
        };
        let mut up = Request::new(attempt_body);
        *up.method_mut() = parts.method.clone();
        *up.uri_mut() = match uri.build() {
            Ok(u) => u,
            Err(_) => return error(shared, ctx, StatusCode::BAD_GATEWAY, msg::INVALID_BACKEND),
        };
        *up.version_mut() = parts.version;
        *up.headers_mut() = parts.headers.clone();

        let backend_start = Instant::now();
        let sent = shared.client.request(up);
        let result = match shared.backend_timeout {
            Some(t) => tokio::time::timeout(t, sent).await.map_err(|_| BackendError::Timeout),
            None => Ok(sent.await),
        };
        let (kind, error) = match result {
            Ok(Ok(mut resp)) => {
                attempts.answered(shared, &ctx.host, &frontend, idx, resp.status().as_u16());
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    if let Some(client_side) = client_upgrade.take() {
                        upgrade::tunnel(client_side, hyper::upgrade::on(&mut resp), shared.metrics.clone());
                    }
                }
                return proxied(shared, ctx, &parts, resp, &frontend, idx, backend_start);
            }
            Ok(Err(e)) => {
                let kind = if e.is_connect() { BackendError::Connect } else { BackendError::Other };
                (kind, error_chain(&e))
            }
            Err(timeout) => (timeout, "no response head in time".to_owned()),
        };
        let replayable = matches!(body, RequestBody::Replayable(_));
        if let Err(message) = attempts.failed(shared, (&ctx.host, &frontend, idx), kind, &error, replayable) {
            let resp = shared.pages.error(StatusCode::BAD_GATEWAY, message, ctx.debug);
            return logged(shared, ctx, &parts, resp, &frontend.id(), backend_start);
        }
    }
}

/// The full cause, e.g. "client error (Connect): tcp connect error: Connection refused".
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A backend's response on its way to the client.
fn proxied(
    shared: &Shared,
    ctx: &Context,
    parts: &Parts,
    resp: Response<Incoming>,
    frontend: &Frontend,
    idx: usize,
    backend_start: Instant,
) -> Response<Body> {
    let (mut head, body) = resp.into_parts();
    // Answer in the client's protocol version, not the backend's (an HTTP/1.0 backend must
    // not downgrade an HTTP/1.1 client's keep-alive connection).
    head.version = ctx.version;
    if head.status != StatusCode::SWITCHING_PROTOCOLS {
        strip_hop_by_hop(&mut head.headers, false);
    }
    if ctx.debug {
        let h = &mut head.headers;
        h.insert(pages::X_DEBUG_VERSION.clone(), pages::VERSION.clone());
        h.insert(X_DEBUG_BACKEND_URL.clone(), frontend.backend(idx).url_header());
        h.insert(X_DEBUG_BACKEND_ID.clone(), HeaderValue::from(idx));
        if let Ok(v) = HeaderValue::from_maybe_shared(frontend.id()) {
            h.insert(X_DEBUG_VHOST.clone(), v);
        }
        if let Ok(v) = HeaderValue::from_str(ctx.host.as_str()) {
            h.insert(X_DEBUG_FRONTEND_KEY.clone(), v);
        }
        h.insert(X_DEBUG_TIME_TOTAL.clone(), HeaderValue::from(ctx.start.elapsed().as_millis() as u64));
        h.insert(X_DEBUG_TIME_BACKEND.clone(), HeaderValue::from(backend_start.elapsed().as_millis() as u64));
    }
    let body = match shared.backend_timeout {
        Some(timeout) => {
            let (dead, host, frontend) = (shared.dead.clone(), ctx.host, frontend.clone());
            let on_stall = move || {
                tracing::warn!(host = host.as_str(), idx, ?timeout, "backend body stalled; cutting the response");
                dead.failed(host.as_bytes(), &frontend, idx, BackendError::Timeout);
            };
            idle_limited(streamed(body), timeout, Box::new(on_stall))
        }
        None => streamed(body),
    };
    let resp = Response::from_parts(head, body);
    logged(shared, ctx, parts, resp, &frontend.id(), backend_start)
}

/// Counts the response and, when the access log is on, logs it once its body has ended.
/// Only requests that reached a backend are logged, as in Hipache (§4.2).
fn logged(
    shared: &Shared,
    ctx: &Context,
    parts: &Parts,
    resp: Response<Body>,
    identifier: &Bytes,
    backend_start: Instant,
) -> Response<Body> {
    let resp = respond(shared, resp, ctx.start);
    let Some(log) = &shared.access_log else { return resp };
    let header = |name: header::HeaderName| parts.headers.get(name).cloned();
    let request = access_log::Request {
        // The X-Real-IP sent to the backend: Hipache logs that header, the client's or ours.
        remote: parts.headers.get("x-real-ip").cloned(),
        time: ctx.time,
        method: parts.method.clone(),
        uri: parts.uri.path_and_query().map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone())),
        version: ctx.version,
        referer: header(header::REFERER),
        user_agent: header(header::USER_AGENT),
    };
    let on_end = log.on_end(request, resp.status().as_u16(), identifier.clone(), ctx.start, backend_start);
    resp.map(|body| Observed::wrap(body, on_end))
}

fn error(shared: &Shared, ctx: &Context, status: StatusCode, message: &'static str) -> Response<Body> {
    respond(shared, shared.pages.error(status, message, ctx.debug), ctx.start)
}

fn respond(shared: &Shared, resp: Response<Body>, start: Instant) -> Response<Body> {
    shared.metrics.response(resp.status().as_u16(), start.elapsed());
    resp
}
