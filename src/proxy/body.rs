//! Body types: one boxed body for everything the proxy sends, and a wrapper that notices
//! when a response body has been fully sent (or abandoned) to write its access-log line.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

/// Streams through untouched (`Incoming` boxed) or holds a buffered/generated payload.
pub type Body = BoxBody<Bytes, hyper::Error>;

pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
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
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
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
