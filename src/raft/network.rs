//! The Raft transport.
//!
//! A one-node cluster sends no Raft RPCs: every call here answers "unreachable" so openraft
//! backs off quietly. The gRPC transport for multi-node clusters replaces this factory.

use openraft::error::{RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};

use super::types::{NodeInfo, Snapshot, TypeConfig, Vote};

#[derive(Debug, thiserror::Error)]
#[error("node {0} has no Raft transport: this build runs single-node clusters only")]
pub struct NoTransport(u64);

pub struct Network;

pub struct Peer(u64);

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, _node: &NodeInfo) -> Peer {
        Peer(target)
    }
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<u64, NodeInfo, RaftError<u64, E>>>;

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        Err(RPCError::Unreachable(Unreachable::new(&NoTransport(self.0))))
    }

    async fn vote(&mut self, _rpc: VoteRequest<u64>, _option: RPCOption) -> RpcResult<VoteResponse<u64>> {
        Err(RPCError::Unreachable(Unreachable::new(&NoTransport(self.0))))
    }

    async fn full_snapshot(
        &mut self,
        _vote: Vote,
        _snapshot: Snapshot,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<TypeConfig, openraft::error::Fatal<u64>>> {
        Err(StreamingError::Unreachable(Unreachable::new(&NoTransport(self.0))))
    }
}
