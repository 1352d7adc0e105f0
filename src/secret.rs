//! The shared cluster secret (`cluster.secret`) that every gRPC call between nodes and from
//! admin clients carries in the `x-hipache-secret` metadata entry.
//!
//! Compared in constant time so the answer's timing does not reveal how much of a guess was
//! right. A node configured without a secret accepts calls without one.

use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Status};

pub const HEADER: &str = "x-hipache-secret";

#[derive(Clone, Debug, Default)]
pub struct Secret(Option<Arc<str>>);

impl Secret {
    pub fn new(secret: Option<&str>) -> Secret {
        Secret(secret.filter(|s| !s.is_empty()).map(Arc::from))
    }

    /// Adds the secret to an outgoing call.
    pub fn attach(&self, metadata: &mut MetadataMap) {
        if let Some(s) = &self.0 {
            if let Ok(v) = MetadataValue::try_from(s.as_ref()) {
                metadata.insert(HEADER, v);
            }
        }
    }

    /// A tonic interceptor: refuses calls whose secret is missing or wrong, saying which.
    #[allow(clippy::result_large_err)] // tonic's interceptor signature
    pub fn check<T>(&self, req: Request<T>) -> Result<Request<T>, Status> {
        let Some(expected) = &self.0 else { return Ok(req) };
        match req.metadata().get(HEADER) {
            None => Err(Status::unauthenticated(
                "this cluster requires a secret (cluster.secret) and the call carried none",
            )),
            Some(given) if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) => Ok(req),
            Some(_) => Err(Status::unauthenticated("wrong cluster secret: check cluster.secret on both nodes")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_right_secret() {
        let s = Secret::new(Some("s3cret"));
        let mut ok = Request::new(());
        s.attach(ok.metadata_mut());
        assert!(s.check(ok).is_ok());
        let mut wrong = Request::new(());
        Secret::new(Some("other")).attach(wrong.metadata_mut());
        assert!(s.check(wrong).unwrap_err().message().contains("wrong cluster secret"));
        assert!(s.check(Request::new(())).is_err());
        assert!(Secret::new(None).check(Request::new(())).is_ok());
        assert!(Secret::new(Some("")).check(Request::new(())).is_ok());
    }
}
