//! Body types: one boxed body for everything the proxy sends, a wrapper that notices when a
//! response body has been fully sent (or abandoned) to write its access-log line, and one
//! that fails a backend's body that stops arriving.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use tokio::time::Sleep;

/// Why a body ended early: the peer's error, or [`Stalled`].
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Streams through (`Incoming` boxed) or holds a buffered/generated payload.
pub type Body = BoxBody<Bytes, BodyError>;

pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A body received from a peer, as the proxy sends it on.
pub fn streamed(body: Incoming) -> Body {
    body.map_err(BodyError::from).boxed()
}

/// Nothing of a body came for `server.backendTimeout`.
#[derive(Debug, thiserror::Error)]
#[error("no body data for {0:?}")]
pub struct Stalled(pub Duration);

/// Fails `inner` with [`Stalled`] when, while the client waits for more of it, nothing comes
/// for `timeout`; `on_stall` runs then (the dead rules). hyper then cuts the client's
/// connection: a body cut short must not look complete. The clock runs only while this body
/// is asked for data and has none, so a slow client is never taken for a stalled backend.
pub fn idle_limited(inner: Body, timeout: Duration, on_stall: Box<dyn FnOnce() + Send + Sync>) -> Body {
    BoxBody::new(IdleLimited { inner, timeout, waiting: None, on_stall: Some(on_stall) })
}

struct IdleLimited {
    inner: Body,
    timeout: Duration,
    /// Armed when a poll finds no data, cleared when data comes.
    waiting: Option<Pin<Box<Sleep>>>,
    on_stall: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl HttpBody for IdleLimited {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => {
                let timeout = self.timeout;
                let waiting = self.waiting.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if waiting.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if let Some(f) = self.on_stall.take() {
                    f();
                }
                Poll::Ready(Some(Err(Stalled(timeout).into())))
            }
            ready => {
                self.waiting = None;
                ready
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Called once with the number of body bytes sent, when the body ends or is dropped.
pub trait OnEnd: Send + Sync + 'static {
    fn ended(self: Box<Self>, bytes: u64);
}

/// Counts the bytes of a response body and reports them when it completes. Drop (not only
/// end-of-stream) triggers the report, so an aborted download is still logged.
pub struct Observed {
    inner: Body,
    bytes: u64,
    on_end: Option<Box<dyn OnEnd>>,
}

impl Observed {
    pub fn wrap(inner: Body, on_end: Box<dyn OnEnd>) -> Body {
        BoxBody::new(Observed { inner, bytes: 0, on_end: Some(on_end) })
    }

    fn finish(&mut self) {
        if let Some(f) = self.on_end.take() {
            f.ended(self.bytes);
        }
    }
}

impl HttpBody for Observed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.finish();
    }
}
