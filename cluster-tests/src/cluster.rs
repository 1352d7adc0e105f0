//! A cluster of N node processes with fixed loopback ports (a restarted node must come back
//! on the address the membership records), data dirs under one temp dir.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hipache_raft::keyspace::Reply;
use serde_json::{json, Value};

use crate::node::{base_config, eventually, Node, Resp};

/// A free port below the kernel's ephemeral range (32768 and up by default), checked by binding
/// it. A port the OS hands out for `:0` comes from that range, from which every outgoing
/// connection also takes its source port: between the check and the node's own bind, a
/// test's client connection took it ("Address already in use" in a CI run). Each test process
/// walks the range from its own starting point (by process id), so parallel tests rarely
/// even try the same port.
pub fn free_port() -> u16 {
    const FIRST: u32 = 10_000;
    const COUNT: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7_919);
    loop {
        let port = (FIRST + start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The gRPC port of every node on its own address (`Cluster::own_ips`).
pub const OWN_IP_GRPC_PORT: u16 = 7379;

pub struct Member {
    pub id: u64,
    /// The loopback address it listens on.
    pub ip: String,
    pub dir: PathBuf,
    pub resp_port: u16,
    pub grpc_port: u16,
    pub http_port: u16,
    pub process: Option<Node>,
    /// The lossy file system its data dir is on (`Cluster::power`); after `process`, so it
    /// unmounts after the node stopped.
    pub mount: Option<crate::power::Mount>,
}

impl Member {
    pub fn grpc(&self) -> String {
        format!("{}:{}", self.ip, self.grpc_port)
    }

    pub fn resp_addr(&self) -> std::net::SocketAddr {
        format!("{}:{}", self.ip, self.resp_port).parse().unwrap()
    }

    pub fn resp(&self) -> Resp {
        Resp::connect(self.resp_addr())
    }

    pub fn http(&self) -> String {
        format!("{}:{}", self.ip, self.http_port)
    }

    /// Its `cluster.dataDir`.
    pub fn data_dir(&self) -> PathBuf {
        self.mount.as_ref().map_or(&self.dir, |m| &m.dir).join("data")
    }

    /// Where its log goes when the cluster keeps logs (`Cluster::logs`).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("node.log")
    }
}

pub struct Cluster {
    /// Dropped before `dir` (fields drop in order): nodes stop and their file systems unmount first.
    pub members: Vec<Member>,
    /// Merged into each node's `cluster` config section.
    pub cluster_config: Value,
    /// Advertise `localhost:<port>` (a name, as in Kubernetes) instead of the bound address.
    pub advertise_names: bool,
    /// Merged into each node's `server` config section.
    pub server_config: Value,
    /// Each node on its own address (`net::node_ip`) with fixed ports, as fault tests need;
    /// otherwise all on 127.0.0.1 with free ports.
    pub own_ips: bool,
    /// Each node's gRPC listener behind a `net::TcpProxy` (with `own_ips`): it listens on
    /// `net::behind_proxy(grpc_port)` and advertises `grpc_port`, where the proxy listens.
    pub behind_proxy: bool,
    /// Node logs go to `Member::log_path` instead of the test's stderr.
    pub logs: bool,
    /// A bug every node runs with (`hipache_raft::inject`), for tests that the suite catches it.
    pub inject: Option<hipache_raft::inject::Bug>,
    /// Each node's data dir on its own mount of this lossy file system, for power cuts.
    pub power: Option<crate::power::Backend>,
    pub dir: tempfile::TempDir,
}

/// INFO RAFT as a map of fields.
pub fn raft_info(resp: &mut Resp) -> std::collections::HashMap<String, String> {
    match resp.cmd(&["INFO", "raft"]) {
        Reply::Bulk(text) => parse_info(&text),
        _ => Default::default(),
    }
}

/// The `field:value` lines of an INFO reply.
pub fn parse_info(text: &[u8]) -> std::collections::HashMap<String, String> {
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

impl Cluster {
    /// Starts `n` nodes: node 1 initialises, the others join it.
    pub fn start(n: usize, cluster_config: Value) -> Cluster {
        Self::start_with(n, cluster_config, false)
    }

    pub fn start_with(n: usize, cluster_config: Value, advertise_names: bool) -> Cluster {
        Self::start_configured(n, cluster_config, json!({}), advertise_names)
    }

    /// Starts `n` nodes whose `cluster` and `server` sections get these keys.
    pub fn start_configured(n: usize, cluster_config: Value, server_config: Value, advertise_names: bool) -> Cluster {
        let mut c = Cluster {
            dir: tempfile::tempdir().unwrap(),
            members: Vec::new(),
            cluster_config,
            advertise_names,
            server_config,
            own_ips: false,
            behind_proxy: false,
            logs: false,
            inject: None,
            power: None,
        };
        for _ in 0..n {
            c.add_member();
        }
        c
    }

    /// Starts one more node that joins the cluster through node 1 (or initialises it).
    pub fn add_member(&mut self) -> usize {
        let i = self.reserve_member();
        let join = if i == 0 { vec![] } else { vec![self.members[0].grpc()] };
        self.launch(i, join);
        i
    }

    /// Picks the ports and data dir of one more member without starting it; returns its index.
    pub fn reserve_member(&mut self) -> usize {
        let id = self.members.len() as u64 + 1;
        let dir = self.dir.path().join(format!("n{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mount = self.power.as_ref().map(|fs| crate::power::Mount::new(fs, &dir.join("power")).expect("mount"));
        let member = if self.own_ips {
            let ip = crate::net::node_ip(self.members.len());
            Member { id, ip, dir, resp_port: 6379, grpc_port: OWN_IP_GRPC_PORT, http_port: 8080, process: None, mount }
        } else {
            let ip = "127.0.0.1".to_string();
            let (resp_port, grpc_port, http_port) = (free_port(), free_port(), free_port());
            Member { id, ip, dir, resp_port, grpc_port, http_port, process: None, mount }
        };
        self.members.push(member);
        self.members.len() - 1
    }

    pub fn config(&self, i: usize, join: Vec<String>) -> Value {
        let m = &self.members[i];
        let mut config = base_config(&m.dir);
        config["cluster"]["dataDir"] = json!(m.data_dir());
        config["http"] = json!({ "bind": [{ "address": m.ip, "port": m.http_port }] });
        let cluster = config["cluster"].as_object_mut().unwrap();
        cluster.insert("nodeId".into(), json!(m.id));
        cluster.insert("resp".into(), json!(format!("{}:{}", m.ip, m.resp_port)));
        if self.behind_proxy {
            cluster.insert("grpc".into(), json!(format!("{}:{}", m.ip, crate::net::behind_proxy(m.grpc_port))));
            cluster.insert("advertiseGrpc".into(), json!(m.grpc()));
        } else {
            cluster.insert("grpc".into(), json!(m.grpc()));
        }
        cluster.insert("join".into(), json!(join));
        if self.advertise_names {
            cluster.insert("advertiseGrpc".into(), json!(format!("localhost:{}", m.grpc_port)));
            cluster.insert("advertiseResp".into(), json!(format!("localhost:{}", m.resp_port)));
        }
        if let Some(extra) = self.cluster_config.as_object() {
            for (k, v) in extra {
                cluster.insert(k.clone(), v.clone());
            }
        }
        if let (Some(extra), Some(server)) = (self.server_config.as_object(), config["server"].as_object_mut()) {
            for (k, v) in extra {
                server.insert(k.clone(), v.clone());
            }
        }
        config
    }

    fn launch(&mut self, i: usize, join: Vec<String>) {
        let config = self.config(i, join);
        let m = &self.members[i];
        let bug = self.inject.map(|b| ("HIPACHE_INJECT_BUG", std::path::Path::new(b.name())));
        let node = if self.logs {
            Node::start_logged(&m.dir, &config, &m.log_path(), bug.as_slice())
        } else {
            Node::start(&m.dir, &config)
        };
        self.members[i].process = Some(node);
    }

    /// SIGKILL node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].process.take() {
            p.kill();
        }
    }

    /// Starts node `i` again on its data dir (it rejoins by itself).
    pub fn restart(&mut self, i: usize) {
        self.launch(i, Vec::new());
    }

    /// Starts node `i` again with an empty data dir, joining through member `via`: how a node
    /// that was removed from the membership comes back.
    pub fn rejoin(&mut self, i: usize, via: usize) {
        self.kill(i);
        let _ = std::fs::remove_dir_all(self.members[i].data_dir());
        let join = vec![self.members[via].grpc()];
        self.launch(i, join);
    }

    /// Index of the member every live node names as leader, once they agree.
    pub fn leader(&self, timeout: Duration) -> Option<usize> {
        let mut found = None;
        eventually(timeout, || {
            let mut leaders = self
                .members
                .iter()
                .filter(|m| m.process.is_some())
                .map(|m| raft_info(&mut m.resp()).get("raft_leader").cloned().unwrap_or_default());
            let first = leaders.next().unwrap_or_default();
            if first.is_empty() || !leaders.all(|l| l == first) {
                return false;
            }
            found = self.members.iter().position(|m| m.id.to_string() == first && m.process.is_some());
            found.is_some()
        });
        found
    }

    pub fn followers(&self, leader: usize) -> Vec<usize> {
        (0..self.members.len()).filter(|i| *i != leader && self.members[*i].process.is_some()).collect()
    }
}

/// A minimal HTTP/1.1 backend on an ephemeral loopback port that answers every request with
/// its current status (200 unless changed) and its own name as the body, closing the
/// connection after each response.
pub struct Backend {
    pub name: String,
    pub url: String,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
}

impl Backend {
    pub fn start(name: &str) -> Backend {
        use std::io::{Read, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let body = name.to_string();
        let status = Arc::new(AtomicU16::new(200));
        let hits = Arc::new(AtomicUsize::new(0));
        let (st, h) = (status.clone(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let (body, st, h) = (body.clone(), st.clone(), h.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let code = st.load(Ordering::SeqCst);
                    let head =
                        format!("HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                    let _ = s.write_all(head.as_bytes());
                    let _ = s.write_all(body.as_bytes());
                });
            }
        });
        Backend { name: name.to_string(), url, status, hits }
    }

    /// The status every later request gets.
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// One HTTP/1.1 GET through a proxy; returns the status code and body.
pub fn http_get(proxy: &str, host: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}
