//! One fault-test run: a cluster, concurrent RESP workers appending to and reading lists, the
//! nemesis, then heal, recovery, final reads and the checks. Artifacts (history, node logs,
//! results) go to `target/cluster-tests/<name>-<seed>-<time>/`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hipache_raft::keyspace::Reply;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::checker::{check_key, Violation};
use crate::client::{CallError, Conn};
use crate::cluster::{http_get, Backend, Cluster};
use crate::cluster::{parse_info, OWN_IP_GRPC_PORT};
use crate::history::{History, Op, Outcome, F};
use crate::nemesis::{leader_of, Fault, Nemesis};
use crate::net::{sandbox, Net, Nft, ProxyFault, TcpProxy};
use crate::transfer;
use crate::watch::{self, Watchers};
use hipache_raft::inject::Bug;

/// Appends per key before workers move on to the next keys (short per-key histories).
const APPENDS_PER_KEY: u64 = 100;
/// Keys in use at once.
const ACTIVE_KEYS: u64 = 5;
/// A call that has not answered by then is `Info`.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// After healing, how long every node has to accept a write and to converge.
const RECOVERY: Duration = Duration::from_secs(15);

pub struct Spec {
    pub name: &'static str,
    pub nodes: usize,
    pub duration: Duration,
    pub faults: &'static [Fault],
    /// A known bug every node runs with: the run must then fail.
    pub inject: Option<Bug>,
    /// `cluster.snapshotThreshold`: low, so snapshots, purges and snapshot installs happen
    /// under faults.
    pub snapshot_threshold: u64,
    /// The seed; `None`: `CLUSTER_TEST_SEED` or a new one.
    pub seed: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub net: String,
    /// The lossy file system power cuts ran on (`power::Backend::name`), or "none".
    pub power: String,
    pub artifacts: PathBuf,
    pub ops: usize,
    pub keys: usize,
    pub events: usize,
    pub violations: Vec<Violation>,
    /// Safety problems outside one key's history: replicas that differ, wrong reply types.
    pub divergence: Vec<String>,
    /// Liveness, reported apart from safety: nodes that did not accept a write after healing.
    pub unavailable: Vec<String>,
    /// Watch streams that missed, repeated or reordered a change, or did not end on the final
    /// values (`watch::check`).
    pub watch: Vec<String>,
    pub panics: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
            && self.divergence.is_empty()
            && self.unavailable.is_empty()
            && self.watch.is_empty()
            && self.panics.is_empty()
    }
}

/// The seed: `CLUSTER_TEST_SEED`, or a new one (printed, so a failure can be replayed).
pub fn seed() -> u64 {
    std::env::var("CLUSTER_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random)
}

/// Runs `spec` and asserts it passed (see [`run_sandboxed`]).
pub fn run_test(test: &str, spec: Spec) -> Option<Report> {
    let report = run_sandboxed(test, spec)?;
    assert!(report.passed(), "{} failed; artifacts: {}", test, report.artifacts.display());
    Some(report)
}

/// Runs `spec`. Partitions need the sandbox (a private user, network and mount namespace;
/// the test runs again inside it), power cuts a lossy file system (`power`), mounted inside
/// the sandbox where there is one. Returns `None` in the outer process of a sandboxed test,
/// and where the faults cannot be made here (saying SKIPPED); a run of several kinds of faults
/// leaves out only those it cannot make, and says so.
pub fn run_sandboxed(test: &str, spec: Spec) -> Option<Report> {
    let wants = |kind: &[Fault]| spec.faults.iter().any(|f| kind.contains(f));
    let only = |kind: &[Fault]| !spec.faults.is_empty() && spec.faults.iter().all(|f| kind.contains(f));
    let inside = std::env::var_os("CLUSTER_TEST_SANDBOX").is_some();
    // `CLUSTER_TEST_NET=proxy` (or `proxy-reset`) partitions through the TCP proxy even where
    // the sandbox can be made.
    let asked = std::env::var("CLUSTER_TEST_NET").ok();
    let proxy_asked = asked.as_deref().is_some_and(|n| n.starts_with("proxy"));
    let no_sandbox = if inside || proxy_asked || !(wants(Fault::PARTITIONS) || wants(Fault::POWER)) {
        None
    } else {
        sandbox::unavailable()
    };
    let sandboxed = !proxy_asked && no_sandbox.is_none() && (wants(Fault::PARTITIONS) || wants(Fault::POWER));
    if sandboxed && !sandbox::enter(test) {
        return None;
    }
    let net: Option<Box<dyn Net>> = match (wants(Fault::PARTITIONS), no_sandbox.is_some() || proxy_asked) {
        (false, _) => None,
        (true, false) => Some(Box::new(Nft::default())),
        (true, true) => {
            if let Some(why) = &no_sandbox {
                eprintln!("{test}: no network namespace ({why}): partitions through the in-harness TCP proxy");
            }
            let fault = if asked.as_deref() == Some("proxy-reset") { ProxyFault::Reset } else { ProxyFault::Drop };
            match TcpProxy::start(spec.nodes, OWN_IP_GRPC_PORT, fault) {
                Ok(proxy) => Some(Box::new(proxy)),
                Err(why) => {
                    eprintln!("SKIPPED {test}: no network namespace and no TCP proxy: {why}");
                    return None;
                }
            }
        }
    };
    let power = if wants(Fault::POWER) {
        match crate::power::usable() {
            Ok(fs) => Some(fs),
            Err(why) if only(Fault::POWER) => {
                eprintln!("SKIPPED {test}: power cuts need a lossy FUSE file system: {why}");
                return None;
            }
            Err(why) => {
                eprintln!("{test}: no power cuts: {why}");
                None
            }
        }
    } else {
        None
    };
    Some(run(spec, net, power))
}

pub fn run(spec: Spec, net: Option<Box<dyn Net>>, power: Option<crate::power::Backend>) -> Report {
    let seed = spec.seed.unwrap_or_else(seed);
    let net_name = net.as_ref().map_or("none (no partitions)", |n| n.name()).to_string();
    let power_name = power.as_ref().map_or("none", |p| p.name()).to_string();
    eprintln!("{}: seed {seed} (CLUSTER_TEST_SEED={seed} replays its choices), {} nodes, {:?}, faults {:?}, network: {net_name}, power cuts: {power_name}, injected bug: {:?}", spec.name, spec.nodes, spec.duration, spec.faults, spec.inject);
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let artifacts = target_dir().join("cluster-tests").join(format!("{}-{seed}-{stamp}", spec.name));
    std::fs::create_dir_all(&artifacts).expect("create the artifacts directory");

    let behind_proxy = net.as_ref().is_some_and(|n| n.proxied());
    let mut cluster =
        Cluster { power, behind_proxy, ..fault_cluster(net.is_some(), spec.snapshot_threshold, spec.inject) };
    for _ in 0..spec.nodes {
        cluster.add_member();
    }
    let history = History::default();
    let mut nemesis =
        Nemesis { cluster: &mut cluster, net, rng: StdRng::seed_from_u64(seed), history: history.clone() };
    nemesis.leader().expect("the cluster elects a leader");

    let grpc: Vec<String> = nemesis.cluster.members.iter().map(|m| m.grpc()).collect();
    let watchers = Watchers::start(&grpc);
    let addrs: Vec<SocketAddr> = nemesis.cluster.members.iter().map(|m| m.resp_addr()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let workload = Arc::new(Workload {
        addrs,
        history: history.clone(),
        stop: stop.clone(),
        appends: AtomicU64::new(0),
        processes: AtomicU64::new(1000),
        unexpected: Default::default(),
    });
    let routes = Routes::seed(nemesis.cluster, seed);
    transfer::seed(workload.addrs[0]);
    // Two clients, so transactions conflict and WATCH has something to abort.
    let transfers: Vec<_> = (0..2u64)
        .map(|c| {
            let (addrs, history, stop) = (workload.addrs.clone(), history.clone(), stop.clone());
            let seed = seed ^ (0x7a + c);
            std::thread::spawn(move || transfer::run_until(&addrs, &history, &stop, seed, 900_000 + c * 10_000))
        })
        .collect();
    let router = {
        let (routes, addrs, stop) = (routes.clone(), workload.addrs.clone(), stop.clone());
        std::thread::spawn(move || routes.rewrite_until(&addrs, &stop))
    };
    let workers: Vec<_> = (0..2 * spec.nodes as u64)
        .map(|w| {
            let workload = workload.clone();
            std::thread::spawn(move || workload.worker(w, seed.wrapping_add(w + 1)))
        })
        .collect();
    nemesis.run(spec.faults, Instant::now() + spec.duration);
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        let _ = w.join();
    }
    let _ = router.join();
    for t in transfers {
        let _ = t.join();
    }
    if let Some(net) = nemesis.net.as_mut() {
        let _ = net.heal();
    }

    let mut report =
        Report { seed, net: net_name, power: power_name, artifacts: artifacts.clone(), ..Report::default() };
    report.unavailable = recover(&cluster, &history);
    report.unavailable.extend(settle(&cluster, &history));
    let ops = history.ops();
    let keys: BTreeSet<String> = ops.iter().filter(|o| o.f.is_list_append()).map(|o| o.key.clone()).collect();
    let others = transfer::KEYS.iter().map(|k| k.to_string()).chain(Routes::keys());
    let (finals, diverged) = final_lists(&cluster, keys.iter().cloned().chain(others).collect());
    report.divergence.extend(diverged);
    for key in &keys {
        if let Some(last) = finals.get(key) {
            let key_ops: Vec<Op> = ops.iter().filter(|o| &o.key == key).cloned().collect();
            report.violations.extend(check_key(key, &key_ops, last));
        }
    }
    if let (Some(a), Some(b)) = (finals.get(transfer::KEYS[0]), finals.get(transfer::KEYS[1])) {
        let transfer_ops: Vec<Op> = ops.iter().filter(|o| !o.f.is_list_append()).cloned().collect();
        report.violations.extend(transfer::check(&transfer_ops, &[a.clone(), b.clone()]));
    }
    // The run's last write: a watcher that received it has received everything before it.
    let marker = "watch:end";
    if poll(RECOVERY, || write_through_leader(&cluster, marker)).is_none() {
        report.unavailable.push(format!("no write of {marker} after the final reads"));
    }
    let list_finals = finals.iter().filter(|(k, _)| keys.contains(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    report.watch = watch::check(&watchers.finish(marker, RECOVERY), &list_finals);
    report.divergence.extend(workload.unexpected.lock().unwrap().iter().cloned());
    report.divergence.extend(routes.check_proxies(&cluster, &finals));
    report.panics = scan_logs(&cluster, &artifacts);
    report.ops = ops.len();
    report.keys = keys.len();
    report.events = history.events().len();
    history.write(&artifacts.join("history.jsonl")).expect("write history.jsonl");
    summarise(&report, &ops, &history);
    report
}

/// An empty cluster as fault tests run it (add members with `Cluster::add_member`): logs to
/// files, access logs off, each node on its own address when `own_ips` (partitions).
pub fn fault_cluster(own_ips: bool, snapshot_threshold: u64, inject: Option<Bug>) -> Cluster {
    Cluster {
        own_ips,
        logs: true,
        inject,
        ..Cluster::start_configured(
            0,
            json!({ "snapshotThreshold": snapshot_threshold }),
            json!({ "accessLog": null }),
            false,
        )
    }
}

struct Workload {
    addrs: Vec<SocketAddr>,
    history: History,
    stop: Arc<AtomicBool>,
    /// Appends invoked so far, which decides the active keys.
    appends: AtomicU64,
    /// Process numbers for workers that continue after an `Info`.
    processes: AtomicU64,
    /// Replies of the wrong type (a reply meant for another request): failures of the run.
    unexpected: std::sync::Mutex<Vec<String>>,
}

impl Workload {
    /// Worker `w`: every third one reads on `READONLY` connections (its node's replica).
    fn worker(&self, w: u64, seed: u64) {
        let local = w % 3 == 2;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut process = w;
        let mut conns: BTreeMap<usize, Conn> = BTreeMap::new();
        let mut seq = 0u64;
        while !self.stop.load(Ordering::SeqCst) {
            let node = rng.random_range(0..self.addrs.len());
            let base = self.appends.load(Ordering::SeqCst) / APPENDS_PER_KEY;
            let key = format!("jt:{}", base + rng.random_range(0..ACTIVE_KEYS));
            let append = rng.random_bool(0.5);
            let value = append.then(|| {
                seq += 1;
                self.appends.fetch_add(1, Ordering::SeqCst);
                format!("{w}-{seq}")
            });
            let inv_ns = self.history.now();
            let conn = match conns.entry(node) {
                std::collections::btree_map::Entry::Occupied(c) => Ok(c.into_mut()),
                std::collections::btree_map::Entry::Vacant(slot) => {
                    connect(self.addrs[node], local).map(|c| slot.insert(c))
                }
            };
            let result = conn.and_then(|c| match &value {
                Some(v) => c.call(&["RPUSH", &key, v]),
                None => c.call(&["LRANGE", &key, "0", "-1"]),
            });
            let mut op = Op {
                process,
                node,
                f: match (append, local) {
                    (true, _) => F::Append,
                    (false, false) => F::Read,
                    (false, true) => F::LocalRead,
                },
                key,
                value,
                inv_ns,
                cmp_ns: Some(self.history.now()),
                outcome: Outcome::Ok,
                len: None,
                list: None,
                error: None,
            };
            match (result, append) {
                (Ok(Reply::Int(n)), true) => op.len = usize::try_from(n).ok(),
                (Ok(Reply::Array(items)), false) => op.list = Some(elements(&items)),
                // Reads change nothing: any failure is a failure.
                (Ok(Reply::Error(e)), false) => (op.outcome, op.error) = (Outcome::Fail, Some(e)),
                // A refused write may still have been committed by the leader it was forwarded
                // to (the Redis-Raft NOLEADER lesson): only the sender knows nothing ran.
                (Ok(Reply::Error(e)), true) => (op.outcome, op.cmp_ns, op.error) = (Outcome::Info, None, Some(e)),
                (Ok(other), _) => {
                    let what = format!("{} on n{} got {other:?}", op.key, node + 1);
                    self.unexpected.lock().unwrap().push(what);
                    (op.outcome, op.cmp_ns) = (Outcome::Info, None);
                }
                (Err(CallError::NotSent(e)), _) => (op.outcome, op.error) = (Outcome::Fail, Some(e)),
                (Err(CallError::Unknown(e)), append) => {
                    (op.outcome, op.error) = (if append { Outcome::Info } else { Outcome::Fail }, Some(e));
                    if append {
                        op.cmp_ns = None;
                    }
                }
            }
            let op_info = op.outcome == Outcome::Info;
            let failed = op.outcome != Outcome::Ok;
            self.history.op(op);
            if failed {
                // The connection may be stuck mid-reply: dropped. A worker after `Info` is a
                // new process, and so is one on a new connection: `READONLY`'s promises hold
                // per connection (a node wiped and rejoined, or restarted behind, legitimately
                // shows less to a new one).
                conns.remove(&node);
                if op_info || local {
                    process = self.processes.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(50));
            } else {
                std::thread::sleep(Duration::from_millis(rng.random_range(2..8)));
            }
        }
    }
}

/// Virtual hosts whose backends are rewritten during the run (`MULTI`/`DEL`/`RPUSH`/`EXEC`
/// through random nodes); afterwards every node's proxy must route each of them to a backend
/// of its final list.
#[derive(Clone)]
struct Routes {
    backends: Arc<Vec<Backend>>,
    seed: u64,
}

const VHOSTS: usize = 4;

impl Routes {
    fn seed(cluster: &Cluster, seed: u64) -> Routes {
        let backends: Vec<Backend> = (0..4).map(|i| Backend::start(&format!("backend-{i}"))).collect();
        let routes = Routes { backends: Arc::new(backends), seed };
        let mut conn = Conn::connect(cluster.members[0].resp_addr(), CALL_TIMEOUT).expect("connect to n1");
        for v in 0..VHOSTS {
            let url = &routes.backends[v % routes.backends.len()].url;
            let reply = conn.call(&["RPUSH", &format!("frontend:v{v}.test"), "app", url]);
            assert!(matches!(reply, Ok(Reply::Int(_))), "seeding frontend:v{v}.test: {reply:?}");
        }
        routes
    }

    fn rewrite_until(&self, addrs: &[SocketAddr], stop: &AtomicBool) {
        let mut rng = StdRng::seed_from_u64(self.seed ^ 0x5eed);
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(rng.random_range(100..300)));
            let key = format!("frontend:v{}.test", rng.random_range(0..VHOSTS));
            let mut rpush = vec!["RPUSH".to_string(), key.clone(), "app".to_string()];
            for _ in 0..rng.random_range(1..=2) {
                rpush.push(self.backends[rng.random_range(0..self.backends.len())].url.clone());
            }
            // Outcomes do not matter: the final lists are read after healing.
            if let Ok(mut conn) = Conn::connect(addrs[rng.random_range(0..addrs.len())], CALL_TIMEOUT) {
                let _ = conn.call(&["MULTI"]);
                let _ = conn.call(&["DEL", &key]);
                let _ = conn.call(&rpush);
                let _ = conn.call(&["EXEC"]);
            }
        }
    }

    /// The rewritten `frontend:` keys.
    fn keys() -> impl Iterator<Item = String> {
        (0..VHOSTS).map(|v| format!("frontend:v{v}.test"))
    }

    /// Every node's proxy, asked a few times for each virtual host, answers from a backend of
    /// the host's final list.
    fn check_proxies(&self, cluster: &Cluster, finals: &BTreeMap<String, Vec<String>>) -> Vec<String> {
        let mut wrong = Vec::new();
        for (v, key) in Routes::keys().enumerate() {
            let Some(last) = finals.get(&key) else {
                wrong.push(format!("{key}: no final list"));
                continue;
            };
            let allowed: Vec<&str> =
                self.backends.iter().filter(|b| last.contains(&b.url)).map(|b| b.name.as_str()).collect();
            for m in &cluster.members {
                for _ in 0..4 {
                    let (status, body) = http_get(&m.http(), &format!("v{v}.test"));
                    if status != 200 || !allowed.contains(&body.as_str()) {
                        wrong.push(format!(
                            "n{}'s proxy answered {status} {body:?} for v{v}.test, whose backends are {allowed:?}",
                            m.id
                        ));
                        break;
                    }
                }
            }
        }
        eprintln!(
            "proxy agreement: {VHOSTS} rewritten virtual hosts probed on every node, {} disagreements",
            wrong.len()
        );
        wrong
    }
}

/// A worker's connection; a `local` one reads its node's replica (`READONLY`).
fn connect(addr: SocketAddr, local: bool) -> Result<Conn, CallError> {
    let mut conn = Conn::connect(addr, CALL_TIMEOUT)?;
    if local {
        match conn.call(&["READONLY"]) {
            Ok(Reply::Status(_)) => {}
            // No operation was sent on it yet.
            other => return Err(CallError::NotSent(format!("READONLY: {other:?}"))),
        }
    }
    Ok(conn)
}

/// After healing: every node must accept a write within `RECOVERY`. Returns the ones that did
/// not, with the time each one took printed.
fn recover(cluster: &Cluster, history: &History) -> Vec<String> {
    let mut unavailable = Vec::new();
    let healed = Instant::now();
    for (i, m) in cluster.members.iter().enumerate() {
        let ok = poll(RECOVERY.saturating_sub(healed.elapsed()), || {
            let mut c = Conn::connect(m.resp_addr(), CALL_TIMEOUT).ok()?;
            matches!(c.call(&["RPUSH", &format!("jt:live:n{}", i + 1), "x"]), Ok(Reply::Int(_))).then_some(())
        });
        match ok {
            Some(()) => {
                history.event(format!("n{} accepts writes {:.1} s after heal", i + 1, healed.elapsed().as_secs_f64()))
            }
            None => unavailable.push(format!("n{} accepted no write within {RECOVERY:?} after heal", i + 1)),
        }
    }
    unavailable
}

/// Longest a node may still be retrying writes its clients gave up on (`settle`): eight
/// attempts of a forward timeout and an election wait each.
const SETTLE: Duration = Duration::from_secs(90);

/// Waits until no node has a write in flight (`raft_writes_in_flight`): a write whose client
/// timed out is retried by its node until it has an outcome, and may be applied until then,
/// so reading the final lists earlier could miss it (found by the soak: a write applied after
/// the final reads). Returns the nodes still busy after `SETTLE`.
fn settle(cluster: &Cluster, history: &History) -> Vec<String> {
    let started = Instant::now();
    let in_flight = |m: &crate::cluster::Member| -> Option<u64> {
        let mut c = Conn::connect(m.resp_addr(), CALL_TIMEOUT).ok()?;
        let Ok(Reply::Bulk(info)) = c.call(&["INFO", "raft"]) else { return None };
        parse_info(&info).get("raft_writes_in_flight")?.parse().ok()
    };
    let busy = |cluster: &Cluster| -> Vec<String> {
        let counts = cluster.members.iter().map(|m| (m.id, in_flight(m)));
        counts.filter(|(_, n)| *n != Some(0)).map(|(id, n)| format!("n{id}: {n:?} writes in flight")).collect()
    };
    let settled = poll(SETTLE, || busy(cluster).is_empty().then_some(()));
    match settled {
        Some(()) => {
            history.event(format!("no writes in flight {:.1} s after recovery", started.elapsed().as_secs_f64()));
            Vec::new()
        }
        None => busy(cluster).into_iter().map(|b| format!("{b} {SETTLE:?} after recovery")).collect(),
    }
}

/// An `LRANGE` reply's elements as the history records them (anything but a bulk string is
/// kept as its debug form, so the checker reports it as a phantom).
pub(crate) fn elements(items: &[Reply]) -> Vec<String> {
    items
        .iter()
        .map(|i| match i {
            Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            other => format!("{other:?}"),
        })
        .collect()
}

/// Each key's list as one connection reads it (`local`: on `READONLY`, the node's replica).
fn read_lists(addr: SocketAddr, local: bool, keys: &[String]) -> Option<Vec<Vec<String>>> {
    let mut c = Conn::connect(addr, CALL_TIMEOUT).ok()?;
    if local {
        c.call(&["READONLY"]).ok()?;
    }
    keys.iter()
        .map(|key| match c.call(&["LRANGE", key, "0", "-1"]).ok()? {
            Reply::Array(items) => Some(elements(&items)),
            _ => None,
        })
        .collect()
}

/// The keys' final lists: linearizable reads, which every replica's local (READONLY) reads
/// must equal once caught up. Differences still there after `RECOVERY` (one deadline for all
/// keys) are divergence, returned as the second value.
fn final_lists(cluster: &Cluster, keys: Vec<String>) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let deadline = Instant::now() + RECOVERY;
    let leader = leader_of(cluster).unwrap_or(0);
    let Some(lists) = poll(RECOVERY, || read_lists(cluster.members[leader].resp_addr(), false, &keys)) else {
        return (BTreeMap::new(), vec!["no linearizable read of the final lists succeeded after heal".into()]);
    };
    let mut differ = Vec::new();
    loop {
        differ.clear();
        for (i, m) in cluster.members.iter().enumerate() {
            match read_lists(m.resp_addr(), true, &keys) {
                None => differ.push(format!("n{}'s replica could not be read", i + 1)),
                Some(local) => {
                    differ.extend(keys.iter().zip(lists.iter().zip(local)).filter(|(_, (a, b))| *a != b).map(
                        |(key, (last, local))| {
                            format!("{key}: n{}'s replica holds {local:?}, the cluster {} elements", i + 1, last.len())
                        },
                    ))
                }
            }
        }
        if differ.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (keys.into_iter().zip(lists).collect(), differ)
}

fn write_through_leader(cluster: &Cluster, key: &str) -> Option<()> {
    let leader = leader_of(cluster)?;
    let mut c = Conn::connect(cluster.members[leader].resp_addr(), CALL_TIMEOUT).ok()?;
    matches!(c.call(&["RPUSH", key, "end"]), Ok(Reply::Int(_))).then_some(())
}

fn poll<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Copies the node logs into the artifacts and returns every panic line in them.
fn scan_logs(cluster: &Cluster, artifacts: &std::path::Path) -> Vec<String> {
    let mut panics = Vec::new();
    for m in &cluster.members {
        let log = std::fs::read_to_string(m.log_path()).unwrap_or_default();
        let _ = std::fs::write(artifacts.join(format!("n{}.log", m.id)), &log);
        panics.extend(log.lines().filter(|l| l.contains("panicked at")).map(|l| format!("n{}: {l}", m.id)));
    }
    panics
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// What the run did and found, with a witness and the faults around it for each violation.
fn summarise(report: &Report, ops: &[Op], history: &History) {
    let count = |o: Outcome| ops.iter().filter(|op| op.outcome == o).count();
    let mut per_key: BTreeMap<&str, usize> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.f.is_list_append()) {
        *per_key.entry(&op.key).or_default() += 1;
    }
    let (min, max) = (per_key.values().min().copied().unwrap_or(0), per_key.values().max().copied().unwrap_or(0));
    eprintln!(
        "seed {}: {} operations ({} ok, {} fail, {} info) on {} keys ({min}–{max} per key, all checked), {} nemesis events, network: {}",
        report.seed,
        ops.len(),
        count(Outcome::Ok),
        count(Outcome::Fail),
        count(Outcome::Info),
        report.keys,
        report.events,
        report.net
    );
    let events = history.events();
    // One duplicate shows in every later read: the first few violations say enough.
    const SHOWN: usize = 20;
    if report.violations.len() > SHOWN {
        eprintln!("{} violations, the first {SHOWN} shown (all in results.json)", report.violations.len());
    }
    for v in report.violations.iter().take(SHOWN) {
        eprintln!("VIOLATION {:?} on {}: {}", v.class, v.key, v.message);
        for op in &v.witness {
            eprintln!("  witness: {}", serde_json::to_string(op).unwrap_or_default());
        }
        let from = v.witness.iter().map(|o| o.inv_ns).min().unwrap_or(0);
        let to = v.witness.iter().filter_map(|o| o.cmp_ns).max().unwrap_or(u64::MAX);
        for e in
            events.iter().filter(|e| e.at_ns + 5_000_000_000 >= from && e.at_ns <= to.saturating_add(1_000_000_000))
        {
            eprintln!("  around: {:.3}s {}", e.at_ns as f64 / 1e9, e.what);
        }
    }
    for d in report.divergence.iter().chain(&report.unavailable).chain(&report.watch).chain(&report.panics) {
        eprintln!("FAILURE {d}");
    }
    eprintln!("artifacts: {}", report.artifacts.display());
    let results = json!({
        "seed": report.seed, "network": report.net, "power": report.power, "operations": ops.len(), "keys": report.keys,
        "events": report.events, "violations": report.violations.len(),
        "violation_list": report.violations.iter().map(|v| format!("{:?} on {}: {}", v.class, v.key, v.message)).collect::<Vec<_>>(),
        "divergence": report.divergence,
        "unavailable": report.unavailable, "watch": report.watch, "panics": report.panics,
    });
    let _ =
        std::fs::write(report.artifacts.join("results.json"), serde_json::to_vec_pretty(&results).unwrap_or_default());
}
