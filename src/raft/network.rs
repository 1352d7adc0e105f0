//! The Raft transport over tonic: the client half (openraft's `RaftNetwork`) and a channel
//! pool shared with the forwarding client.
//!
//! openraft messages travel as postcard bytes inside `Blob` messages (see proto/raft.proto).
//! Transport failures map to `Unreachable`, so openraft backs off from a down peer instead of
//! logging at full speed; snapshots stream in 1 MiB chunks, so their size is unbounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use openraft::error::{NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::net::IpAddr;
use tonic::transport::{Channel, Endpoint};

use super::types::{NodeInfo, Snapshot, TypeConfig, Vote};
use crate::peer_tls::PeerTls;
use crate::proto::raft_v1::raft_service_client::RaftServiceClient;
use crate::proto::raft_v1::{Blob, SnapshotChunk};
use crate::secret::Secret;

const SNAPSHOT_CHUNK: usize = 1024 * 1024;
/// Append batches of 1,024 entries and snapshots chunks both fit under this.
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("bad peer address {addr}: {message}")]
    Address { addr: String, message: String },
    #[error("{0}")]
    Status(#[from] tonic::Status),
    #[error("cannot encode or decode a raft message: {0}")]
    Codec(#[from] postcard::Error),
    #[error("cannot read the snapshot to send: {0}")]
    Snapshot(#[from] std::io::Error),
}

pub fn encode<T: Serialize>(v: &T) -> Result<Bytes, postcard::Error> {
    postcard::to_stdvec(v).map(Bytes::from)
}

pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(b)
}

/// Lazily connected channels by gRPC address; tonic channels multiplex and reconnect, so one
/// per peer is enough.
#[derive(Clone, Default)]
pub struct Channels {
    secret: Secret,
    tls: Option<PeerTls>,
    /// The address connections to peers leave from (see `NodeOptions::source_ip`).
    source_ip: Option<IpAddr>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Channels {
    pub fn new(secret: Secret, tls: Option<PeerTls>, source_ip: Option<IpAddr>) -> Channels {
        Channels { secret, tls, source_ip, channels: Arc::default() }
    }

    pub fn client(&self, addr: &str) -> Result<RaftServiceClient<Channel>, TransportError> {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let channel = match map.get(addr) {
            Some(c) => c.clone(),
            None => {
                let bad = |message: String| TransportError::Address { addr: addr.to_string(), message };
                let scheme = if self.tls.is_some() { "https" } else { "http" };
                let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
                    .map_err(|e| bad(e.to_string()))?
                    .connect_timeout(Duration::from_secs(1))
                    .tcp_nodelay(true)
                    .local_address(self.source_ip)
                    .http2_keep_alive_interval(Duration::from_secs(10));
                if let Some(tls) = &self.tls {
                    endpoint = endpoint.tls_config(tls.client(addr)).map_err(|e| bad(e.to_string()))?;
                }
                let c = endpoint.connect_lazy();
                map.insert(addr.to_string(), c.clone());
                c
            }
        };
        Ok(RaftServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }

    /// Wraps a message with the cluster secret and a deadline.
    pub fn request<T>(&self, msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(timeout);
        self.secret.attach(req.metadata_mut());
        req
    }
}

pub struct Network {
    channels: Channels,
}

impl Network {
    pub fn new(channels: Channels) -> Network {
        Network { channels }
    }
}

pub struct Peer {
    target: u64,
    addr: String,
    channels: Channels,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &NodeInfo) -> Peer {
        Peer { target, addr: node.grpc.clone(), channels: self.channels.clone() }
    }
}

type RpcError<E = openraft::error::Infallible> = RPCError<u64, NodeInfo, RaftError<u64, E>>;

fn rpc_error(e: TransportError) -> RpcError {
    match e {
        TransportError::Status(s) if s.code() == tonic::Code::Unauthenticated => {
            RPCError::Network(NetworkError::new(&TransportError::Status(s)))
        }
        TransportError::Codec(c) => RPCError::Network(NetworkError::new(&c)),
        other => RPCError::Unreachable(Unreachable::new(&other)),
    }
}

impl Peer {
    fn call(
        &self,
        msg: &impl Serialize,
        option: &RPCOption,
    ) -> Result<(RaftServiceClient<Channel>, tonic::Request<Blob>), TransportError> {
        let blob = Blob { data: encode(msg)? };
        Ok((self.channels.client(&self.addr)?, self.channels.request(blob, option.hard_ttl())))
    }
}

fn reply<T: DeserializeOwned>(resp: Result<tonic::Response<Blob>, tonic::Status>) -> Result<T, TransportError> {
    Ok(decode(&resp?.into_inner().data)?)
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcError> {
        let (mut client, req) = self.call(&rpc, &option).map_err(rpc_error)?;
        reply(client.append_entries(req).await).map_err(rpc_error)
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, option: RPCOption) -> Result<VoteResponse<u64>, RpcError> {
        let (mut client, req) = self.call(&rpc, &option).map_err(rpc_error)?;
        reply(client.vote(req).await).map_err(rpc_error)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<TypeConfig, openraft::error::Fatal<u64>>> {
        let unreachable = |e: TransportError| StreamingError::Unreachable(Unreachable::new(&e));
        let header = encode(&(vote, snapshot.meta.clone())).map_err(|e| unreachable(e.into()))?;
        let body = *snapshot.snapshot;
        let read = tokio::task::spawn_blocking(move || body.into_bytes()).await;
        let data =
            Bytes::from(read.unwrap_or_else(|e| Err(std::io::Error::other(e))).map_err(|e| unreachable(e.into()))?);
        let mut chunks = vec![SnapshotChunk { header, data: Bytes::new() }];
        let mut offset = 0;
        while offset < data.len() {
            let end = (offset + SNAPSHOT_CHUNK).min(data.len());
            chunks.push(SnapshotChunk { header: Bytes::new(), data: data.slice(offset..end) });
            offset = end;
        }
        let mut client = self.channels.client(&self.addr).map_err(unreachable)?;
        let req = self.channels.request(futures::stream::iter(chunks), option.hard_ttl());
        let send = async move { client.install_snapshot(req).await };
        let resp = tokio::select! {
            r = send => r.map_err(|s| unreachable(s.into()))?,
            closed = cancel => {
                return Err(StreamingError::Closed(closed));
            }
        };
        let resp: SnapshotResponse<u64> = decode(&resp.into_inner().data).map_err(|e| unreachable(e.into()))?;
        tracing::info!(target = self.target, bytes = data.len(), "snapshot sent");
        Ok(resp)
    }

    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}
