//! Network faults between nodes.
//!
//! Each node listens on its own loopback address (`127.0.0.<10 + id>`) and its connections to
//! peers leave from that address, so a packet filter can tell node pairs apart while the
//! harness (talking from 127.0.0.1) keeps reaching every node, as Jepsen's clients do. The
//! filter rules live in a private network namespace the test creates (`unshare -rnm`, see
//! [`sandbox`]), so nothing touches the host's network.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Drops traffic between nodes.
pub trait Net {
    /// What the run reports it used.
    fn name(&self) -> &'static str;
    /// Drops every packet from node `from` to node `to` (indexes), for each pair.
    fn partition(&mut self, pairs: &[(usize, usize)]) -> Result<(), String>;
    /// Lets everything through again.
    fn heal(&mut self) -> Result<(), String>;
    /// Whether nodes must listen behind it (`TcpProxy`): on `behind_proxy(port)`, advertising
    /// `port`.
    fn proxied(&self) -> bool {
        false
    }
}

/// The loopback address of node index `i` (node id `i + 1`).
pub fn node_ip(i: usize) -> String {
    format!("127.0.0.{}", 11 + i)
}

/// nftables rules in the sandbox's network namespace: one table, one input chain, one drop
/// rule per directed pair. Healing deletes the table (atomic, idempotent).
#[derive(Default)]
pub struct Nft {
    active: bool,
}

const TABLE: &str = "hipache_faults";

fn nft(script: &str) -> Result<(), String> {
    use std::io::Write;
    use std::process::Stdio;
    let failed = |e: std::io::Error| format!("nft: {e}");
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(failed)?;
    child.stdin.take().ok_or("nft: no stdin")?.write_all(script.as_bytes()).map_err(failed)?;
    let out = child.wait_with_output().map_err(failed)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("nft: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Net for Nft {
    fn name(&self) -> &'static str {
        "nftables in a private network namespace"
    }

    fn partition(&mut self, pairs: &[(usize, usize)]) -> Result<(), String> {
        self.heal()?;
        let mut script =
            format!("add table inet {TABLE}\nadd chain inet {TABLE} input {{ type filter hook input priority 0; }}\n");
        for (from, to) in pairs {
            script.push_str(&format!(
                "add rule inet {TABLE} input ip saddr {} ip daddr {} drop\n",
                node_ip(*from),
                node_ip(*to)
            ));
        }
        nft(&script)?;
        self.active = true;
        Ok(())
    }

    fn heal(&mut self) -> Result<(), String> {
        if self.active {
            nft(&format!("delete table inet {TABLE}\n"))?;
            self.active = false;
        }
        Ok(())
    }
}

/// Where network namespaces are not allowed: a TCP proxy in front of each node's gRPC
/// listener, which nodes dial instead of the node itself (its advertised address). A node's
/// connections leave from its own loopback address, so the proxy knows which node each
/// connection comes from; the harness's (from 127.0.0.1) always pass. A partitioned direction
/// stops moving bytes (`Fault::Drop`: they wait in the sockets' buffers and flow again after
/// healing, as TCP retransmits after a dropping firewall goes) or cuts the connections at once
/// and refuses new ones (`Fault::Reset`).
pub struct TcpProxy {
    blocked: Arc<Mutex<HashSet<(usize, usize)>>>,
    fault: ProxyFault,
    open: Arc<Mutex<Vec<Proxied>>>,
    stop: Arc<AtomicBool>,
}

/// A socket of a proxied connection (from node, to node), kept to cut it (`ProxyFault::Reset`).
type Proxied = (Option<usize>, usize, TcpStream);

/// What a partitioned direction does to its traffic (`TcpProxy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyFault {
    Drop,
    Reset,
}

/// The port a node's gRPC listener has behind its proxy: the advertised one plus one.
pub fn behind_proxy(port: u16) -> u16 {
    port + 1
}

impl TcpProxy {
    /// Starts a proxy on `ip(i):port` in front of `ip(i):behind_proxy(port)` for each of
    /// `nodes` nodes.
    pub fn start(nodes: usize, port: u16, fault: ProxyFault) -> Result<TcpProxy, String> {
        let proxy = TcpProxy { blocked: Arc::default(), fault, open: Arc::default(), stop: Arc::default() };
        for to in 0..nodes {
            let listener =
                TcpListener::bind((node_ip(to).as_str(), port)).map_err(|e| format!("proxy for n{}: {e}", to + 1))?;
            listener.set_nonblocking(true).map_err(|e| e.to_string())?;
            let upstream = format!("{}:{}", node_ip(to), behind_proxy(port));
            let (blocked, open, stop) = (proxy.blocked.clone(), proxy.open.clone(), proxy.stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((client, peer)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let from = (0..nodes).find(|&i| peer.ip().to_string() == node_ip(i));
                    let cut = |a: usize, b: usize| blocked.lock().unwrap().contains(&(a, b));
                    if fault == ProxyFault::Reset && from.is_some_and(|f| cut(f, to) || cut(to, f)) {
                        continue; // dropped: the connection is closed at once
                    }
                    let Ok(server) = TcpStream::connect(&upstream) else { continue };
                    // Nagle would hold small gRPC frames for the peer's delayed ACK (40 ms).
                    let _ = client.set_nonblocking(false).and(client.set_nodelay(true)).and(server.set_nodelay(true));
                    if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
                        let mut open = open.lock().unwrap();
                        open.push((from, to, c));
                        open.push((from, to, s));
                    }
                    for (src, dst, dir) in [
                        (client.try_clone(), server.try_clone(), (from, Some(to))),
                        (server.try_clone(), client.try_clone(), (Some(to), from)),
                    ] {
                        let (Ok(src), Ok(dst)) = (src, dst) else { continue };
                        let (blocked, stop) = (blocked.clone(), stop.clone());
                        std::thread::spawn(move || pump(src, dst, dir, &blocked, &stop));
                    }
                }
            });
        }
        Ok(proxy)
    }
}

/// Copies `src` to `dst` while the direction `dir` (from node, to node; `None` is the
/// harness) is not blocked; stalls while it is.
fn pump(
    mut src: TcpStream,
    mut dst: TcpStream,
    dir: (Option<usize>, Option<usize>),
    blocked: &Mutex<HashSet<(usize, usize)>>,
    stop: &AtomicBool,
) {
    let _ = src.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::SeqCst) {
        if let (Some(a), Some(b)) = dir {
            if blocked.lock().unwrap().contains(&(a, b)) {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        }
        match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if dst.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = dst.shutdown(Shutdown::Write);
}

impl Net for TcpProxy {
    fn name(&self) -> &'static str {
        match self.fault {
            ProxyFault::Drop => "in-harness TCP proxy per node (drop)",
            ProxyFault::Reset => "in-harness TCP proxy per node (reset)",
        }
    }

    fn partition(&mut self, pairs: &[(usize, usize)]) -> Result<(), String> {
        let mut blocked = self.blocked.lock().unwrap();
        blocked.clear();
        blocked.extend(pairs.iter().copied());
        if self.fault == ProxyFault::Reset {
            let mut open = self.open.lock().unwrap();
            open.retain(|(from, to, stream)| {
                let cut = from.is_some_and(|f| blocked.contains(&(f, *to)) || blocked.contains(&(*to, f)));
                if cut {
                    let _ = stream.shutdown(Shutdown::Both);
                }
                !cut
            });
        }
        Ok(())
    }

    fn heal(&mut self) -> Result<(), String> {
        self.blocked.lock().unwrap().clear();
        Ok(())
    }

    fn proxied(&self) -> bool {
        true
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for (_, _, stream) in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Running a test inside a private user and network namespace.
pub mod sandbox {
    use std::process::Command;

    const INSIDE: &str = "CLUSTER_TEST_SANDBOX";

    /// Why fault tests cannot create their sandbox here, if they cannot.
    pub fn unavailable() -> Option<String> {
        let probe =
            Command::new("unshare").args(["-rnm", "sh", "-c", "ip link set lo up && nft list ruleset"]).output();
        match probe {
            Ok(out) if out.status.success() => None,
            Ok(out) => {
                Some(format!("unshare -rnm with ip and nft failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
            }
            Err(e) => Some(format!("cannot run unshare: {e}")),
        }
    }

    /// For tests that need the sandbox whatever their faults: says SKIPPED (and returns false)
    /// where it cannot be made, else [`enter`]s it.
    pub fn enter_or_skip(test: &str) -> bool {
        if std::env::var_os(INSIDE).is_none() {
            if let Some(why) = unavailable() {
                eprintln!("SKIPPED {test}: needs a private network namespace: {why}");
                return false;
            }
        }
        enter(test)
    }

    /// Inside the sandbox: brings loopback up and returns true. Outside: runs this same test
    /// inside a new sandbox, fails if it failed, and returns false (the caller stops there).
    pub fn enter(test: &str) -> bool {
        if std::env::var_os(INSIDE).is_some() {
            let up = Command::new("ip").args(["link", "set", "lo", "up"]).status().expect("run ip");
            assert!(up.success(), "cannot bring loopback up in the sandbox");
            return true;
        }
        let exe = std::env::current_exe().expect("the test binary");
        // A mount namespace too: power cuts mount a FUSE file system per node in there.
        let status = Command::new("unshare")
            .arg("-rnm")
            .arg(exe)
            .args(["--exact", test, "--nocapture", "--test-threads=1", "--include-ignored"])
            .env(INSIDE, "1")
            .status()
            .expect("run unshare");
        assert!(status.success(), "{test} failed inside its network namespace");
        false
    }
}
