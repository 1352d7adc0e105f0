//! The per-key list-append linearizability checker.
//!
//! Every appended element is unique and keys start absent, so one read shows a prefix of its
//! key's order of appends, and the final list `F` (read linearizably after the faults healed,
//! equal on every replica) fixes that order. Linearizability is local, so checking each key on
//! its own checks the whole keyspace. Per key:
//!
//! 1. Element checks, without timing: duplicates, elements nobody appended (phantoms),
//!    elements of appends that definitely failed (aborted reads), ok reads that are not a
//!    prefix of `F`, ok appends missing from `F` (lost writes), an ok `RPUSH` whose returned
//!    length is not its element's position in `F` plus one.
//! 2. Real time: an append creates version `pos + 1`, a read of `k` elements observes version
//!    `k`. The history is linearizable iff every operation can be given a point within its
//!    interval so that versions are in order and each read sits between the append of its
//!    version and the next one. Placing each operation as early as possible decides this
//!    exactly in one pass over the versions; the operations that forced the placement forward
//!    are the witness of a violation.
//!
//! `Info` appends whose element is in `F` happened at some point after their invocation; those
//! not in `F` never did. Failed and info reads have no effect and are dropped.
//!
//! Reads on `READONLY` connections promise less, and are checked under their own model
//! ([`check_local_reads`]), never mixed into the real-time pass.

use std::collections::{HashMap, HashSet};

use crate::history::{Op, Outcome, F as Kind};

/// One reason a history is not linearizable, with the few operations that prove it.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub class: Class,
    pub key: String,
    pub message: String,
    /// The operations that prove it (usually 2–4), earliest first.
    pub witness: Vec<Op>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Duplicate,
    Phantom,
    AbortedRead,
    IncompatibleOrder,
    LostWrite,
    WrongLength,
    /// Real-time order broken: a stale read, or an append that must have happened after it
    /// was acknowledged.
    RealTime,
    /// A `READONLY` connection read less than it had read before, or missed its own write.
    LocalRegression,
    /// Two lists that transfers move elements between lost or duplicated one
    /// (`crate::transfer`).
    Transfer,
}

/// Checks the operations on `key` against its final list.
pub fn check_key(key: &str, ops: &[Op], last: &[String]) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut violation = |class, message: String, witness: Vec<&Op>| {
        let witness = witness.into_iter().cloned().collect();
        found.push(Violation { class, key: key.to_string(), message, witness })
    };
    let appends: HashMap<&str, &Op> =
        ops.iter().filter(|o| o.f == Kind::Append).filter_map(|o| Some((o.value.as_deref()?, o))).collect();
    let pos: HashMap<&str, usize> = last.iter().enumerate().map(|(i, e)| (e.as_str(), i)).collect();
    // Every ok read, linearizable or local, must show a prefix of the final list.
    let reads: Vec<(&Op, &[String])> = ops
        .iter()
        .filter(|o| o.f != Kind::Append && o.outcome == Outcome::Ok)
        .filter_map(|o| Some((o, o.list.as_deref()?)))
        .collect();

    // 1. Elements.
    let mut seen = HashSet::new();
    for e in last {
        if !seen.insert(e.as_str()) {
            violation(Class::Duplicate, format!("{e:?} appears twice in the final list"), vec![]);
        }
    }
    for (read, list) in &reads {
        let mut in_read = HashSet::new();
        for e in list.iter() {
            if !in_read.insert(e.as_str()) {
                violation(Class::Duplicate, format!("{e:?} appears twice in one read"), vec![read]);
            }
        }
    }
    let every_element =
        last.iter().map(|e| (e, None)).chain(reads.iter().flat_map(|(r, l)| l.iter().map(|e| (e, Some(*r)))));
    let mut reported = HashSet::new();
    for (e, read) in every_element {
        match appends.get(e.as_str()) {
            None if reported.insert(e.as_str()) => {
                violation(Class::Phantom, format!("{e:?} was never appended"), read.into_iter().collect())
            }
            Some(a) if a.outcome == Outcome::Fail && reported.insert(e.as_str()) => {
                let mut witness = vec![*a];
                witness.extend(read);
                violation(Class::AbortedRead, format!("{e:?} is visible though its append failed"), witness)
            }
            _ => {}
        }
    }
    for (read, list) in &reads {
        if !last.starts_with(list) {
            violation(
                Class::IncompatibleOrder,
                format!("a read of {} elements is not a prefix of the final list", list.len()),
                vec![read],
            );
        }
    }
    for a in appends.values().filter(|a| a.outcome == Outcome::Ok) {
        let e = a.value.as_deref().unwrap_or_default();
        match (pos.get(e), a.len) {
            (None, _) => violation(Class::LostWrite, format!("acknowledged {e:?} is not in the final list"), vec![a]),
            (Some(&p), Some(len)) if p + 1 != len => violation(
                Class::WrongLength,
                format!("RPUSH of {e:?} answered length {len}, but it is element {} of the final list", p + 1),
                vec![a],
            ),
            _ => {}
        }
    }
    if !found.is_empty() {
        // The real-time pass assumes the final list is a consistent order.
        return found;
    }
    let linearizable: Vec<(&Op, &[String])> = reads.iter().copied().filter(|(o, _)| o.f == Kind::Read).collect();
    found.extend(real_time(key, &appends, &linearizable, last));
    found.extend(check_local_reads(key, ops));
    found
}

/// What a `READONLY` connection promises: it reads one node's replica, which only moves
/// forward, and a write it made through that node is applied there before it is answered. So
/// per process and node, a read never shows fewer elements than an earlier completed read,
/// and shows every element the process appended through that node before the read began.
/// (That each read is a prefix of the final list is checked with the other reads.)
pub fn check_local_reads(key: &str, ops: &[Op]) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut by_connection: HashMap<(u64, usize), Vec<&Op>> = HashMap::new();
    for op in ops.iter().filter(|o| o.outcome == Outcome::Ok) {
        by_connection.entry((op.process, op.node)).or_default().push(op);
    }
    for history in by_connection.values_mut() {
        history.sort_by_key(|o| o.inv_ns);
        let mut longest: Option<&Op> = None;
        let mut own: Vec<&Op> = Vec::new();
        for op in history.iter().copied() {
            match op.f {
                Kind::Append => own.push(op),
                Kind::LocalRead => {
                    let list = op.list.as_deref().unwrap_or_default();
                    let done_before = |o: &Op| o.cmp_ns.is_some_and(|c| c < op.inv_ns);
                    if let Some(prev) =
                        longest.filter(|p| done_before(p) && p.list.as_ref().is_some_and(|l| l.len() > list.len()))
                    {
                        found.push(Violation {
                            class: Class::LocalRegression,
                            key: key.to_string(),
                            message: format!(
                                "a READONLY read showed {} elements after one on the same node showed more",
                                list.len()
                            ),
                            witness: vec![prev.clone(), op.clone()],
                        });
                    }
                    if let Some(missed) =
                        own.iter().find(|a| done_before(a) && !list.contains(a.value.as_ref().unwrap()))
                    {
                        found.push(Violation {
                            class: Class::LocalRegression,
                            key: key.to_string(),
                            message: "a READONLY read missed the connection's own acknowledged write".into(),
                            witness: vec![(*missed).clone(), op.clone()],
                        });
                    }
                    if longest.is_none_or(|p| p.list.as_ref().is_some_and(|l| l.len() < list.len())) {
                        longest = Some(op);
                    }
                }
                Kind::Read | Kind::Transfer | Kind::ReadBoth => {}
            }
        }
    }
    found
}

/// Step 2, real time: earliest placement over the versions in order. At most one violation:
/// what follows it would be placed on a broken assumption.
fn real_time(
    key: &str,
    appends: &HashMap<&str, &Op>,
    reads: &[(&Op, &[String])],
    last: &[String],
) -> Option<Violation> {
    let violation = |message: String, witness: Vec<&Op>| Violation {
        class: Class::RealTime,
        key: key.to_string(),
        message,
        witness: witness.into_iter().cloned().collect(),
    };
    let mut by_version: Vec<Vec<&Op>> = vec![Vec::new(); last.len() + 1];
    for (read, list) in reads {
        by_version[list.len()].push(read);
    }
    let mut t = 0u64;
    let mut blame: Vec<&Op> = Vec::new();
    for (v, reads) in by_version.iter().enumerate() {
        if v > 0 {
            let Some(a) = appends.get(last[v - 1].as_str()) else { continue };
            let placed = t.max(a.inv_ns);
            if a.cmp_ns.is_some_and(|cmp| placed > cmp) {
                let mut witness = blame_tail(&blame);
                witness.push(a);
                return Some(violation(
                    format!("the append of element {v} was acknowledged before operations it must follow began"),
                    witness,
                ));
            }
            if placed > t || blame.is_empty() {
                blame.push(a);
            }
            t = placed;
        }
        let mut latest = t;
        let mut latest_op = None;
        for r in reads {
            let placed = t.max(r.inv_ns);
            if r.cmp_ns.is_some_and(|cmp| placed > cmp) {
                let mut witness = blame_tail(&blame);
                witness.push(r);
                return Some(violation(
                    format!("stale read: it saw {v} elements and ended before a later state was already observed"),
                    witness,
                ));
            }
            if placed > latest {
                latest = placed;
                latest_op = Some(*r);
            }
        }
        if let Some(r) = latest_op {
            blame.push(r);
        }
        t = latest;
    }
    None
}

/// The last few operations that moved the placement forward: why the next one is too late.
fn blame_tail<'a>(blame: &[&'a Op]) -> Vec<&'a Op> {
    blame[blame.len().saturating_sub(3)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(process: u64, f: Kind, value: Option<&str>, inv: u64, cmp: Option<u64>, outcome: Outcome) -> Op {
        Op {
            process,
            node: 0,
            f,
            key: "k".into(),
            value: value.map(str::to_string),
            inv_ns: inv,
            cmp_ns: cmp,
            outcome,
            len: None,
            list: None,
            error: None,
        }
    }

    fn append(process: u64, value: &str, inv: u64, cmp: u64, len: usize) -> Op {
        Op { len: Some(len), ..op(process, Kind::Append, Some(value), inv, Some(cmp), Outcome::Ok) }
    }

    fn read(process: u64, list: &[&str], inv: u64, cmp: u64) -> Op {
        Op {
            list: Some(list.iter().map(|s| s.to_string()).collect()),
            ..op(process, Kind::Read, None, inv, Some(cmp), Outcome::Ok)
        }
    }

    fn last(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn classes(ops: &[Op], final_list: &[&str]) -> Vec<Class> {
        check_key("k", ops, &last(final_list)).into_iter().map(|v| v.class).collect()
    }

    #[test]
    fn a_valid_concurrent_history_passes() {
        let ops = [
            append(1, "a", 0, 10, 1),
            append(2, "b", 5, 30, 2),
            read(3, &["a"], 12, 14),
            // Concurrent with b's append: may see it or not.
            read(4, &["a", "b"], 20, 25),
            read(5, &["a"], 21, 22),
            op(6, Kind::Append, Some("c"), 40, None, Outcome::Info),
            read(7, &["a", "b", "c"], 50, 60),
            op(8, Kind::Append, Some("d"), 41, Some(45), Outcome::Fail),
        ];
        assert_eq!(classes(&ops, &["a", "b", "c"]), []);
    }

    #[test]
    fn a_stale_read_is_caught_with_its_witness() {
        let ops = [append(1, "a", 0, 10, 1), read(2, &["a"], 11, 12), read(3, &[], 20, 21)];
        let found = check_key("k", &ops, &last(&["a"]));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].class, Class::RealTime);
        let witness: Vec<u64> = found[0].witness.iter().map(|o| o.process).collect();
        assert!(witness.contains(&3), "the stale read is named: {witness:?}");
    }

    #[test]
    fn an_append_acknowledged_before_a_read_that_missed_it_began() {
        // b was acknowledged at 10; a read starting at 20 must see it.
        let ops = [append(1, "a", 0, 5, 1), append(2, "b", 6, 10, 2), read(3, &["a"], 20, 21)];
        assert_eq!(classes(&ops, &["a", "b"]), [Class::RealTime]);
    }

    #[test]
    fn lost_writes_duplicates_phantoms_and_aborted_reads() {
        assert_eq!(classes(&[append(1, "a", 0, 1, 1), append(2, "b", 2, 3, 2)], &["a"]), [Class::LostWrite]);
        assert_eq!(classes(&[append(1, "a", 0, 1, 1)], &["a", "a"]), [Class::Duplicate, Class::WrongLength]);
        assert_eq!(
            classes(&[append(1, "a", 0, 1, 1), read(2, &["a", "a"], 2, 3)], &["a"]),
            [Class::Duplicate, Class::IncompatibleOrder]
        );
        assert_eq!(classes(&[append(1, "a", 0, 1, 1)], &["a", "zz"]), [Class::Phantom]);
        let failed = op(2, Kind::Append, Some("b"), 2, Some(3), Outcome::Fail);
        assert_eq!(classes(&[append(1, "a", 0, 1, 1), failed], &["a", "b"]), [Class::AbortedRead]);
    }

    #[test]
    fn divergent_reads_and_wrong_lengths() {
        let ops = [append(1, "a", 0, 1, 1), append(2, "b", 0, 1, 2), read(3, &["b"], 2, 3)];
        assert_eq!(classes(&ops, &["a", "b"]), [Class::IncompatibleOrder]);
        let ops = [append(1, "a", 0, 1, 1), append(2, "b", 0, 1, 1)];
        assert_eq!(classes(&ops, &["a", "b"]), [Class::WrongLength]);
    }

    fn local(process: u64, list: &[&str], inv: u64, cmp: u64) -> Op {
        Op { f: Kind::LocalRead, ..read(process, list, inv, cmp) }
    }

    #[test]
    fn local_reads_may_lag_but_never_go_back_or_miss_their_own_writes() {
        let a = append(1, "a", 0, 10, 1);
        let b = append(2, "b", 11, 20, 2);
        // A replica behind the cluster is fine for READONLY, even after b was acknowledged.
        assert_eq!(classes(&[a.clone(), b.clone(), local(3, &["a"], 30, 31)], &["a", "b"]), []);
        let back = [a.clone(), b.clone(), local(3, &["a", "b"], 30, 31), local(3, &["a"], 40, 41)];
        assert_eq!(classes(&back, &["a", "b"]), [Class::LocalRegression]);
        let own = [a.clone(), append(3, "b", 11, 20, 2), local(3, &["a"], 30, 31)];
        assert_eq!(classes(&own, &["a", "b"]), [Class::LocalRegression]);
        // Not a prefix of the final order: caught like any read.
        assert_eq!(classes(&[a, b, local(3, &["b"], 30, 31)], &["a", "b"]), [Class::IncompatibleOrder]);
    }

    #[test]
    fn info_appends_happen_any_time_after_invocation_or_never() {
        let late = op(1, Kind::Append, Some("a"), 0, None, Outcome::Info);
        let never = op(2, Kind::Append, Some("x"), 0, None, Outcome::Info);
        let ops = [late, never, read(3, &[], 5, 6), read(4, &["a"], 100, 101)];
        assert_eq!(classes(&ops, &["a"]), []);
    }
}
