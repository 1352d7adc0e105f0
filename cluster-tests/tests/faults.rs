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
    Spec { name, nodes: 3, duration: Duration::from_secs(seconds), faults, inject: None, snapshot_threshold: 100 }
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

#[test]
fn mixed() {
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
    ];
    run_test("mixed", spec("mixed", 25, ALL));
}

/// The suite catches a node that serves default (linearizable) reads from its own replica:
/// the checker reports stale reads, with their witness, under leader isolation.
#[test]
fn injected_local_reads_are_caught() {
    let spec = Spec { inject: Some(Bug::LocalReads), ..spec("inject-local-reads", 12, Fault::PARTITIONS) };
    if let Some(report) = run_sandboxed("injected_local_reads_are_caught", spec) {
        let classes: Vec<Class> = report.violations.iter().map(|v| v.class).collect();
        assert!(classes.contains(&Class::RealTime), "stale reads not caught: {classes:?}");
    }
}
