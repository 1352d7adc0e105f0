//! Hash commands: health checkers' state (`hchecker`) and the `tls:<host>` certificates.

use bytes::Bytes;
use indexmap::IndexMap;

use super::access::{View, Writer};
use super::args::{int_arg, parse_i64};
use super::commands::Outcome;
use super::reply::Reply;

type Hash = Box<IndexMap<Bytes, Bytes>>;

/// Stores field/value pairs; returns how many fields are new. An existing field keeps its
/// position, as in Redis' listpack encoding.
fn store_pairs(w: &mut Writer<'_>, argv: &[Bytes], command: &str) -> Result<i64, Reply> {
    if argv.len() % 2 == 1 {
        return Err(Reply::wrong_arity(command));
    }
    let created = w.modify::<Hash, _>(&argv[1], true, |hash| {
        let created = argv[2..].chunks_exact(2).filter(|p| hash.insert(p[0].clone(), p[1].clone()).is_none()).count();
        (created as i64, true)
    })?;
    Ok(created.unwrap_or(0))
}

pub(crate) fn hset(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    store_pairs(w, argv, "hset").map(Reply::Int)
}

pub(crate) fn hmset(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    store_pairs(w, argv, "hmset").map(|_| Reply::ok())
}

pub(crate) fn hsetnx(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    let set = w.modify::<Hash, _>(&argv[1], true, |hash| {
        let fresh = !hash.contains_key(&argv[2]);
        if fresh {
            hash.insert(argv[2].clone(), argv[3].clone());
        }
        (fresh, fresh)
    })?;
    Ok(Reply::int_bool(set.unwrap_or(false)))
}

pub(crate) fn hget(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    Ok(Reply::bulk_or_nil(v.get::<Hash>(&argv[1])?.and_then(|h| h.get(&argv[2]))))
}

pub(crate) fn hmget(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    let hash = v.get::<Hash>(&argv[1])?;
    Ok(Reply::Array(argv[2..].iter().map(|f| Reply::bulk_or_nil(hash.and_then(|h| h.get(f)))).collect()))
}

pub(crate) fn hgetall(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    let pairs = v.get::<Hash>(&argv[1])?.into_iter().flat_map(|h| h.iter());
    Ok(Reply::Map(pairs.map(|(f, x)| (Reply::Bulk(f.clone()), Reply::Bulk(x.clone()))).collect()))
}

pub(crate) fn hkeys(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    Ok(Reply::bulks(v.get::<Hash>(&argv[1])?.into_iter().flat_map(|h| h.keys())))
}

pub(crate) fn hvals(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    Ok(Reply::bulks(v.get::<Hash>(&argv[1])?.into_iter().flat_map(|h| h.values())))
}

pub(crate) fn hlen(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    Ok(Reply::Int(v.get::<Hash>(&argv[1])?.map_or(0, |h| h.len() as i64)))
}

pub(crate) fn hexists(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    Ok(Reply::int_bool(v.get::<Hash>(&argv[1])?.is_some_and(|h| h.contains_key(&argv[2]))))
}

/// Removes fields; `shift_remove` keeps the remaining fields in their order.
pub(crate) fn hdel(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    let removed = w.modify::<Hash, _>(&argv[1], false, |hash| {
        let removed = argv[2..].iter().filter(|f| hash.shift_remove(*f).is_some()).count();
        (removed as i64, removed > 0)
    })?;
    Ok(Reply::Int(removed.unwrap_or(0)))
}

pub(crate) fn hincrby(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    let delta = int_arg(&argv[3])?;
    let field = &argv[2];
    let next = w.modify::<Hash, _>(&argv[1], true, |hash| {
        let current = match hash.get(field) {
            None => Some(0),
            Some(v) => parse_i64(v),
        };
        let next = match current {
            None => Err(Reply::err("ERR hash value is not an integer")),
            Some(n) => n.checked_add(delta).ok_or_else(|| Reply::err("ERR increment or decrement would overflow")),
        };
        match next {
            Ok(n) => {
                hash.insert(field.clone(), Bytes::from(n.to_string()));
                (Ok(n), true)
            }
            Err(e) => (Err(e), false),
        }
    })?;
    next.unwrap_or(Ok(0)).map(Reply::Int)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{bulk, bulks, err, Node};
    use super::Reply;

    #[test]
    fn set_get_in_insertion_order() {
        let mut n = Node::new();
        assert_eq!(n.run("hset h z 1 a 2"), Reply::Int(2));
        assert_eq!(n.run("hset h z 3 m 4"), Reply::Int(1));
        assert_eq!(
            n.query("hgetall h"),
            Reply::Map(vec![(bulk("z"), bulk("3")), (bulk("a"), bulk("2")), (bulk("m"), bulk("4"))])
        );
        assert_eq!(n.query("hkeys h"), bulks(&["z", "a", "m"]));
        assert_eq!(n.query("hvals h"), bulks(&["3", "2", "4"]));
        assert_eq!(n.run("hdel h z nope"), Reply::Int(1));
        assert_eq!(n.query("hkeys h"), bulks(&["a", "m"]), "HDEL keeps the order of the rest");
        assert_eq!(n.query("hget h a"), bulk("2"));
        assert_eq!(n.query("hget h z"), Reply::Nil);
        assert_eq!(n.query("hget none z"), Reply::Nil);
        assert_eq!(n.query("hmget h a z m"), Reply::Array(vec![bulk("2"), Reply::Nil, bulk("4")]));
        assert_eq!(n.query("hmget none a"), Reply::Array(vec![Reply::Nil]));
        assert_eq!(n.query("hlen h"), Reply::Int(2));
        assert_eq!(n.query("hexists h a"), Reply::Int(1));
        assert_eq!(n.query("hexists h z"), Reply::Int(0));
        assert_eq!(n.query("hgetall none"), Reply::Map(vec![]));
        assert_eq!(n.run("hdel h a m"), Reply::Int(2));
        assert_eq!(n.query("exists h"), Reply::Int(0), "empty hashes are deleted");
        assert_eq!(n.run("hdel h a"), Reply::Int(0));
    }

    #[test]
    fn hmset_hsetnx_and_arity() {
        let mut n = Node::new();
        assert_eq!(n.run("hmset h a 1 b 2"), Reply::ok());
        assert_eq!(n.run("hsetnx h a 9"), Reply::Int(0));
        assert_eq!(n.run("hsetnx h c 3"), Reply::Int(1));
        assert_eq!(n.run("hsetnx new c 3"), Reply::Int(1));
        assert_eq!(n.query("hmget h a c"), bulks(&["1", "3"]));
        assert_eq!(n.run("hset h a"), Reply::wrong_arity("hset"));
        assert_eq!(n.run("hset h a 1 b"), Reply::wrong_arity("hset"));
        assert_eq!(n.run("hmset h a 1 b"), Reply::wrong_arity("hmset"));
    }

    #[test]
    fn hincrby() {
        let mut n = Node::new();
        assert_eq!(n.run("hincrby h n 5"), Reply::Int(5));
        assert_eq!(n.run("hincrby h n -7"), Reply::Int(-2));
        assert_eq!(n.query("hget h n"), bulk("-2"));
        assert_eq!(n.run("hincrby h n x"), Reply::not_integer());
        n.run("hset h s abc");
        assert_eq!(n.run("hincrby h s 1"), err("ERR hash value is not an integer"));
        n.run("hset h big 9223372036854775807");
        assert_eq!(n.run("hincrby h big 1"), err("ERR increment or decrement would overflow"));
    }

    #[test]
    fn wrong_types() {
        let mut n = Node::new();
        n.run("set s v");
        for cmd in ["hset s a 1", "hmset s a 1", "hsetnx s a 1", "hdel s a", "hincrby s a 1"] {
            assert_eq!(n.run(cmd), Reply::wrong_type(), "{cmd}");
        }
        for cmd in ["hget s a", "hmget s a", "hgetall s", "hkeys s", "hvals s", "hlen s", "hexists s a"] {
            assert_eq!(n.query(cmd), Reply::wrong_type(), "{cmd}");
        }
    }
}
