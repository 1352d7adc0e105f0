//! Network faults between nodes.
//!
//! Each node listens on its own loopback address (`127.0.0.<10 + id>`) and its connections to
//! peers leave from that address, so a packet filter can tell node pairs apart while the
//! harness (talking from 127.0.0.1) keeps reaching every node, as Jepsen's clients do. The
//! filter rules live in a private network namespace the test creates (`unshare -rnm`, see
//! [`sandbox`]), so nothing touches the host's network.

use std::process::Command;

/// Drops traffic between nodes.
pub trait Net {
    /// What the run reports it used.
    fn name(&self) -> &'static str;
    /// Drops every packet from node `from` to node `to` (indexes), for each pair.
    fn partition(&mut self, pairs: &[(usize, usize)]) -> Result<(), String>;
    /// Lets everything through again.
    fn heal(&mut self) -> Result<(), String>;
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
