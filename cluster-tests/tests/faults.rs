//! Jepsen-style fault tests: 3 nodes, concurrent RPUSH/LRANGE workers, a seeded nemesis, then
//! heal, recovery and the list-append linearizability checker (`cluster_tests::run`). Each test
//! prints its seed (`CLUSTER_TEST_SEED` replays its choices), operations checked, the nemesis
//! events, and where its artifacts are. Partition tests run inside a private network namespace
//! (`unshare -rn` with nftables) and say SKIPPED where the machine cannot make one.

use std::time::Duration;

use cluster_tests::checker::Class;
use cluster_tests::nemesis::Fault;
use cluster_tests::run::{run_sandboxed, run_test, Spec};
use hipache_raft::inject::Bug;

fn spec(name: &'static str, seconds: u64, faults: &'static [Fault]) -> Spec {
    Spec {
        name,
        nodes: 3,
        duration: Duration::from_secs(seconds),
        faults,
        inject: None,
        snapshot_threshold: 100,
        seed: None,
    }
}

#[test]
fn smoke() {
    if let Some(report) = run_test("smoke", spec("smoke", 5, &[])) {
        assert!(report.ops > 100, "a healthy cluster served only {} operations", report.ops);
    }
}

#[test]
fn partitions() {
    run_test("partitions", spec("partitions", 20, Fault::PARTITIONS));
}

#[test]
fn crashes() {
    run_test("crashes", spec("crashes", 20, Fault::CRASHES));
}

#[test]
fn pauses() {
    run_test("pauses", spec("pauses", 12, Fault::PAUSES));
}

#[test]
fn membership() {
    run_test("membership", spec("membership", 20, Fault::MEMBERSHIP));
}

/// Power cuts (LazyFS; SKIPPED without `LAZYFS`): acknowledged writes and votes must survive
/// losing everything a node had not synced.
#[test]
fn power_cuts() {
    run_test("power_cuts", spec("power-cuts", 20, Fault::POWER));
}

const ALL: &[Fault] = &[
    Fault::PartitionHalves,
    Fault::IsolateLeader,
    Fault::OneWayToLeader,
    Fault::KillRandom,
    Fault::KillLeader,
    Fault::KillAll,
    Fault::PauseLeader,
    Fault::RemoveFollower,
    Fault::RemoveLeader,
    Fault::PartitionRing,
    Fault::PartitionBridge,
    Fault::PowerCutRandom,
    Fault::PowerCutAll,
];

/// Every fault (those this machine cannot apply are skipped and say so: power cuts without
/// LazyFS, ring and bridge on 3 nodes).
#[test]
fn mixed() {
    run_test("mixed", spec("mixed", 25, ALL));
}

/// The soak, by hand: `CLUSTER_TEST_SOAK_MINUTES=30 cargo nextest run -p cluster-tests --test
/// faults soak --run-ignored all --no-capture` (add `LAZYFS=…` for power cuts). 5 nodes, every
/// fault, 2-minute runs on new seeds until the time is up; stops at the first failing run.
#[test]
#[ignore = "minutes long: run by hand"]
fn soak() {
    let minutes: u64 = std::env::var("CLUSTER_TEST_SOAK_MINUTES").ok().and_then(|m| m.parse().ok()).unwrap_or(30);
    if cluster_tests::net::sandbox::unavailable().is_some() || !cluster_tests::net::sandbox::enter("soak") {
        return;
    }
    let until = std::time::Instant::now() + Duration::from_secs(minutes * 60);
    let mut runs = 0;
    while std::time::Instant::now() < until {
        let net: Box<dyn cluster_tests::net::Net> = Box::new(cluster_tests::net::Nft::default());
        let spec = Spec { nodes: 5, seed: Some(rand::random()), ..spec("soak", 120, ALL) };
        let report = cluster_tests::run::run(spec, Some(net));
        runs += 1;
        assert!(report.passed(), "soak run {runs} failed; artifacts: {}", report.artifacts.display());
    }
    eprintln!("soak: {runs} runs of 2 minutes passed");
}

/// The suite catches a node that serves default (linearizable) reads from its own replica:
/// the checker reports stale reads, with their witness, under leader isolation.
#[test]
fn injected_local_reads_are_caught() {
    let spec = Spec { inject: Some(Bug::LocalReads), ..spec("inject-local-reads", 12, Fault::PARTITIONS) };
    if let Some(report) = run_sandboxed("injected_local_reads_are_caught", spec) {
        let log = std::fs::read_to_string(report.artifacts.join("n1.log")).unwrap_or_default();
        assert!(
            log.contains("running with an injected bug"),
            "the node binary has no injectable bugs: build it with the test harness's features (cargo build --workspace)"
        );
        let classes: Vec<Class> = report.violations.iter().map(|v| v.class).collect();
        assert!(classes.contains(&Class::RealTime), "stale reads not caught: {classes:?}");
    }
}
