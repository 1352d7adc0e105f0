//! `hipache-raft cluster status|add-node|remove-node`: the admin API from the shell, against
//! any node's gRPC port.

use std::fmt::Write;
use std::time::Duration;

use tonic::transport::Endpoint;

use crate::peer_tls::PeerTls;
use crate::proto::admin_v1::admin_client::AdminClient;
use crate::proto::admin_v1::{AddNodeRequest, ClusterStatusRequest, ClusterStatusResponse, RemoveNodeRequest};
use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("bad address {0}: {1}")]
    Address(String, String),
    #[error("cannot reach {0}: {1}")]
    Connect(String, tonic::transport::Error),
    #[error("{}: {}", .0.code(), .0.message())]
    Call(#[from] tonic::Status),
}

/// What the operator asked for.
#[derive(Debug, Clone)]
pub enum Action {
    Status,
    AddNode { id: u64, grpc: String, resp: String },
    RemoveNode { id: u64 },
}

/// Runs `action` against the node at `addr` (host:port of its gRPC listener) and returns the
/// text to print.
pub async fn run(addr: &str, secret: &Secret, tls: Option<&PeerTls>, action: Action) -> Result<String, CliError> {
    let bad = |e: String| CliError::Address(addr.to_string(), e);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(Duration::from_secs(3));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls.client(addr)).map_err(|e| bad(e.to_string()))?;
    }
    let channel = endpoint.connect().await.map_err(|e| CliError::Connect(addr.to_string(), e))?;
    let mut client = AdminClient::new(channel);
    fn request<T>(secret: &Secret, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        secret.attach(req.metadata_mut());
        req
    }
    let status = match action {
        Action::Status => client.cluster_status(request(secret, ClusterStatusRequest {})).await?,
        Action::AddNode { id, grpc, resp } => {
            client.add_node(request(secret, AddNodeRequest { id, grpc_addr: grpc, resp_addr: resp })).await?
        }
        Action::RemoveNode { id } => client.remove_node(request(secret, RemoveNodeRequest { id })).await?,
    };
    Ok(render(&status.into_inner()))
}

/// A table an operator can read at a glance.
pub fn render(s: &ClusterStatusResponse) -> String {
    let mut out = String::new();
    let leader = if s.leader_id == 0 { "none".to_string() } else { s.leader_id.to_string() };
    let _ = writeln!(out, "leader: {leader}  term: {}", s.term);
    let _ = writeln!(
        out,
        "{:<4} {:<10} {:<6} {:<22} {:<22} {:>6} {:>10} {:>10}",
        "id", "role", "voter", "grpc", "resp", "term", "commit", "applied"
    );
    for n in &s.nodes {
        let role = if n.reachable { n.role.as_str() } else { "unreachable" };
        let _ = writeln!(
            out,
            "{:<4} {:<10} {:<6} {:<22} {:<22} {:>6} {:>10} {:>10}",
            n.id,
            role,
            if n.voter { "yes" } else { "no" },
            n.grpc_addr,
            n.resp_addr,
            n.term,
            n.commit_index,
            n.applied_index
        );
    }
    out
}
