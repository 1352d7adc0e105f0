//! The `hipache.admin.v1.Admin` service: typed operations over the same keys Hipache tools
//! write with redis-cli (`frontend:<host>` lists, `dead:<host>` sets), so both interfaces can
//! be mixed. Each mutation is one Raft entry through the node facade.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use futures::StreamExt;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tonic::{Request, Response, Status};

use super::watch::ChangeLog;
use crate::keyspace::Reply;
use crate::proto::admin_v1::admin_server::Admin;
use crate::proto::admin_v1::*;
use crate::raft::{now_ms, NodeInfo, Op, RaftNode, Status as NodeStatusView};
use crate::routing::RoutingKeys;

pub struct AdminService {
    node: Arc<RaftNode>,
    changes: Arc<ChangeLog>,
    /// The routing database and key prefix (`driver`), as the proxy reads them.
    keys: RoutingKeys,
}

impl AdminService {
    pub fn new(node: Arc<RaftNode>, changes: Arc<ChangeLog>, keys: RoutingKeys) -> AdminService {
        AdminService { node, changes, keys }
    }

    fn db(&self) -> u8 {
        // The config accepts databases 0 to 15 only.
        self.keys.db as u8
    }

    /// One write (a single command or an atomic group), then the optional wait for replicas.
    async fn write(
        &self,
        cmds: Vec<Vec<Bytes>>,
        options: Option<WriteOptions>,
    ) -> Result<(Reply, WriteResponse), Status> {
        let op = match cmds.len() {
            1 => Op::Command { db: self.db(), argv: cmds.into_iter().next().unwrap_or_default() },
            _ => Op::Exec { db: self.db(), queued: cmds, watched: Vec::new() },
        };
        let written = self.node.write(op).await.map_err(Status::from)?;
        if let Reply::Error(e) = &written.reply {
            return Err(Status::failed_precondition(e.clone()));
        }
        let options = options.unwrap_or_default();
        let replicas = if options.wait_for_nodes > 0 {
            let timeout = (options.wait_timeout_ms > 0).then(|| Duration::from_millis(options.wait_timeout_ms as u64));
            let timeout = timeout.or(Some(Duration::from_secs(10)));
            self.node.replicas_applied(written.index, options.wait_for_nodes as usize, timeout).await
        } else {
            0
        };
        Ok((written.reply, WriteResponse { applied_index: written.index, replicas_applied: replicas as u32 }))
    }

    async fn read(&self, cmds: Vec<Vec<Bytes>>) -> Result<Vec<Reply>, Status> {
        self.node.read_many(self.keys.db, cmds).await.map_err(Status::from)
    }

    fn status(&self) -> ClusterStatusResponse {
        let own = self.node.status();
        ClusterStatusResponse { leader_id: own.leader.unwrap_or(0), term: own.term, nodes: Vec::new() }
    }
}

fn cmd(parts: &[&[u8]]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

fn frontend_key(keys: &RoutingKeys, host: &str) -> Result<Bytes, Status> {
    if host.is_empty() || host.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err(Status::invalid_argument(format!("invalid host {host:?}: it must be non-empty, without spaces")));
    }
    Ok(keys.frontend_key(host.to_ascii_lowercase().as_bytes()))
}

/// A backend must be an absolute http(s) URL with a host, as the proxy needs one.
fn check_backend(url: &str) -> Result<(), Status> {
    let uri: http::Uri =
        url.parse().map_err(|e| Status::invalid_argument(format!("backend {url:?} is not a URL: {e}")))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(h)) if !h.is_empty() => Ok(()),
        _ => Err(Status::invalid_argument(format!(
            "backend {url:?} must look like http://host[:port] or https://host[:port]"
        ))),
    }
}

fn strings(reply: &Reply) -> Vec<Bytes> {
    match reply {
        Reply::Array(items) | Reply::Set(items) => items
            .iter()
            .filter_map(|r| match r {
                Reply::Bulk(b) => Some(b.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn frontend(host: String, list: &[Bytes]) -> Option<Frontend> {
    let (identifier, backends) = list.split_first()?;
    Some(Frontend { host, identifier: text(identifier), backends: backends.iter().map(text).collect() })
}

fn node_status(id: u64, info: &NodeInfo, voter: bool, view: Option<&NodeStatusView>) -> NodeStatus {
    let mut s =
        NodeStatus { id, grpc_addr: info.grpc.clone(), resp_addr: info.resp.clone(), voter, ..Default::default() };
    if let Some(v) = view {
        s.reachable = true;
        s.role = v.role.to_string();
        s.term = v.term;
        s.leader_id = v.leader.unwrap_or(0);
        s.last_log_index = v.last_log_index;
        s.commit_index = v.commit_index;
        s.applied_index = v.applied_index;
    }
    s
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Admin for AdminService {
    async fn list_frontends(
        &self,
        req: Request<ListFrontendsRequest>,
    ) -> Result<Response<ListFrontendsResponse>, Status> {
        let pattern = req.into_inner().pattern;
        let pattern = if pattern.is_empty() { "*".to_string() } else { pattern };
        let keys = self.read(vec![cmd(&[b"KEYS", &self.keys.pattern(false, pattern.as_bytes())])]).await?;
        let keys = keys.first().map(strings).unwrap_or_default();
        let ranges = keys.iter().map(|k| cmd(&[b"LRANGE", k, b"0", b"-1"])).collect();
        let lists = self.read(ranges).await?;
        let frontends = keys
            .iter()
            .zip(&lists)
            .filter_map(|(k, l)| {
                frontend(String::from_utf8_lossy(self.keys.frontend_name(k)?).into_owned(), &strings(l))
            })
            .collect();
        Ok(Response::new(ListFrontendsResponse { frontends }))
    }

    async fn get_frontend(&self, req: Request<GetFrontendRequest>) -> Result<Response<Frontend>, Status> {
        let host = req.into_inner().host;
        let key = frontend_key(&self.keys, &host)?;
        let list = self.read(vec![cmd(&[b"LRANGE", &key, b"0", b"-1"])]).await?;
        let list = list.first().map(strings).unwrap_or_default();
        frontend(host.to_ascii_lowercase(), &list)
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no frontend for {host}")))
    }

    async fn put_frontend(&self, req: Request<PutFrontendRequest>) -> Result<Response<WriteResponse>, Status> {
        let req = req.into_inner();
        let f = req.frontend.ok_or_else(|| Status::invalid_argument("frontend is required"))?;
        let key = frontend_key(&self.keys, &f.host)?;
        if f.identifier.is_empty() {
            return Err(Status::invalid_argument("identifier must not be empty"));
        }
        for b in &f.backends {
            check_backend(b)?;
        }
        let mut rpush = cmd(&[b"RPUSH", &key, f.identifier.as_bytes()]);
        rpush.extend(f.backends.iter().map(|b| Bytes::copy_from_slice(b.as_bytes())));
        // DEL + RPUSH as one entry: proxies never see the list half-replaced.
        let (_, resp) = self.write(vec![cmd(&[b"DEL", &key]), rpush], req.options).await?;
        Ok(Response::new(resp))
    }

    async fn delete_frontend(&self, req: Request<DeleteFrontendRequest>) -> Result<Response<WriteResponse>, Status> {
        let req = req.into_inner();
        let key = frontend_key(&self.keys, &req.host)?;
        let (reply, resp) = self.write(vec![cmd(&[b"DEL", &key])], req.options).await?;
        match reply {
            Reply::Int(0) => Err(Status::not_found(format!("no frontend for {}", req.host))),
            _ => Ok(Response::new(resp)),
        }
    }

    async fn add_backend(&self, req: Request<AddBackendRequest>) -> Result<Response<WriteResponse>, Status> {
        let req = req.into_inner();
        let key = frontend_key(&self.keys, &req.host)?;
        check_backend(&req.backend)?;
        // RPUSHX: never turn a backend URL into the identifier of a new list.
        let (reply, resp) = self.write(vec![cmd(&[b"RPUSHX", &key, req.backend.as_bytes()])], req.options).await?;
        match reply {
            Reply::Int(0) => {
                Err(Status::not_found(format!("no frontend for {}; create it with PutFrontend", req.host)))
            }
            _ => Ok(Response::new(resp)),
        }
    }

    async fn remove_backend(&self, req: Request<RemoveBackendRequest>) -> Result<Response<WriteResponse>, Status> {
        let req = req.into_inner();
        let key = frontend_key(&self.keys, &req.host)?;
        let (reply, resp) = self.write(vec![cmd(&[b"LREM", &key, b"0", req.backend.as_bytes()])], req.options).await?;
        match reply {
            Reply::Int(0) => Err(Status::not_found(format!("{} has no backend {}", req.host, req.backend))),
            _ => Ok(Response::new(resp)),
        }
    }

    async fn list_dead(&self, req: Request<ListDeadRequest>) -> Result<Response<ListDeadResponse>, Status> {
        let host = req.into_inner().host;
        let keys = if host.is_empty() {
            let keys = self.read(vec![cmd(&[b"KEYS", &self.keys.pattern(true, b"*")])]).await?;
            keys.first().map(strings).unwrap_or_default()
        } else {
            vec![self.keys.dead_key(host.as_bytes())]
        };
        let cmds = keys.iter().flat_map(|k| [cmd(&[b"SMEMBERS", k]), cmd(&[b"PTTL", k])]).collect();
        let replies = self.read(cmds).await?;
        let dead = keys
            .iter()
            .zip(replies.chunks(2))
            .filter_map(|(k, r)| {
                let indexes: Vec<u32> = strings(&r[0]).iter().filter_map(|m| text(m).parse().ok()).collect();
                let ttl_ms = match r.get(1) {
                    Some(Reply::Int(ms)) if *ms > 0 => *ms as u64,
                    _ => 0,
                };
                let host = String::from_utf8_lossy(self.keys.dead_host(k)?).into_owned();
                (!indexes.is_empty()).then_some(DeadMarks { host, backend_indexes: indexes, ttl_ms })
            })
            .collect();
        Ok(Response::new(ListDeadResponse { dead }))
    }

    async fn clear_dead(&self, req: Request<ClearDeadRequest>) -> Result<Response<WriteResponse>, Status> {
        let req = req.into_inner();
        if req.host.is_empty() {
            return Err(Status::invalid_argument("host is required"));
        }
        let key = self.keys.dead_key(req.host.as_bytes());
        let (_, resp) = self.write(vec![cmd(&[b"DEL", &key])], req.options).await?;
        Ok(Response::new(resp))
    }

    async fn cluster_status(
        &self,
        _req: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        let own = self.node.status();
        let mut resp = self.status();
        for (id, info, voter) in &own.members {
            let view = if *id == own.id { Some(own.clone()) } else { self.node.peer_status(&info.grpc).await };
            resp.nodes.push(node_status(*id, info, *voter, view.as_ref()));
        }
        Ok(Response::new(resp))
    }

    async fn add_node(&self, req: Request<AddNodeRequest>) -> Result<Response<ClusterStatusResponse>, Status> {
        let req = req.into_inner();
        if req.id == 0 || req.grpc_addr.is_empty() || req.resp_addr.is_empty() {
            return Err(Status::invalid_argument("id (> 0), grpc_addr and resp_addr are required"));
        }
        let info = NodeInfo { grpc: req.grpc_addr, resp: req.resp_addr };
        self.node.add_node(req.id, info).await.map_err(Status::from)?;
        self.cluster_status(Request::new(ClusterStatusRequest {})).await
    }

    async fn remove_node(&self, req: Request<RemoveNodeRequest>) -> Result<Response<ClusterStatusResponse>, Status> {
        self.node.remove_node(req.into_inner().id).await.map_err(Status::from)?;
        self.cluster_status(Request::new(ClusterStatusRequest {})).await
    }

    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<WatchRequest>) -> Result<Response<WatchStream>, Status> {
        let start = self.changes.start(req.into_inner().from_index);
        let after = start.after;
        let backlog = futures::stream::iter(start.backlog.into_iter().map(Ok));
        let (node, db) = (self.node.clone(), self.keys.db);
        let live = BroadcastStream::new(start.live).flat_map(move |batch| {
            let items: Vec<Result<WatchEvent, Status>> = match batch {
                Ok(b) if b.reload => vec![Err(Status::aborted(format!(
                    "this node installed a snapshot at index {}: the changes before it cannot be sent one by one; \
                     resume with from_index set to the last applied_index received (a full dump comes first)",
                    b.index
                )))],
                Ok(b) if b.index > after => {
                    b.events_after(after, &node.local(), db, now_ms()).into_iter().map(Ok).collect()
                }
                Ok(_) => Vec::new(),
                Err(BroadcastStreamRecvError::Lagged(n)) => vec![Err(Status::resource_exhausted(format!(
                    "watcher fell {n} batches behind; resume with from_index set to the last applied_index received"
                )))],
            };
            futures::stream::iter(items)
        });
        Ok(Response::new(Box::pin(backlog.chain(live))))
    }
}
