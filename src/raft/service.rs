//! The server half of the node-to-node gRPC service (proto/raft.proto): Raft RPCs into
//! openraft, plus `Forward`, `Join` and `Applied` into the node facade.

use std::sync::Arc;

use bytes::BytesMut;
use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::forward::{Answer, Forwarded};
use super::network::{decode, encode};
use super::node::{NodeError, RaftNode};
use super::types::{NodeInfo, SnapshotData, SnapshotMeta, Vote};
use crate::proto::raft_v1::raft_service_server::{RaftService, RaftServiceServer};
use crate::proto::raft_v1::{AppliedRequest, AppliedResponse, Blob, JoinRequest, JoinResponse, SnapshotChunk};
use crate::secret::Secret;

pub struct Service {
    node: Arc<RaftNode>,
}

/// The tonic service, with the cluster-secret check in front.
pub fn service(
    node: Arc<RaftNode>,
    secret: Secret,
) -> tonic::service::interceptor::InterceptedService<RaftServiceServer<Service>, impl tonic::service::Interceptor + Clone>
{
    let server = RaftServiceServer::new(Service { node })
        .max_decoding_message_size(super::network::MAX_MESSAGE)
        .max_encoding_message_size(super::network::MAX_MESSAGE);
    tonic::service::interceptor::InterceptedService::new(server, move |req| secret.check(req))
}

fn bad_request(e: postcard::Error) -> Status {
    Status::invalid_argument(format!("cannot decode the message: {e}"))
}

fn blob<T: serde::Serialize>(v: &T) -> Result<Response<Blob>, Status> {
    encode(v).map(|data| Response::new(Blob { data })).map_err(|e| Status::internal(e.to_string()))
}

impl Service {
    /// A follower whose disk is below `cluster.diskReserve` takes no entries or snapshots: a
    /// failed append would stop its Raft core until a restart, while a refusal only makes the
    /// leader retry (the follower falls behind; the other members keep the quorum). Heartbeats
    /// still pass, so it stays a follower, and it catches up once space is freed.
    fn refuse_on_full_disk(&self) -> Result<(), Status> {
        self.node.disk.check().map_err(Status::from)
    }
}

#[tonic::async_trait]
impl RaftService for Service {
    async fn append_entries(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc: super::types::AppendEntriesRequest = decode(&req.into_inner().data).map_err(bad_request)?;
        if !rpc.entries.is_empty() {
            self.refuse_on_full_disk()?;
        }
        let resp = self.node.raft().append_entries(rpc).await.map_err(|e| Status::internal(e.to_string()))?;
        blob(&resp)
    }

    async fn vote(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc = decode(&req.into_inner().data).map_err(bad_request)?;
        let resp = self.node.raft().vote(rpc).await.map_err(|e| Status::internal(e.to_string()))?;
        blob(&resp)
    }

    async fn install_snapshot(&self, req: Request<Streaming<SnapshotChunk>>) -> Result<Response<Blob>, Status> {
        self.refuse_on_full_disk()?;
        let mut stream = req.into_inner();
        let first = stream.next().await.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        let (vote, meta): (Vote, SnapshotMeta) = decode(&first.header).map_err(bad_request)?;
        let mut data = BytesMut::new();
        data.extend_from_slice(&first.data);
        while let Some(chunk) = stream.next().await {
            data.extend_from_slice(&chunk?.data);
        }
        let snapshot = super::types::Snapshot { meta, snapshot: Box::new(SnapshotData::Received(data.to_vec())) };
        let resp = self
            .node
            .raft()
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        blob(&resp)
    }

    async fn forward(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let (origin, op): (u64, Forwarded) = decode(&req.into_inner().data).map_err(bad_request)?;
        // A node removed from the cluster may not have learnt it (the leader stops sending it
        // entries): refuse its forwarded requests so it can tell its clients.
        if !self.node.status().members.iter().any(|(id, ..)| *id == origin) {
            return blob(&Answer::Refused(NodeError::Removed(origin).to_string()));
        }
        let answer: Answer = self.node.run_as_leader(op).await.map_err(|e| Status::unavailable(e.to_string()))?;
        blob(&answer)
    }

    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let req = req.into_inner();
        if req.node_id == 0 {
            return Err(Status::invalid_argument("node id 0 is reserved"));
        }
        let info = NodeInfo { grpc: req.grpc_addr, resp: req.resp_addr };
        let leader = self.node.add_node(req.node_id, info).await.map_err(tonic::Status::from)?;
        Ok(Response::new(JoinResponse { leader_id: leader }))
    }

    async fn applied(&self, _req: Request<AppliedRequest>) -> Result<Response<AppliedResponse>, Status> {
        let s = self.node.status();
        Ok(Response::new(AppliedResponse {
            node_id: s.id,
            applied_index: s.applied_index,
            role: s.role.to_string(),
            term: s.term,
            leader_id: s.leader.unwrap_or(0),
            last_log_index: s.last_log_index,
            commit_index: s.commit_index,
        }))
    }
}
