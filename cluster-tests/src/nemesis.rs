//! Faults on a seeded schedule: partitions, `kill -9` and `SIGSTOP`, each applied for a few
//! seconds and then healed, every step recorded in the history. The seed reproduces every
//! choice (which fault, which nodes, how long), not the timing of threads and packets.

use std::time::{Duration, Instant};

use hipache_raft::keyspace::Reply;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;

use crate::client::{CallError, Conn};
use crate::cluster::{parse_info, Cluster};
use crate::history::{History, Op, Outcome, F};
use crate::net::Net;
use crate::node::signal;

/// The process number of the nemesis's own acknowledged writes (`Fault::KillLeaderAfterAck`).
const ACKED_PROCESS: u64 = 800_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Random halves: ⌊n/2⌋ nodes cut off from the rest.
    PartitionHalves,
    /// The leader cut off from every other node.
    IsolateLeader,
    /// The leader hears nobody, but the others still hear it (one-way).
    OneWayToLeader,
    /// The leader on the minority side: with 5 nodes, it and one other node cut off from the
    /// other three (with 3, it alone).
    LeaderInMinority,
    /// Every node sees a majority, no two the same one (5 nodes or more: a node hears only its
    /// two ring neighbours), which is hard on elections.
    PartitionRing,
    /// Two halves and one node that talks to both (5 nodes or more).
    PartitionBridge,
    KillRandom,
    KillLeader,
    /// The leader killed right after it acknowledged a write (recorded in the history on key
    /// `jt:acked`, so the checker requires it in the final list).
    KillLeaderAfterAck,
    /// Every node at once, then all restarted on their data dirs.
    KillAll,
    /// `SIGSTOP` of the leader for longer than an election timeout, then `SIGCONT`.
    PauseLeader,
    /// `cluster remove-node` of a follower; it comes back with an empty data dir and `--join`.
    RemoveFollower,
    /// The same for the leader.
    RemoveLeader,
    /// A power cut of one node: `kill -9` and every write it had not synced dropped (`power`).
    PowerCutRandom,
    /// A power cut of every node at once.
    PowerCutAll,
}

impl Fault {
    pub const PARTITIONS: &'static [Fault] = &[
        Fault::PartitionHalves,
        Fault::IsolateLeader,
        Fault::OneWayToLeader,
        Fault::LeaderInMinority,
        Fault::PartitionRing,
        Fault::PartitionBridge,
    ];
    pub const CRASHES: &'static [Fault] =
        &[Fault::KillRandom, Fault::KillLeader, Fault::KillLeaderAfterAck, Fault::KillAll];
    pub const PAUSES: &'static [Fault] = &[Fault::PauseLeader];
    pub const MEMBERSHIP: &'static [Fault] = &[Fault::RemoveFollower, Fault::RemoveLeader];
    pub const POWER: &'static [Fault] = &[Fault::PowerCutRandom, Fault::PowerCutAll];

    fn needs_net(self) -> bool {
        Fault::PARTITIONS.contains(&self)
    }

    fn needs_power(self) -> bool {
        Fault::POWER.contains(&self)
    }
}

/// How to undo an applied fault.
enum Undo {
    Heal,
    Restart(Vec<usize>),
    Resume(usize),
    /// Node `.0` was removed; it rejoins through node `.1`.
    Rejoin(usize, usize),
}

pub struct Nemesis<'a> {
    pub cluster: &'a mut Cluster,
    pub net: Option<Box<dyn Net>>,
    pub rng: StdRng,
    pub history: History,
}

impl Nemesis<'_> {
    /// Runs faults from `faults` until `until`: a calm spell of 1–2 s, a fault for 2–4 s, heal.
    pub fn run(&mut self, faults_given: &[Fault], until: Instant) {
        let on_lossy_fs = self.cluster.members.iter().all(|m| m.mount.is_some());
        let faults: Vec<Fault> = faults_given
            .iter()
            .copied()
            .filter(|f| (!f.needs_net() || self.net.is_some()) && (!f.needs_power() || on_lossy_fs))
            .collect();
        let skipped: Vec<&Fault> = faults_given.iter().filter(|f| !faults.contains(f)).collect();
        if !skipped.is_empty() {
            self.history
                .event(format!("not applicable here (no network sandbox or no lossy file system): {skipped:?}"));
        }
        loop {
            let calm = Duration::from_millis(self.rng.random_range(1000..2000));
            if Instant::now() + calm >= until || faults.is_empty() {
                std::thread::sleep(until.saturating_duration_since(Instant::now()));
                return;
            }
            std::thread::sleep(calm);
            let Some(&fault) = faults.choose(&mut self.rng) else { return };
            let hold = Duration::from_millis(self.rng.random_range(2000..4000));
            match self.apply(fault) {
                Ok(undo) => {
                    std::thread::sleep(hold.min(until.saturating_duration_since(Instant::now())));
                    self.undo(undo);
                }
                Err(e) => self.history.event(format!("{fault:?} skipped: {e}")),
            }
        }
    }

    fn apply(&mut self, fault: Fault) -> Result<Undo, String> {
        let n = self.cluster.members.len();
        let all: Vec<usize> = (0..n).collect();
        match fault {
            Fault::PartitionHalves => {
                let mut order = all.clone();
                order.shuffle(&mut self.rng);
                let (small, big) = order.split_at(n / 2);
                let pairs = cross(small, big);
                self.partition(&pairs, format!("partition {} | {}", names(small), names(big)))
            }
            Fault::PartitionRing | Fault::PartitionBridge if n < 5 => Err(format!("needs 5 nodes, not {n}")),
            Fault::PartitionRing => {
                let mut ring = all.clone();
                ring.shuffle(&mut self.rng);
                // Cut each node from everyone but its two neighbours on the ring.
                let pairs: Vec<(usize, usize)> = (0..n)
                    .flat_map(|a| (0..n).map(move |b| (a, b)))
                    .filter(|&(a, b)| a != b && !matches!((b + n - a) % n, 1) && !matches!((a + n - b) % n, 1))
                    .map(|(a, b)| (ring[a], ring[b]))
                    .collect();
                self.partition(&pairs, format!("ring {}", names(&ring)))
            }
            Fault::PartitionBridge => {
                let mut order = all.clone();
                order.shuffle(&mut self.rng);
                let (left, rest) = order.split_at((n - 1) / 2);
                let (bridge, right) = rest.split_at(1);
                let what = format!("bridge {} | {} | {}", names(left), names(bridge), names(right));
                self.partition(&cross(left, right), what)
            }
            Fault::IsolateLeader => {
                let leader = self.leader()?;
                let others: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
                self.partition(&cross(&[leader], &others), format!("isolate leader n{}", leader + 1))
            }
            Fault::OneWayToLeader => {
                let leader = self.leader()?;
                let pairs: Vec<(usize, usize)> = all.iter().filter(|&&i| i != leader).map(|&i| (i, leader)).collect();
                self.partition(&pairs, format!("one-way: leader n{} hears nobody", leader + 1))
            }
            Fault::KillRandom => {
                let i = *all.choose(&mut self.rng).ok_or("no nodes")?;
                self.kill(&[i])
            }
            Fault::KillLeader => {
                let leader = self.leader()?;
                self.kill(&[leader])
            }
            Fault::KillLeaderAfterAck => {
                let leader = self.leader()?;
                self.acknowledged_write(leader)?;
                self.kill(&[leader])
            }
            Fault::LeaderInMinority => {
                let leader = self.leader()?;
                let mut others: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
                others.shuffle(&mut self.rng);
                let (with_leader, majority) = others.split_at(((n - 1) / 2).saturating_sub(1));
                let minority: Vec<usize> = std::iter::once(leader).chain(with_leader.iter().copied()).collect();
                let what =
                    format!("leader n{} in the minority: {} | {}", leader + 1, names(&minority), names(majority));
                self.partition(&cross(&minority, majority), what)
            }
            Fault::KillAll => self.kill(&all),
            Fault::PowerCutRandom => {
                let i = *all.choose(&mut self.rng).ok_or("no nodes")?;
                self.power_cut(&[i])
            }
            Fault::PowerCutAll => self.power_cut(&all),
            Fault::PauseLeader => {
                let leader = self.leader()?;
                let pid = self.cluster.members[leader].process.as_ref().ok_or("leader not running")?.pid();
                signal(pid, "STOP");
                self.history.event(format!("pause leader n{}", leader + 1));
                Ok(Undo::Resume(leader))
            }
            Fault::RemoveFollower | Fault::RemoveLeader => {
                let leader = self.leader()?;
                let target = if fault == Fault::RemoveLeader {
                    leader
                } else {
                    let followers: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
                    *followers.choose(&mut self.rng).ok_or("no follower")?
                };
                let via = *all.iter().find(|&&i| i != target).ok_or("no other node")?;
                self.remove(target, via)?;
                Ok(Undo::Rejoin(target, via))
            }
        }
    }

    /// `RPUSH jt:acked <unique>` through node `i`, recorded in the history like a worker's.
    fn acknowledged_write(&mut self, i: usize) -> Result<(), String> {
        let value = format!("acked-{}", self.history.now());
        let mut op = Op {
            process: ACKED_PROCESS,
            node: i,
            f: F::Append,
            key: "jt:acked".into(),
            value: Some(value.clone()),
            inv_ns: self.history.now(),
            cmp_ns: None,
            outcome: Outcome::Info,
            len: None,
            list: None,
            error: None,
        };
        let addr = self.cluster.members[i].resp_addr();
        let reply =
            Conn::connect(addr, Duration::from_secs(2)).and_then(|mut c| c.call(&["RPUSH", "jt:acked", &value]));
        match reply {
            Ok(Reply::Int(n)) => {
                (op.outcome, op.cmp_ns, op.len) = (Outcome::Ok, Some(self.history.now()), usize::try_from(n).ok())
            }
            Err(CallError::NotSent(e)) => {
                (op.outcome, op.cmp_ns, op.error) = (Outcome::Fail, Some(self.history.now()), Some(e))
            }
            other => op.error = Some(format!("{other:?}")),
        }
        let acknowledged = op.outcome == Outcome::Ok;
        self.history.op(op);
        if acknowledged {
            self.history.event(format!("n{} acknowledged {value}", i + 1));
        }
        Ok(())
    }

    /// `hipache-raft cluster remove-node` through node `via`, then stops the removed node.
    fn remove(&mut self, target: usize, via: usize) -> Result<(), String> {
        let id = self.cluster.members[target].id.to_string();
        let mut cli = std::process::Command::new(crate::node::binary())
            .args(["cluster", "--addr", &self.cluster.members[via].grpc(), "remove-node", "--id", &id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cluster remove-node: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = cli.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = cli.kill();
                return Err("cluster remove-node did not finish in 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !status.success() {
            let mut err = String::new();
            use std::io::Read;
            let _ = cli.stderr.take().map(|mut e| e.read_to_string(&mut err));
            return Err(format!("cluster remove-node: {}", err.trim()));
        }
        self.cluster.kill(target);
        self.history.event(format!("remove n{} from the membership (through n{}) and stop it", target + 1, via + 1));
        Ok(())
    }

    fn partition(&mut self, pairs: &[(usize, usize)], what: String) -> Result<Undo, String> {
        self.net.as_mut().ok_or("no network control")?.partition(pairs)?;
        self.history.event(what);
        Ok(Undo::Heal)
    }

    fn power_cut(&mut self, nodes: &[usize]) -> Result<Undo, String> {
        for &i in nodes {
            self.cluster.kill(i);
            self.cluster.members[i].mount.as_ref().ok_or("data dirs are not on a lossy file system")?.power_cut()?;
        }
        self.history.event(format!("power cut {} (kill -9, unsynced writes dropped)", names(nodes)));
        Ok(Undo::Restart(nodes.to_vec()))
    }

    fn kill(&mut self, nodes: &[usize]) -> Result<Undo, String> {
        for &i in nodes {
            self.cluster.kill(i);
        }
        self.history.event(format!("kill -9 {}", names(nodes)));
        Ok(Undo::Restart(nodes.to_vec()))
    }

    fn undo(&mut self, undo: Undo) {
        match undo {
            Undo::Heal => {
                if let Some(net) = self.net.as_mut() {
                    if let Err(e) = net.heal() {
                        self.history.event(format!("heal failed: {e}"));
                    }
                }
                self.history.event("heal network");
            }
            Undo::Restart(nodes) => {
                for &i in &nodes {
                    self.cluster.restart(i);
                }
                self.history.event(format!("restart {}", names(&nodes)));
            }
            Undo::Rejoin(i, via) => {
                self.cluster.rejoin(i, via);
                self.history.event(format!("n{} rejoins with an empty data dir", i + 1));
            }
            Undo::Resume(i) => {
                if let Some(p) = &self.cluster.members[i].process {
                    signal(p.pid(), "CONT");
                }
                self.history.event(format!("resume n{}", i + 1));
            }
        }
    }

    /// The node the reachable nodes name as leader (short timeouts: some may be down).
    pub fn leader(&self) -> Result<usize, String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(i) = leader_of(self.cluster) {
                return Ok(i);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("no leader within 5 s".into())
    }
}

/// The member that running nodes name as leader, if any names one.
pub fn leader_of(cluster: &Cluster) -> Option<usize> {
    cluster.members.iter().filter(|m| m.process.is_some()).find_map(|m| {
        let mut conn = Conn::connect(m.resp_addr(), Duration::from_millis(500)).ok()?;
        let Ok(Reply::Bulk(info)) = conn.call(&["INFO", "raft"]) else { return None };
        let leader: u64 = parse_info(&info).get("raft_leader")?.parse().ok()?;
        cluster.members.iter().position(|m| m.id == leader)
    })
}

/// Every directed pair between a node of `a` and a node of `b`, both ways.
pub fn cross(a: &[usize], b: &[usize]) -> Vec<(usize, usize)> {
    a.iter().flat_map(|&x| b.iter().flat_map(move |&y| [(x, y), (y, x)])).collect()
}

fn names(nodes: &[usize]) -> String {
    nodes.iter().map(|i| format!("n{}", i + 1)).collect::<Vec<_>>().join(" ")
}
