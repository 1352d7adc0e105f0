//! What every request on either HTTP path shares; built once by `server`.

use std::sync::Arc;
use std::time::Duration;

use super::access_log::AccessLog;
use super::client::Backends;
use super::dead::DeadMarker;
use super::h1;
use super::invalid::InvalidBackends;
use super::metrics::Metrics;
use super::pages::Pages;
use super::view::SharedView;

/// Everything the request path of one worker thread uses; built by `server`, one per worker.
pub struct Shared {
    pub view: Arc<SharedView>,
    pub client: Backends,
    pub pages: Pages,
    pub dead: DeadMarker,
    pub access_log: Option<AccessLog>,
    pub metrics: Metrics,
    /// `server.backendTimeout`: how long to wait for a backend's response head.
    pub backend_timeout: Option<Duration>,
    /// `server.retryOnError`.
    pub retry_on_error: u32,
    /// The HTTP/1.1 fast path's backend connections (`h1`).
    pub h1_pool: h1::Pool,
    /// `server.connectTimeout`, for the fast path's own connects.
    pub connect_timeout: Option<Duration>,
    /// `server.headerTimeout`: a whole request head must arrive within it (408).
    pub header_timeout: Option<Duration>,
    /// `server.maxHeaderSize`: the largest request head (431 beyond).
    pub max_header_size: usize,
    /// `server.maxRetryBody`: request bodies up to this size are buffered so a failed attempt
    /// can be retried; larger or unsized bodies stream through and get one attempt (Hipache
    /// retried with an already consumed stream, §3.6, fixed per §9.2).
    pub max_retry_body: u64,
    /// Shared by the workers, so a bad URL is reported once per node, not once per worker.
    pub invalid: Arc<InvalidBackends>,
}
