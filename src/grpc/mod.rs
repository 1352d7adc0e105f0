//! The gRPC port: the admin API for programs (proto/admin.proto, with server reflection so
//! `grpcurl` works) and the node-to-node Raft service, both behind the cluster secret.

mod admin;
pub mod cli;
mod status;
mod watch;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tonic::transport::server::TcpIncoming;

pub use admin::AdminService;
pub use watch::ChangeLog;

use crate::peer_tls::PeerTls;
use crate::proto::admin_v1::admin_server::AdminServer;
use crate::proto::admin_v1::FILE_DESCRIPTOR_SET;
use crate::raft::{self, RaftNode};
use crate::routing::RoutingKeys;
use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Serves both services on `listener` until `shutdown` flips to true.
pub async fn serve(
    listener: TcpListener,
    node: Arc<RaftNode>,
    secret: Secret,
    tls: Option<PeerTls>,
    keys: RoutingKeys,
    max_message: usize,
    mut shutdown: signal::Receiver<bool>,
) -> Result<(), GrpcError> {
    let changes = ChangeLog::attach(&node, keys.db);
    // `cluster.grpcMaxMessageSize`: a larger admin request is refused with OUT_OF_RANGE
    // before it is buffered whole. (Raft traffic between nodes has its own service.)
    let admin = AdminServer::new(AdminService::new(node.clone(), changes, keys))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let check = secret.clone();
    let admin = tonic::service::interceptor::InterceptedService::new(admin, move |req| check.check(req));
    // Both reflection versions: older grpcurl releases and other clients ask only for v1alpha.
    let reflection =
        || tonic_reflection::server::Builder::configure().register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET);
    let (reflection_v1, reflection_v1alpha) = (reflection().build_v1()?, reflection().build_v1alpha()?);
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = &tls {
        server = server.tls_config(tls.server())?;
    }
    // `Server::tcp_nodelay` only reaches sockets tonic accepts itself; ours come from
    // `incoming`, so Nagle is turned off there. With it on, a reply that followed an unacked
    // segment waited for the peer's delayed ACK: 40 ms per forwarded batch of 50 writes.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    server
        .add_service(raft::service(node, secret))
        .add_service(admin)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = shutdown.changed().await;
        })
        .await?;
    Ok(())
}
