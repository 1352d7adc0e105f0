//! String commands. Values are kept as the bytes clients sent; counters are parsed on use,
//! as Redis does, so `INCR` on `"007"` fails the same way.

use bytes::Bytes;

use super::access::{View, Writer};
use super::args::{eq_ic, int_arg, parse_i64};
use super::commands::Outcome;
use super::reply::Reply;
use super::store::Entry;
use super::value::Value;

/// Redis' `proto-max-bulk-len` default: APPEND may not grow a string past it.
const MAX_STRING: usize = 512 * 1024 * 1024;

pub(crate) fn get(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    Ok(Reply::bulk_or_nil(v.get::<Bytes>(&argv[1])?))
}

pub(crate) fn strlen(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    Ok(Reply::Int(v.get::<Bytes>(&argv[1])?.map_or(0, |s| s.len() as i64)))
}

/// Keys holding something other than a string read as nil, not as an error.
pub(crate) fn mget(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    let replies = argv[1..].iter().map(|key| v.get::<Bytes>(key).ok().flatten());
    Ok(Reply::Array(replies.map(Reply::bulk_or_nil).collect()))
}

pub(crate) fn mset(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    if argv.len().is_multiple_of(2) {
        return Err(Reply::wrong_arity("mset"));
    }
    for pair in argv[1..].chunks_exact(2) {
        w.put(&pair[0], Value::Str(Box::new(pair[1].clone())), None);
    }
    Ok(Reply::ok())
}

#[derive(Clone, Copy, PartialEq)]
enum Condition {
    Always,
    IfMissing,
    IfExists,
}

/// How an expiry argument reads: its unit, and whether it is relative to now.
#[derive(Clone, Copy, PartialEq)]
enum ExpireForm {
    Ex,
    Px,
    ExAt,
    PxAt,
}

/// Everything `SET` can be asked to do; SETNX, SETEX and PSETEX are fixed forms of it.
struct SetRequest<'a> {
    condition: Condition,
    expire: Option<(ExpireForm, &'a Bytes)>,
    keep_ttl: bool,
    get: bool,
}

impl SetRequest<'_> {
    const PLAIN: SetRequest<'static> =
        SetRequest { condition: Condition::Always, expire: None, keep_ttl: false, get: false };
}

/// SET's options as Redis 7.0 parses them: NX and XX exclude each other, the four expiry forms
/// and KEEPTTL exclude each other, but repeating one (`EX 1 EX 2`) is accepted, last wins.
fn parse_set_options(opts: &[Bytes]) -> Result<SetRequest<'_>, Reply> {
    let mut req = SetRequest::PLAIN;
    let mut i = 0;
    while i < opts.len() {
        let opt = &opts[i];
        let next = opts.get(i + 1);
        let form =
            [("ex", ExpireForm::Ex), ("px", ExpireForm::Px), ("exat", ExpireForm::ExAt), ("pxat", ExpireForm::PxAt)]
                .into_iter()
                .find(|(name, _)| eq_ic(opt, name))
                .map(|(_, form)| form);
        match (form, next) {
            (Some(form), Some(arg)) if !req.keep_ttl && req.expire.is_none_or(|(f, _)| f == form) => {
                req.expire = Some((form, arg));
                i += 1;
            }
            (Some(_), _) => return Err(Reply::syntax_error()),
            (None, _) if eq_ic(opt, "nx") && req.condition != Condition::IfExists => {
                req.condition = Condition::IfMissing
            }
            (None, _) if eq_ic(opt, "xx") && req.condition != Condition::IfMissing => {
                req.condition = Condition::IfExists
            }
            (None, _) if eq_ic(opt, "get") => req.get = true,
            (None, _) if eq_ic(opt, "keepttl") && req.expire.is_none() => req.keep_ttl = true,
            (None, _) => return Err(Reply::syntax_error()),
        }
        i += 1;
    }
    Ok(req)
}

/// Redis' `getExpireMillisecondsOrReply`: a positive integer, no overflow once converted to an
/// absolute millisecond deadline.
fn deadline(form: ExpireForm, arg: &[u8], now: u64, command: &str) -> Result<u64, Reply> {
    let n = int_arg(arg)?;
    let invalid = || Reply::err(format!("ERR invalid expire time in '{command}' command"));
    if n <= 0 {
        return Err(invalid());
    }
    let ms = match form {
        ExpireForm::Ex | ExpireForm::ExAt => n.checked_mul(1000).ok_or_else(invalid)?,
        ExpireForm::Px | ExpireForm::PxAt => n,
    };
    let at = match form {
        ExpireForm::Ex | ExpireForm::Px => {
            ms.checked_add(i64::try_from(now).unwrap_or(i64::MAX)).ok_or_else(invalid)?
        }
        ExpireForm::ExAt | ExpireForm::PxAt => ms,
    };
    u64::try_from(at).map_err(|_| invalid())
}

/// Redis' `setGenericCommand`. `done`/`skipped` are the replies when the value was stored or
/// the NX/XX condition stopped it (with GET, the old value is the reply either way).
fn set_generic(
    w: &mut Writer<'_>,
    command: &str,
    key: &Bytes,
    value: &Bytes,
    req: SetRequest<'_>,
    done: Reply,
    skipped: Reply,
) -> Outcome {
    let deadline = req.expire.map(|(form, arg)| deadline(form, arg, w.now, command)).transpose()?;
    let old = if req.get { Some(Reply::bulk_or_nil(w.get::<Bytes>(key)?)) } else { None };
    let current = w.view(key).entry(key).map(Entry::expire_at_ms);
    let proceed = match req.condition {
        Condition::Always => true,
        Condition::IfMissing => current.is_none(),
        Condition::IfExists => current.is_some(),
    };
    if proceed {
        let deadline = if req.keep_ttl { current.flatten() } else { deadline };
        w.put(key, Value::Str(Box::new(value.clone())), deadline);
    }
    Ok(old.unwrap_or(if proceed { done } else { skipped }))
}

pub(crate) fn set(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    let req = parse_set_options(&argv[3..])?;
    set_generic(w, "set", &argv[1], &argv[2], req, Reply::ok(), Reply::Nil)
}

pub(crate) fn setnx(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    let req = SetRequest { condition: Condition::IfMissing, ..SetRequest::PLAIN };
    set_generic(w, "setnx", &argv[1], &argv[2], req, Reply::Int(1), Reply::Int(0))
}

pub(crate) fn setex(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    let req = SetRequest { expire: Some((ExpireForm::Ex, &argv[2])), ..SetRequest::PLAIN };
    set_generic(w, "setex", &argv[1], &argv[3], req, Reply::ok(), Reply::Nil)
}

pub(crate) fn psetex(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    let req = SetRequest { expire: Some((ExpireForm::Px, &argv[2])), ..SetRequest::PLAIN };
    set_generic(w, "psetex", &argv[1], &argv[3], req, Reply::ok(), Reply::Nil)
}

/// Adds `delta` to the integer at `key` (missing = 0), keeping its TTL.
fn incr_by(w: &mut Writer<'_>, key: &Bytes, delta: i64) -> Outcome {
    let current = match w.get::<Bytes>(key)? {
        None => 0,
        Some(s) => parse_i64(s).ok_or_else(Reply::not_integer)?,
    };
    let next = current.checked_add(delta).ok_or_else(|| Reply::err("ERR increment or decrement would overflow"))?;
    w.modify::<Bytes, _>(key, true, |s| {
        *s = Bytes::from(next.to_string());
        ((), true)
    })?;
    Ok(Reply::Int(next))
}

pub(crate) fn incr(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    incr_by(w, &argv[1], 1)
}

pub(crate) fn decr(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    incr_by(w, &argv[1], -1)
}

pub(crate) fn incrby(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    let delta = int_arg(&argv[2])?;
    incr_by(w, &argv[1], delta)
}

pub(crate) fn decrby(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    let delta = int_arg(&argv[2])?;
    let negated = delta.checked_neg().ok_or_else(|| Reply::err("ERR decrement would overflow"))?;
    incr_by(w, &argv[1], negated)
}

pub(crate) fn append(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    let extra = &argv[2];
    let appended = w.modify::<Bytes, _>(&argv[1], true, |s| {
        if s.len() + extra.len() > MAX_STRING {
            return (Err(Reply::err("ERR string exceeds maximum allowed size (proto-max-bulk-len)")), false);
        }
        let mut joined = Vec::with_capacity(s.len() + extra.len());
        joined.extend_from_slice(s);
        joined.extend_from_slice(extra);
        *s = Bytes::from(joined);
        (Ok(s.len() as i64), true)
    })?;
    appended.unwrap_or(Ok(0)).map(Reply::Int)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{bulk, bulks, err, Node, T0};
    use super::Reply;

    #[test]
    fn get_set_and_types() {
        let mut n = Node::new();
        assert_eq!(n.query("get k"), Reply::Nil);
        assert_eq!(n.run("set k v"), Reply::ok());
        assert_eq!(n.query("get k"), bulk("v"));
        assert_eq!(n.query("strlen k"), Reply::Int(1));
        assert_eq!(n.query("strlen none"), Reply::Int(0));
        n.run("rpush l a");
        assert_eq!(n.query("get l"), Reply::wrong_type());
        assert_eq!(n.query("strlen l"), Reply::wrong_type());
        assert_eq!(n.run("set l v"), Reply::ok(), "SET overwrites any type");
        assert_eq!(n.query("get l"), bulk("v"));
    }

    #[test]
    fn set_conditions_and_get() {
        let mut n = Node::new();
        assert_eq!(n.run("set k v xx"), Reply::Nil);
        assert_eq!(n.run("set k v nx"), Reply::ok());
        assert_eq!(n.run("set k w nx"), Reply::Nil);
        assert_eq!(n.run("set k w xx"), Reply::ok());
        assert_eq!(n.run("set k x get"), bulk("w"));
        assert_eq!(n.run("set k y nx get"), bulk("x"), "NX blocked, GET still answers");
        assert_eq!(n.query("get k"), bulk("x"));
        assert_eq!(n.run("set new v get"), Reply::Nil);
        n.run("rpush l a");
        assert_eq!(n.run("set l v get"), Reply::wrong_type());
        assert_eq!(n.query("type l"), Reply::Status("list".into()), "nothing written on WRONGTYPE");
        assert_eq!(n.run("set k v nx nx"), Reply::Nil, "repeating NX is accepted");
        assert_eq!(n.run("SET k v NX XX"), Reply::syntax_error());
        assert_eq!(n.run("set k v xx nx"), Reply::syntax_error());
        assert_eq!(n.run("set k v bogus"), Reply::syntax_error());
        assert_eq!(n.run("set k"), Reply::wrong_arity("set"));
    }

    #[test]
    fn set_expiry_options() {
        let mut n = Node::new();
        assert_eq!(n.run("set k v ex 10"), Reply::ok());
        assert_eq!(n.query("pttl k"), Reply::Int(10_000));
        assert_eq!(n.run("set k v px 1500"), Reply::ok());
        assert_eq!(n.query("pttl k"), Reply::Int(1500));
        assert_eq!(n.run(&format!("set k v exat {}", T0 / 1000 + 20)), Reply::ok());
        assert_eq!(n.query("ttl k"), Reply::Int(20));
        assert_eq!(n.run(&format!("set k v pxat {}", T0 + 5)), Reply::ok());
        assert_eq!(n.query("pttl k"), Reply::Int(5));
        assert_eq!(n.run("set k v keepttl"), Reply::ok());
        assert_eq!(n.query("pttl k"), Reply::Int(5), "KEEPTTL keeps the deadline");
        assert_eq!(n.run("set k v"), Reply::ok());
        assert_eq!(n.query("ttl k"), Reply::Int(-1), "plain SET clears the TTL");
        assert_eq!(n.run("set k v ex 1 ex 2"), Reply::ok(), "last EX wins");
        assert_eq!(n.query("ttl k"), Reply::Int(2));
        assert_eq!(n.run("set k v exat 1"), Reply::ok(), "a past deadline deletes");
        assert_eq!(n.query("exists k"), Reply::Int(0));
        for bad in
            ["set k v ex 1 px 1", "set k v keepttl ex 1", "set k v ex 1 keepttl", "set k v ex", "set k v pxat 1 exat 1"]
        {
            assert_eq!(n.run(bad), Reply::syntax_error(), "{bad}");
        }
        for bad in ["set k v ex 0", "set k v px -1", "set k v ex 9223372036854776", "set k v exat 0"] {
            assert_eq!(n.run(bad), err("ERR invalid expire time in 'set' command"), "{bad}");
        }
        assert_eq!(n.run("set k v ex abc"), Reply::not_integer());
        assert_eq!(n.run("set k v px 9223372036854775807"), err("ERR invalid expire time in 'set' command"));
    }

    #[test]
    fn setnx_setex_psetex() {
        let mut n = Node::new();
        assert_eq!(n.run("setnx k v"), Reply::Int(1));
        assert_eq!(n.run("setnx k w"), Reply::Int(0));
        assert_eq!(n.query("get k"), bulk("v"));
        assert_eq!(n.run("setex s 100 v"), Reply::ok());
        assert_eq!(n.query("ttl s"), Reply::Int(100));
        assert_eq!(n.run("psetex p 1500 v"), Reply::ok());
        assert_eq!(n.query("pttl p"), Reply::Int(1500));
        assert_eq!(n.run("setex s 0 v"), err("ERR invalid expire time in 'setex' command"));
        assert_eq!(n.run("psetex s -1 v"), err("ERR invalid expire time in 'psetex' command"));
        assert_eq!(n.run("setex s x v"), Reply::not_integer());
    }

    #[test]
    fn mget_mset() {
        let mut n = Node::new();
        assert_eq!(n.run("mset a 1 b 2"), Reply::ok());
        n.run("sadd s x");
        assert_eq!(n.query("mget a s nope b"), Reply::Array(vec![bulk("1"), Reply::Nil, Reply::Nil, bulk("2")]));
        assert_eq!(n.run("mset a 1 b"), Reply::wrong_arity("mset"));
        n.run("expire a 100");
        n.run("mset a 3");
        assert_eq!(n.query("ttl a"), Reply::Int(-1), "MSET clears TTLs");
    }

    #[test]
    fn counters() {
        let mut n = Node::new();
        assert_eq!(n.run("incr c"), Reply::Int(1));
        assert_eq!(n.run("incrby c 10"), Reply::Int(11));
        assert_eq!(n.run("decr c"), Reply::Int(10));
        assert_eq!(n.run("decrby c -5"), Reply::Int(15));
        assert_eq!(n.query("get c"), bulk("15"));
        n.run("expire c 100");
        n.run("incr c");
        assert_eq!(n.query("ttl c"), Reply::Int(100), "INCR keeps the TTL");
        n.run("set c 9223372036854775807");
        assert_eq!(n.run("incr c"), err("ERR increment or decrement would overflow"));
        assert_eq!(n.run("decrby c -9223372036854775808"), err("ERR decrement would overflow"));
        for bad in ["007", "1.5", " 1", "abc", ""] {
            n.apply(&[
                bytes::Bytes::from_static(b"set"),
                bytes::Bytes::from_static(b"c"),
                bytes::Bytes::copy_from_slice(bad.as_bytes()),
            ]);
            assert_eq!(n.run("incr c"), Reply::not_integer(), "{bad:?}");
        }
        assert_eq!(n.run("incrby c +1"), Reply::not_integer());
        n.run("rpush l a");
        assert_eq!(n.run("incr l"), Reply::wrong_type());
    }

    #[test]
    fn append_creates_and_extends() {
        let mut n = Node::new();
        assert_eq!(n.run("append s ab"), Reply::Int(2));
        assert_eq!(n.run("append s cd"), Reply::Int(4));
        assert_eq!(n.query("get s"), bulk("abcd"));
        n.run("rpush l a");
        assert_eq!(n.run("append l x"), Reply::wrong_type());
        assert_eq!(n.query("mget s"), bulks(&["abcd"]));
    }
}
