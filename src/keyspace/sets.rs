//! Set commands. Hipache keeps `dead:<host>` as a set of backend indexes.

use bytes::Bytes;
use imbl::OrdSet;

use super::access::{View, Writer};
use super::commands::Outcome;
use super::reply::Reply;

type Set = OrdSet<Bytes>;

fn members<'a>(set: impl IntoIterator<Item = &'a Bytes>) -> Reply {
    Reply::Set(set.into_iter().map(|m| Reply::Bulk(m.clone())).collect())
}

pub(crate) fn sadd(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    let added = w.modify::<Set, _>(&argv[1], true, |set| {
        let added = argv[2..].iter().filter(|m| set.insert((*m).clone()).is_none()).count();
        (added as i64, added > 0)
    })?;
    Ok(Reply::Int(added.unwrap_or(0)))
}

pub(crate) fn srem(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    let removed = w.modify::<Set, _>(&argv[1], false, |set| {
        let removed = argv[2..].iter().filter(|m| set.remove(*m).is_some()).count();
        (removed as i64, removed > 0)
    })?;
    Ok(Reply::Int(removed.unwrap_or(0)))
}

pub(crate) fn smembers(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    Ok(members(v.get::<Set>(&argv[1])?.into_iter().flatten()))
}

pub(crate) fn sismember(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    Ok(Reply::int_bool(v.get::<Set>(&argv[1])?.is_some_and(|s| s.contains(&argv[2]))))
}

pub(crate) fn scard(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    Ok(Reply::Int(v.get::<Set>(&argv[1])?.map_or(0, |s| s.len() as i64)))
}

/// Every named set (missing keys as `None`); any key of another type is `WRONGTYPE`, even
/// after a missing one, as Redis 7.0 checks them all first.
fn operands<'a>(v: &View<'a>, keys: &[Bytes]) -> Result<Vec<Option<&'a Set>>, Reply> {
    keys.iter().map(|k| v.get::<Set>(k)).collect()
}

pub(crate) fn sdiff(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    let sets = operands(v, &argv[1..])?;
    let Some(Some(first)) = sets.first() else {
        return Ok(Reply::Set(Vec::new()));
    };
    let others: Vec<&Set> = sets[1..].iter().flatten().copied().collect();
    Ok(members(first.iter().filter(|m| !others.iter().any(|o| o.contains(*m)))))
}

pub(crate) fn sinter(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    let sets = operands(v, &argv[1..])?;
    let Some(mut sets) = sets.into_iter().collect::<Option<Vec<&Set>>>() else {
        return Ok(Reply::Set(Vec::new()));
    };
    // Walk the smallest set and probe the others, as Redis does.
    sets.sort_by_key(|s| s.len());
    let Some((smallest, rest)) = sets.split_first() else {
        return Ok(Reply::Set(Vec::new()));
    };
    Ok(members(smallest.iter().filter(|m| rest.iter().all(|o| o.contains(*m)))))
}

pub(crate) fn sunion(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    let sets = operands(v, &argv[1..])?;
    let union = sets.into_iter().flatten().fold(Set::new(), |acc, s| acc.union(s.clone()));
    Ok(members(&union))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{set_of, Node};
    use super::Reply;

    #[test]
    fn add_remove_members() {
        let mut n = Node::new();
        assert_eq!(n.run("sadd s b a b"), Reply::Int(2));
        assert_eq!(n.run("sadd s a c"), Reply::Int(1));
        assert_eq!(n.query("smembers s"), set_of(&["a", "b", "c"]));
        assert_eq!(n.query("scard s"), Reply::Int(3));
        assert_eq!(n.query("sismember s a"), Reply::Int(1));
        assert_eq!(n.query("sismember s z"), Reply::Int(0));
        assert_eq!(n.query("sismember none z"), Reply::Int(0));
        assert_eq!(n.run("srem s a z"), Reply::Int(1));
        assert_eq!(n.run("srem none a"), Reply::Int(0));
        assert_eq!(n.run("srem s b c"), Reply::Int(2));
        assert_eq!(n.query("exists s"), Reply::Int(0), "empty sets are deleted");
        assert_eq!(n.query("smembers s"), set_of(&[]));
        assert_eq!(n.query("scard s"), Reply::Int(0));
        n.run("set str v");
        for cmd in ["sadd str a", "srem str a"] {
            assert_eq!(n.run(cmd), Reply::wrong_type(), "{cmd}");
        }
        for cmd in ["smembers str", "sismember str a", "scard str"] {
            assert_eq!(n.query(cmd), Reply::wrong_type(), "{cmd}");
        }
    }

    #[test]
    fn algebra() {
        let mut n = Node::new();
        n.run("sadd a 1 2 3 4");
        n.run("sadd b 3 4 5");
        n.run("sadd c 4 6");
        assert_eq!(n.query("sdiff a b"), set_of(&["1", "2"]));
        assert_eq!(n.query("sdiff a b c none"), set_of(&["1", "2"]));
        assert_eq!(n.query("sdiff none a"), set_of(&[]));
        assert_eq!(n.query("sinter a b c"), set_of(&["4"]));
        assert_eq!(n.query("sinter a b none"), set_of(&[]));
        assert_eq!(n.query("sunion a c none"), set_of(&["1", "2", "3", "4", "6"]));
        n.run("set str v");
        for cmd in ["sdiff a str", "sdiff none str", "sinter none str", "sinter str none", "sunion none str"] {
            assert_eq!(n.query(cmd), Reply::wrong_type(), "{cmd}");
        }
    }
}
