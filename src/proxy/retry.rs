//! The retry and dead-marking policy of one proxied request (§3.6, §3.7), the same for both
//! HTTP paths: a failed attempt is logged and counted, its backend marked by the dead rules,
//! and the request tried again on a new pick while `server.retryOnError` allows and its body
//! can be sent again. A request the fast path hands over to hyper after failed attempts keeps
//! its `Attempts`, so the hand-over does not grant it a fresh allowance.

use std::fmt::Display;

use super::metrics::BackendError;
use super::pages::msg;
use super::shared::Shared;
use crate::routing::backend::Frontend;
use crate::routing::host::Host;

/// The attempts one request has made so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Attempts {
    retries: u32,
}

impl Attempts {
    /// A backend answered with a response head: 501, 502 and 504–599 still mark it dead.
    pub fn answered(self, shared: &Shared, host: &Host, frontend: &Frontend, idx: usize, status: u16) {
        shared.dead.answered(host.as_bytes(), frontend, idx, status);
    }

    /// An attempt at backend `idx` failed before a response head. Returns `Ok` when the
    /// request should be tried again (counted as a retry), or the message of the 502 page.
    /// `replayable`: the request body can be sent again (it was buffered or is empty).
    pub fn failed(
        &mut self,
        shared: &Shared,
        (host, frontend, idx): (&Host, &Frontend, usize),
        kind: BackendError,
        error: &dyn Display,
        replayable: bool,
    ) -> Result<(), &'static str> {
        let backend = String::from_utf8_lossy(&frontend.backend(idx).url).into_owned();
        tracing::warn!(host = host.as_str(), %backend, idx, %error, "backend error");
        shared.dead.failed(host.as_bytes(), frontend, idx, kind);
        if !replayable {
            return Err(msg::CANNOT_RETRY);
        }
        if shared.retry_on_error == 0 {
            return Err(msg::RETRY_DISABLED);
        }
        if self.retries >= shared.retry_on_error {
            return Err(msg::MAX_RETRIES);
        }
        self.retries += 1;
        shared.metrics.retries.increment(1);
        tracing::info!(host = host.as_str(), retries = self.retries, "retrying");
        Ok(())
    }
}
