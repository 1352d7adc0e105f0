//! TTL commands. Deadlines are absolute leader milliseconds (`Entry::expire_at_ms`), computed
//! from the entry's clock stamp, so every replica stores the same deadline.

use bytes::Bytes;

use super::access::{View, Writer};
use super::args::{eq_ic, int_arg};
use super::commands::Outcome;
use super::reply::Reply;
use super::store::Entry;

/// EXPIRE's NX/XX/GT/LT options.
#[derive(Default)]
struct Conditions {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

fn parse_conditions(opts: &[Bytes]) -> Result<Conditions, Reply> {
    let mut c = Conditions::default();
    for opt in opts {
        let flag = match opt {
            o if eq_ic(o, "nx") => &mut c.nx,
            o if eq_ic(o, "xx") => &mut c.xx,
            o if eq_ic(o, "gt") => &mut c.gt,
            o if eq_ic(o, "lt") => &mut c.lt,
            o => return Err(Reply::err(format!("ERR Unsupported option {}", String::from_utf8_lossy(o)))),
        };
        *flag = true;
    }
    if c.nx && (c.xx || c.gt || c.lt) {
        return Err(Reply::err("ERR NX and XX, GT or LT options at the same time are not compatible"));
    }
    if c.gt && c.lt {
        return Err(Reply::err("ERR GT and LT options at the same time are not compatible"));
    }
    Ok(c)
}

impl Conditions {
    /// Whether the new deadline may replace `current` (`None` = no TTL, an infinite one).
    fn allow(&self, current: Option<u64>, when: i64) -> bool {
        let current = current.map(|c| i64::try_from(c).unwrap_or(i64::MAX));
        !(self.nx && current.is_some()
            || self.xx && current.is_none()
            || self.gt && current.is_none_or(|c| when <= c)
            || self.lt && current.is_some_and(|c| when >= c))
    }
}

/// Redis' `expireGenericCommand`: options first, then the time (any integer; past or
/// negative deletes the key), overflow checks, then the key. `base` is 0 for the AT forms.
fn expire_generic(w: &mut Writer<'_>, argv: &[Bytes], unit_ms: i64, relative: bool, command: &str) -> Outcome {
    let conditions = parse_conditions(&argv[3..])?;
    let invalid = || Reply::err(format!("ERR invalid expire time in '{command}' command"));
    let base = if relative { i64::try_from(w.now).unwrap_or(i64::MAX) } else { 0 };
    let when = int_arg(&argv[2])?.checked_mul(unit_ms).and_then(|ms| ms.checked_add(base)).ok_or_else(invalid)?;
    let key = &argv[1];
    let Some(current) = w.view(key).entry(key).map(Entry::expire_at_ms) else {
        return Ok(Reply::Int(0));
    };
    if !conditions.allow(current, when) {
        return Ok(Reply::Int(0));
    }
    // A deadline at or before now (negative included) deletes the key.
    let deadline = u64::try_from(when).unwrap_or(0);
    w.set_deadline(key, Some(deadline));
    Ok(Reply::Int(1))
}

pub(crate) fn expire(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    expire_generic(w, argv, 1000, true, "expire")
}

pub(crate) fn pexpire(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    expire_generic(w, argv, 1, true, "pexpire")
}

pub(crate) fn expireat(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    expire_generic(w, argv, 1000, false, "expireat")
}

pub(crate) fn pexpireat(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    expire_generic(w, argv, 1, false, "pexpireat")
}

/// -2 for a missing key, -1 for one without TTL, else the milliseconds left.
fn ttl_ms(v: &View<'_>, key: &[u8]) -> i64 {
    match v.entry(key) {
        None => -2,
        Some(e) => e.expire_at_ms().map_or(-1, |at| i64::try_from(at.saturating_sub(v.now)).unwrap_or(i64::MAX)),
    }
}

/// Seconds rounded to nearest, as Redis: `(ms + 500) / 1000`.
pub(crate) fn ttl(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    let ms = ttl_ms(v, &argv[1]);
    Ok(Reply::Int(if ms < 0 { ms } else { (ms + 500) / 1000 }))
}

pub(crate) fn pttl(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    Ok(Reply::Int(ttl_ms(v, &argv[1])))
}

pub(crate) fn persist(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    let key = &argv[1];
    let has_ttl = w.view(key).entry(key).is_some_and(|e| e.expire_at_ms().is_some());
    Ok(Reply::int_bool(has_ttl && w.set_deadline(key, None)))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{err, Node, T0};
    use super::Reply;

    #[test]
    fn ttl_semantics_and_rounding() {
        let mut n = Node::new();
        assert_eq!(n.query("ttl k"), Reply::Int(-2));
        assert_eq!(n.query("pttl k"), Reply::Int(-2));
        n.run("set k v");
        assert_eq!(n.query("ttl k"), Reply::Int(-1));
        assert_eq!(n.query("pttl k"), Reply::Int(-1));
        n.run("pexpire k 1499");
        assert_eq!(n.query("ttl k"), Reply::Int(1), "(1499 + 500) / 1000");
        n.run("pexpire k 1500");
        assert_eq!(n.query("ttl k"), Reply::Int(2));
        n.run("pexpire k 499");
        assert_eq!(n.query("ttl k"), Reply::Int(0));
        n.now += 498;
        assert_eq!(n.query("pttl k"), Reply::Int(1));
        n.now += 1;
        assert_eq!(n.query("ttl k"), Reply::Int(-2), "gone at the deadline");
    }

    #[test]
    fn expire_forms() {
        let mut n = Node::new();
        n.run("set k v");
        assert_eq!(n.run("expire k 10"), Reply::Int(1));
        assert_eq!(n.query("pttl k"), Reply::Int(10_000));
        assert_eq!(n.run("pexpire k 2500"), Reply::Int(1));
        assert_eq!(n.query("pttl k"), Reply::Int(2500));
        assert_eq!(n.run(&format!("expireat k {}", T0 / 1000 + 7)), Reply::Int(1));
        assert_eq!(n.query("pttl k"), Reply::Int(7000));
        assert_eq!(n.run(&format!("pexpireat k {}", T0 + 42)), Reply::Int(1));
        assert_eq!(n.query("pttl k"), Reply::Int(42));
        assert_eq!(n.run("expire none 10"), Reply::Int(0));
        assert_eq!(n.run("persist k"), Reply::Int(1));
        assert_eq!(n.run("persist k"), Reply::Int(0));
        assert_eq!(n.run("persist none"), Reply::Int(0));
        assert_eq!(n.query("ttl k"), Reply::Int(-1));
    }

    #[test]
    fn past_or_negative_times_delete() {
        for cmd in ["expire k -1", "expire k 0", "pexpire k -100", "expireat k 1", "pexpireat k 0"] {
            let mut n = Node::new();
            n.run("set k v");
            n.ks.take_changes();
            assert_eq!(n.run(cmd), Reply::Int(1), "{cmd}");
            assert_eq!(n.query("exists k"), Reply::Int(0), "{cmd}");
            assert!(n.ks.get(0, b"k").is_none(), "{cmd}: deleted, not just hidden");
            assert_eq!(n.ks.take_changes().len(), 1);
        }
    }

    #[test]
    fn conditions() {
        let mut n = Node::new();
        n.run("set k v");
        assert_eq!(n.run("expire k 100 xx"), Reply::Int(0), "XX needs a TTL");
        assert_eq!(n.run("expire k 100 gt"), Reply::Int(0), "no TTL is infinite: never GT");
        assert_eq!(n.run("expire k 100 nx"), Reply::Int(1));
        assert_eq!(n.run("expire k 200 nx"), Reply::Int(0));
        assert_eq!(n.run("expire k 50 gt"), Reply::Int(0));
        assert_eq!(n.run("expire k 200 GT"), Reply::Int(1));
        assert_eq!(n.run("expire k 300 lt"), Reply::Int(0));
        assert_eq!(n.run("expire k 150 lt xx"), Reply::Int(1));
        assert_eq!(n.query("ttl k"), Reply::Int(150));
        n.run("set j v");
        assert_eq!(n.run("expire j 10 lt"), Reply::Int(1), "no TTL is infinite: any LT wins");
    }

    #[test]
    fn errors() {
        let mut n = Node::new();
        n.run("set k v");
        assert_eq!(
            n.run("expire k 10 nx xx"),
            err("ERR NX and XX, GT or LT options at the same time are not compatible")
        );
        assert_eq!(
            n.run("expire k 10 nx gt"),
            err("ERR NX and XX, GT or LT options at the same time are not compatible")
        );
        assert_eq!(n.run("expire k 10 gt lt"), err("ERR GT and LT options at the same time are not compatible"));
        assert_eq!(n.run("expire k 10 foo"), err("ERR Unsupported option foo"));
        assert_eq!(n.run("expire k abc"), Reply::not_integer());
        assert_eq!(n.run("expire k abc foo"), err("ERR Unsupported option foo"), "options are checked first");
        assert_eq!(n.run("expire k 9223372036854776"), err("ERR invalid expire time in 'expire' command"));
        assert_eq!(n.run("pexpire k 9223372036854775807"), err("ERR invalid expire time in 'pexpire' command"));
        assert_eq!(n.run("expireat k -9223372036854776"), err("ERR invalid expire time in 'expireat' command"));
        assert_eq!(n.run("pexpireat k 9223372036854775807"), Reply::Int(1), "absolute: no base to overflow");
        assert_eq!(n.run("expire k"), Reply::wrong_arity("expire"));
    }
}
