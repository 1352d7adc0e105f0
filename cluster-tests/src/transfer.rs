//! Transfers between two lists: `WATCH` both, read them, then `MULTI`, `LREM` an element from
//! one, `RPUSH` it to the other, `EXEC`. Under any fault the two lists together must hold
//! every element exactly once: a transaction applied in part, a `WATCH` that failed to abort a
//! transaction whose reads went stale, or a transaction applied twice (a retried forward)
//! would lose or duplicate one. Reads of both lists in one `MULTI … EXEC` check that at any
//! time, and the final lists (read after healing, equal on every replica) at the end.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hipache_raft::keyspace::Reply;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::checker::{Class, Violation};
use crate::client::{CallError, Conn};
use crate::history::{History, Op, Outcome, F};
use crate::run;

pub const KEYS: [&str; 2] = ["tx:a", "tx:b"];
/// The name transfers are recorded under in the history.
pub const NAME: &str = "tx";
const ELEMENTS: usize = 8;
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The elements both lists hold together, all in the first list at the start.
pub fn elements() -> Vec<String> {
    (0..ELEMENTS).map(|i| format!("t{i}")).collect()
}

/// Puts every element in the first list (through `addr`, before any fault).
pub fn seed(addr: SocketAddr) {
    let mut conn = Conn::connect(addr, CALL_TIMEOUT).expect("connect to seed the transfer lists");
    let mut rpush = vec!["RPUSH".to_string(), KEYS[0].to_string()];
    rpush.extend(elements());
    let reply = conn.call(&rpush);
    assert_eq!(reply.ok(), Some(Reply::Int(ELEMENTS as i64)), "seeding {}", KEYS[0]);
}

/// One client moving elements and reading both lists through random nodes until `stop`.
pub fn run_until(addrs: &[SocketAddr], history: &History, stop: &AtomicBool, seed: u64, process: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut process = process;
    while !stop.load(Ordering::SeqCst) {
        let node = rng.random_range(0..addrs.len());
        let transfer = rng.random_bool(0.6);
        let inv_ns = history.now();
        let mut op = Op {
            process,
            node,
            f: if transfer { F::Transfer } else { F::ReadBoth },
            key: NAME.to_string(),
            value: None,
            inv_ns,
            cmp_ns: None,
            outcome: Outcome::Info,
            len: None,
            list: None,
            error: None,
        };
        let result = Conn::connect(addrs[node], CALL_TIMEOUT).and_then(|mut conn| {
            if transfer {
                move_one(&mut conn, &mut rng, &mut op)
            } else {
                read_both(&mut conn, &mut op)
            }
        });
        op.cmp_ns = Some(history.now());
        match result {
            Ok(outcome) => op.outcome = outcome,
            Err(CallError::NotSent(e)) => (op.outcome, op.error) = (Outcome::Fail, Some(e)),
            // A read changes nothing; a transfer may have been applied.
            Err(CallError::Unknown(e)) if !transfer => (op.outcome, op.error) = (Outcome::Fail, Some(e)),
            Err(CallError::Unknown(e)) => (op.outcome, op.cmp_ns, op.error) = (Outcome::Info, None, Some(e)),
        }
        if op.outcome == Outcome::Info {
            process += 1;
        }
        history.op(op);
        std::thread::sleep(Duration::from_millis(rng.random_range(5..20)));
    }
}

/// `WATCH`, read, `MULTI`/`LREM`/`RPUSH`/`EXEC`. `Ok` when applied, `Fail` when `WATCH`
/// aborted it or there was nothing to move.
fn move_one(conn: &mut Conn, rng: &mut StdRng, op: &mut Op) -> Result<Outcome, CallError> {
    let unexpected = |what: &str, r: Reply| CallError::Unknown(format!("{what}: {r:?}"));
    conn.call(&["WATCH", KEYS[0], KEYS[1]])?;
    let mut lists = Vec::new();
    for key in KEYS {
        match conn.call(&["LRANGE", key, "0", "-1"])? {
            Reply::Array(items) => lists.push(run::elements(&items)),
            // Nothing was queued: the transaction surely did not run.
            other => return Err(CallError::NotSent(format!("LRANGE {key}: {other:?}"))),
        }
    }
    let from = usize::from(lists[0].is_empty() || (!lists[1].is_empty() && rng.random_bool(0.5)));
    let Some(element) = lists[from].get(rng.random_range(0..lists[from].len().max(1))).cloned() else {
        let _ = conn.call(&["UNWATCH"]);
        return Ok(Outcome::Fail);
    };
    op.value = Some(format!("{element}: {} -> {}", KEYS[from], KEYS[1 - from]));
    conn.call(&["MULTI"])?;
    conn.call(&["LREM", KEYS[from], "1", &element])?;
    conn.call(&["RPUSH", KEYS[1 - from], &element])?;
    match conn.call(&["EXEC"])? {
        Reply::Array(replies) => {
            op.len = match replies.first() {
                Some(Reply::Int(n)) => usize::try_from(*n).ok(),
                _ => None,
            };
            Ok(Outcome::Ok)
        }
        Reply::Nil | Reply::NilArray => {
            op.error = Some("aborted: a watched list changed".into());
            Ok(Outcome::Fail)
        }
        Reply::Error(e) => {
            op.error = Some(e);
            Ok(Outcome::Info)
        }
        other => Err(unexpected("EXEC", other)),
    }
}

/// Both lists in one transaction; the history records `a:<element>` and `b:<element>`.
fn read_both(conn: &mut Conn, op: &mut Op) -> Result<Outcome, CallError> {
    conn.call(&["MULTI"])?;
    for key in KEYS {
        conn.call(&["LRANGE", key, "0", "-1"])?;
    }
    match conn.call(&["EXEC"])? {
        Reply::Array(lists) => {
            let mut both = Vec::new();
            for (tag, list) in ["a", "b"].iter().zip(&lists) {
                match list {
                    Reply::Array(items) => both.extend(run::elements(items).into_iter().map(|e| format!("{tag}:{e}"))),
                    other => return Err(CallError::Unknown(format!("LRANGE in EXEC: {other:?}"))),
                }
            }
            op.list = Some(both);
            Ok(Outcome::Ok)
        }
        other => {
            op.error = Some(format!("{other:?}"));
            Ok(Outcome::Fail)
        }
    }
}

/// Every ok read of both lists, and the final lists, hold each element exactly once; every
/// applied transfer removed the element it moved (`LREM` answered 1: its `WATCH` held).
pub fn check(ops: &[Op], final_lists: &[Vec<String>; 2]) -> Vec<Violation> {
    let expected = elements();
    let mut found = Vec::new();
    let mut violation = |message: String, witness: Vec<Op>| {
        found.push(Violation { class: Class::Transfer, key: NAME.to_string(), message, witness });
    };
    let holds = |all: Vec<&str>| -> Option<String> {
        let mut sorted = all.clone();
        sorted.sort_unstable();
        let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
        want.sort_unstable();
        (sorted != want).then(|| format!("{all:?} instead of each of {want:?} once"))
    };
    for op in ops.iter().filter(|o| o.outcome == Outcome::Ok) {
        match op.f {
            F::ReadBoth => {
                let list = op.list.as_deref().unwrap_or_default();
                let all = list.iter().map(|e| e.split_once(':').map_or(e.as_str(), |(_, v)| v)).collect();
                if let Some(wrong) = holds(all) {
                    violation(format!("a read of both lists saw {wrong}"), vec![op.clone()]);
                }
            }
            F::Transfer if op.len != Some(1) => violation(
                format!("an applied transfer removed {:?} elements: its WATCH did not abort it", op.len),
                vec![op.clone()],
            ),
            _ => {}
        }
    }
    let all = final_lists.iter().flatten().map(String::as_str).collect();
    if let Some(wrong) = holds(all) {
        violation(format!("the final lists hold {wrong}"), vec![]);
    }
    let count = |f: F, outcome: Outcome| ops.iter().filter(|o| o.f == f && o.outcome == outcome).count();
    let aborted = ops.iter().filter(|o| o.error.as_deref().is_some_and(|e| e.starts_with("aborted"))).count();
    eprintln!(
        "transfers: {} applied, {aborted} aborted by WATCH, {} unknown, {} reads of both lists, {} violations",
        count(F::Transfer, Outcome::Ok),
        count(F::Transfer, Outcome::Info),
        count(F::ReadBoth, Outcome::Ok),
        found.len()
    );
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(f: F, list: Option<Vec<&str>>, len: Option<usize>) -> Op {
        Op {
            process: 0,
            node: 0,
            f,
            key: NAME.into(),
            value: None,
            inv_ns: 0,
            cmp_ns: Some(1),
            outcome: Outcome::Ok,
            len,
            list: list.map(|l| l.into_iter().map(String::from).collect()),
            error: None,
        }
    }

    fn finals(a: &[usize], b: &[usize]) -> [Vec<String>; 2] {
        [a.iter().map(|i| format!("t{i}")).collect(), b.iter().map(|i| format!("t{i}")).collect()]
    }

    #[test]
    fn moved_elements_pass_lost_duplicated_and_unguarded_ones_fail() {
        let good = vec![
            op(F::Transfer, None, Some(1)),
            op(F::ReadBoth, Some(vec!["a:t0", "a:t1", "a:t2", "a:t3", "a:t4", "a:t5", "a:t6", "b:t7"]), None),
        ];
        assert_eq!(check(&good, &finals(&[0, 1, 2, 3, 4, 5, 6], &[7])), vec![]);

        let lost = op(F::ReadBoth, Some(vec!["a:t0", "a:t1", "a:t2", "a:t3", "a:t4", "a:t5", "a:t6"]), None);
        let twice =
            op(F::ReadBoth, Some(vec!["a:t0", "a:t1", "a:t2", "a:t3", "a:t4", "a:t5", "a:t6", "a:t7", "b:t7"]), None);
        let unguarded = op(F::Transfer, None, Some(0));
        for bad in [lost, twice, unguarded] {
            assert_eq!(check(std::slice::from_ref(&bad), &finals(&[0, 1, 2, 3, 4, 5, 6, 7], &[])).len(), 1, "{bad:?}");
        }
        assert_eq!(check(&[], &finals(&[0, 1, 2, 3, 4, 5, 6, 7], &[7])).len(), 1, "a duplicate in the final lists");
    }
}
