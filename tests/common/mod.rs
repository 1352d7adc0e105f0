//! Test harness: starts the real `hipache-raft` binary on ephemeral loopback ports and talks
//! RESP to it over real sockets.
#![allow(dead_code)] // each integration test binary uses a different part of the harness

pub mod script;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hipache_raft::keyspace::Reply;
use hipache_raft::resp::encode::parse_reply;
use serde_json::{json, Value};

/// A node process and the addresses it reported.
pub struct Node {
    child: Child,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub listening: Value,
    pub resp: SocketAddr,
    /// Every stdout line after the "listening" line (access log with `"accessLog": "-"`).
    pub stdout: Arc<Mutex<Vec<String>>>,
}

/// The node binary: cargo tells this package's integration tests where it is; other crates of
/// the workspace (cluster-tests) find it next to their own test executable, or in
/// `HIPACHE_RAFT_BIN`.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("HIPACHE_RAFT_BIN") {
        return PathBuf::from(p);
    }
    if let Some(p) = option_env!("CARGO_BIN_EXE_hipache-raft") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test> → target/<profile>/hipache-raft
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    profile_dir.join("hipache-raft")
}

/// A config for one test node: ephemeral ports, data under `dir`.
pub fn base_config(dir: &Path) -> Value {
    json!({
        "server": { "accessLog": "-", "httpKeepAlive": true, "tcpTimeout": 5, "deadBackendTTL": 2,
                    "retryOnError": 3, "connectTimeout": 1, "shutdownTimeout": 2, "workers": 2 },
        "http": { "port": 0, "bind": ["127.0.0.1"] },
        "cluster": { "nodeId": 1, "dataDir": dir.join("data").to_string_lossy(), "resp": "127.0.0.1:0",
                     "grpc": "127.0.0.1:0", "metrics": null, "snapshotThreshold": 5000 }
    })
}

/// A node with the default test config in a new temporary directory (kept alive by the
/// returned guard).
pub fn fresh_node() -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &base_config(dir.path()));
    (dir, node)
}

/// A private redis-server (with `extra_redis` arguments) next to a node whose default test
/// config `tweak` may change: the two sides of a differential test.
pub fn redis_and_node(extra_redis: &[&str], tweak: impl FnOnce(&mut Value)) -> (tempfile::TempDir, RedisServer, Node) {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start_with(dir.path(), extra_redis);
    let node_dir = dir.path().join("node");
    std::fs::create_dir_all(&node_dir).unwrap();
    let mut config = base_config(&node_dir);
    tweak(&mut config);
    let node = Node::start(&node_dir, &config);
    (dir, redis, node)
}

impl Node {
    /// Writes `config` to `dir/config.json` and starts the binary on it.
    pub fn start(dir: &Path, config: &Value) -> Node {
        let config_path = dir.join("config.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
        Self::start_with_args(dir, &config_path, &[])
    }

    pub fn start_with_args(dir: &Path, config_path: &Path, args: &[&str]) -> Node {
        Self::spawn(dir, config_path, args, &[], Stdio::inherit())
    }

    /// Starts with the node's log (stderr) appended to `log`, and extra environment variables.
    pub fn start_logged(dir: &Path, config: &Value, log: &Path, env: &[(&str, &Path)]) -> Node {
        let config_path = dir.join("config.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("open the node log");
        let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Self::spawn(dir, &config_path, &[], env, Stdio::from(file))
        }));
        started.unwrap_or_else(|_| {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            panic!(
                "the node did not start; the end of its log:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
    }

    /// Starts with extra environment variables (e.g. `SSL_CERT_FILE` for the backend trust store).
    pub fn start_with_env(dir: &Path, config: &Value, env: &[(&str, &Path)]) -> Node {
        let config_path = dir.join("config.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
        Self::spawn(dir, &config_path, &[], env, Stdio::inherit())
    }

    fn spawn(dir: &Path, config_path: &Path, args: &[&str], env: &[(&str, &Path)], stderr: Stdio) -> Node {
        let mut child = Command::new(binary())
            .arg("--config")
            .arg(config_path)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(dir)
            .env("RUST_LOG", std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "warn,openraft=error".into()))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start hipache-raft");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            let mut first = true;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if first && line.contains("\"listening\"") {
                    first = false;
                    let _ = tx.send(line);
                } else {
                    sink.lock().unwrap().push(line);
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let exited = child.try_wait().ok().flatten();
                let _ = child.kill();
                panic!("hipache-raft did not report its listeners (exited: {exited:?})");
            }
        };
        let listening: Value = serde_json::from_str(&line).unwrap();
        let resp = listening["resp"].as_str().unwrap().parse().unwrap();
        Node { child, dir: dir.to_path_buf(), config_path: config_path.to_path_buf(), listening, resp, stdout: lines }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn resp(&self) -> Resp {
        Resp::connect(self.resp)
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(self.pid(), "TERM");
        self.child.wait().unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success());
}

/// What the differential and protocol tests need from any RESP connection, TCP or unix.
pub trait RawConn {
    fn send_raw(&mut self, bytes: &[u8]);
    /// Reads exactly one reply's bytes.
    fn read_raw(&mut self) -> Vec<u8>;
}

impl RawConn for Resp {
    fn send_raw(&mut self, bytes: &[u8]) {
        Resp::send_raw(self, bytes)
    }
    fn read_raw(&mut self) -> Vec<u8> {
        Resp::read_raw(self)
    }
}

impl RawConn for UnixResp {
    fn send_raw(&mut self, bytes: &[u8]) {
        UnixResp::send_raw(self, bytes)
    }
    fn read_raw(&mut self) -> Vec<u8> {
        UnixResp::read_raw(self)
    }
}

/// A blocking RESP client that returns both parsed replies and their exact bytes.
pub struct Resp {
    stream: TcpStream,
    buf: Vec<u8>,
}

pub fn encode_command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Resp {
    pub fn connect(addr: SocketAddr) -> Resp {
        let stream = TcpStream::connect(addr).expect("connect to RESP");
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        stream.set_nodelay(true).unwrap();
        Resp { stream, buf: Vec::new() }
    }

    #[cfg(unix)]
    pub fn connect_unix(path: &Path) -> UnixResp {
        UnixResp::connect(path)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends one command and returns the raw bytes of its reply.
    pub fn raw<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Vec<u8> {
        self.send_raw(&encode_command(args));
        self.read_raw()
    }

    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Reply {
        let raw = self.raw(args);
        parse_reply(&raw).unwrap().unwrap().0
    }

    /// Reads exactly one reply's bytes.
    pub fn read_raw(&mut self) -> Vec<u8> {
        read_one(&mut self.stream, &mut self.buf)
    }

    pub fn read_reply(&mut self) -> Reply {
        let raw = self.read_raw();
        parse_reply(&raw).unwrap().unwrap().0
    }

    /// True when the server closed the connection.
    /// Whether (part of) a reply has arrived, without blocking.
    pub fn has_pending(&mut self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        self.stream.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let peeked = self.stream.peek(&mut b);
        self.stream.set_nonblocking(false).unwrap();
        matches!(peeked, Ok(n) if n > 0)
    }

    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0))
    }
}

fn read_one<S: Read>(stream: &mut S, buf: &mut Vec<u8>) -> Vec<u8> {
    loop {
        if let Some((_, used)) = parse_reply(buf).expect("server sent a malformed reply") {
            return buf.drain(..used).collect();
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = stream.read(&mut chunk).expect("read reply");
        assert!(n > 0, "connection closed while waiting for a reply");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The same client over a unix socket (the reference redis-server in differential tests).
pub struct UnixResp {
    stream: std::os::unix::net::UnixStream,
    buf: Vec<u8>,
}

impl UnixResp {
    pub fn connect(path: &Path) -> UnixResp {
        let stream = std::os::unix::net::UnixStream::connect(path).expect("connect to redis");
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        UnixResp { stream, buf: Vec::new() }
    }

    pub fn raw<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Vec<u8> {
        self.stream.write_all(&encode_command(args)).unwrap();
        read_one(&mut self.stream, &mut self.buf)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn read_raw(&mut self) -> Vec<u8> {
        read_one(&mut self.stream, &mut self.buf)
    }
}

/// A private redis-server on a unix socket in `dir`, stopped on drop (by its own PID only).
pub struct RedisServer {
    child: Child,
    pub socket: PathBuf,
}

impl RedisServer {
    pub fn start(dir: &Path) -> RedisServer {
        Self::start_with(dir, &[])
    }

    /// With extra `--option value` arguments, e.g. `["--requirepass", "pw"]`.
    pub fn start_with(dir: &Path, extra: &[&str]) -> RedisServer {
        let socket = dir.join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no", "--unixsocket"])
            .arg(&socket)
            .arg("--dir")
            .arg(dir)
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { child, socket }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn bulk(s: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// A backend on 127.0.0.1 (an ephemeral port) that runs `serve` on each connection, in a thread
/// of its own; returns its `http://` URL.
pub fn raw_backend(serve: fn(TcpStream)) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            std::thread::spawn(move || serve(conn));
        }
    });
    url
}
