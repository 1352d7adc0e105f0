//! How a node error reaches gRPC clients and peers: one status code per kind of failure, so
//! a client can tell "retry" (unavailable) from "fix the request" (invalid argument) and
//! "fix the credentials" (unauthenticated).

use crate::raft::NodeError;

impl From<NodeError> for tonic::Status {
    fn from(e: NodeError) -> tonic::Status {
        let message = e.to_string();
        match e {
            NodeError::NoLeader
            | NodeError::Unavailable { .. }
            | NodeError::NotLeader { .. }
            | NodeError::DiskFull { .. } => tonic::Status::unavailable(message),
            NodeError::Removed(_) => tonic::Status::failed_precondition(message),
            NodeError::Unauthenticated(_) => tonic::Status::unauthenticated(message),
            NodeError::Refused(_) => tonic::Status::invalid_argument(message),
            NodeError::Open { .. } | NodeError::NewerFormat { .. } | NodeError::Storage(_) | NodeError::Fatal(_) => {
                tonic::Status::internal(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_failure_has_its_code() {
        let code = |e: NodeError| tonic::Status::from(e).code();
        assert_eq!(code(NodeError::NoLeader), tonic::Code::Unavailable);
        assert_eq!(code(NodeError::Unauthenticated("wrong cluster secret".into())), tonic::Code::Unauthenticated);
        assert_eq!(code(NodeError::Refused("node 4 is not a member".into())), tonic::Code::InvalidArgument);
        assert_eq!(
            code(NodeError::Refused("mentions a secret".into())),
            tonic::Code::InvalidArgument,
            "no text matching"
        );
        assert_eq!(code(NodeError::Removed(3)), tonic::Code::FailedPrecondition);
        let full = NodeError::DiskFull { dir: "/d".into(), free: 1, reserve: 2 };
        assert_eq!(code(full), tonic::Code::Unavailable, "retry once space is freed");
        assert_eq!(code(NodeError::Fatal("x".into())), tonic::Code::Internal);
    }
}
