//! Jepsen-style fault tests: 3 nodes, concurrent RPUSH/LRANGE workers, a seeded nemesis, then
//! heal, recovery and the list-append linearizability checker (`cluster_tests::run`). Each test
//! prints its seed (`CLUSTER_TEST_SEED` replays its choices), operations checked, the nemesis
//! events, and where its artifacts are. Partition tests run inside a private network namespace
//! (`unshare -rn` with nftables) and say SKIPPED where the machine cannot make one.

use std::time::Duration;

use cluster_tests::nemesis::Fault;
use cluster_tests::run::{run_test, Spec};

fn spec(name: &'static str, seconds: u64, faults: &'static [Fault]) -> Spec {
    Spec { name, nodes: 3, duration: Duration::from_secs(seconds), faults }
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
fn mixed() {
    const ALL: &[Fault] = &[
        Fault::PartitionHalves,
        Fault::IsolateLeader,
        Fault::OneWayToLeader,
        Fault::KillRandom,
        Fault::KillLeader,
        Fault::KillAll,
        Fault::PauseLeader,
    ];
    run_test("mixed", spec("mixed", 25, ALL));
}
