//! List commands: the core of Hipache's routing data (`frontend:<host>` is a list whose first
//! element is the identifier and the rest are backends).

use super::access::{View, Writer};
use super::args::{eq_ic, int_arg, parse_i64};
use super::commands::Outcome;
use super::list::{End, List};
use super::reply::Reply;
use bytes::Bytes;

/// LPUSH/RPUSH/LPUSHX/RPUSHX: the new length, or 0 when an X variant finds no list.
fn push(w: &mut Writer<'_>, argv: &[Bytes], end: End, create: bool) -> Outcome {
    let len = w.modify::<List, _>(&argv[1], create, |list| {
        list.push_all(end, &argv[2..]);
        (list.len() as i64, true)
    })?;
    Ok(Reply::Int(len.unwrap_or(0)))
}

pub(crate) fn rpush(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    push(w, argv, End::Tail, true)
}

pub(crate) fn lpush(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    push(w, argv, End::Head, true)
}

pub(crate) fn rpushx(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    push(w, argv, End::Tail, false)
}

pub(crate) fn lpushx(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    push(w, argv, End::Head, false)
}

/// Redis' clamping of a `start..=stop` pair with negative indexes counting from the end;
/// `None` when the range is empty.
fn clamp_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 { (len + start).max(0) } else { start };
    let stop = if stop < 0 { len + stop } else { stop };
    if start > stop || start >= len {
        return None;
    }
    Some((start as usize, stop.min(len - 1) as usize))
}

/// A negative index counts from the end; `None` when outside the list.
fn position(index: i64, len: usize) -> Option<usize> {
    let index = if index < 0 { index.checked_add(len as i64)? } else { index };
    usize::try_from(index).ok().filter(|&i| i < len)
}

pub(crate) fn lrange(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    let (start, stop) = (int_arg(&argv[2])?, int_arg(&argv[3])?);
    let Some(list) = v.get::<List>(&argv[1])? else {
        return Ok(Reply::Array(Vec::new()));
    };
    Ok(match clamp_range(start, stop, list.len()) {
        Some((from, to)) => Reply::Array(list.iter().skip(from).take(to - from + 1).map(Reply::Bulk).collect()),
        None => Reply::Array(Vec::new()),
    })
}

pub(crate) fn llen(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    Ok(Reply::Int(v.get::<List>(&argv[1])?.map_or(0, |l| l.len() as i64)))
}

pub(crate) fn lindex(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    let Some(list) = v.get::<List>(&argv[1])? else {
        return Ok(Reply::Nil);
    };
    let index = int_arg(&argv[2])?;
    Ok(Reply::bulk_or_nil(position(index, list.len()).and_then(|i| list.get(i)).as_ref()))
}

/// Redis checks the key (no such key / WRONGTYPE) before it parses the index.
pub(crate) fn lset(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    let key = &argv[1];
    if w.get::<List>(key)?.is_none() {
        return Err(Reply::err("ERR no such key"));
    }
    let index = int_arg(&argv[2])?;
    let set = w.modify::<List, _>(key, false, |list| match position(index, list.len()) {
        Some(i) => {
            list.set(i, argv[3].clone());
            (true, true)
        }
        None => (false, false),
    })?;
    match set {
        Some(true) => Ok(Reply::ok()),
        _ => Err(Reply::err("ERR index out of range")),
    }
}

/// `count > 0` removes from the head, `< 0` from the tail, `0` all occurrences.
pub(crate) fn lrem(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    let count = int_arg(&argv[2])?;
    let target = &argv[3];
    let removed = w.modify::<List, _>(&argv[1], false, |list| {
        let limit = if count == 0 { usize::MAX } else { usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX) };
        // Walk from the end the count points at, keeping what is not removed.
        let mut walk: Vec<Bytes> = list.iter().collect();
        if count < 0 {
            walk.reverse();
        }
        let mut removed = 0usize;
        let mut kept: Vec<Bytes> = walk
            .into_iter()
            .filter(|item| {
                let drop = removed < limit && item == target;
                removed += usize::from(drop);
                !drop
            })
            .collect();
        if count < 0 {
            kept.reverse();
        }
        if removed > 0 {
            *list = kept.into_iter().collect();
        }
        (removed as i64, removed > 0)
    })?;
    Ok(Reply::Int(removed.unwrap_or(0)))
}

pub(crate) fn linsert(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    let after = match &argv[2] {
        a if eq_ic(a, "after") => true,
        b if eq_ic(b, "before") => false,
        _ => return Err(Reply::syntax_error()),
    };
    let (pivot, item) = (&argv[3], &argv[4]);
    let len = w.modify::<List, _>(&argv[1], false, |list| match list.slices().position(|x| x == &pivot[..]) {
        Some(i) => {
            list.insert(if after { i + 1 } else { i }, item.clone());
            (list.len() as i64, true)
        }
        None => (-1, false),
    })?;
    Ok(Reply::Int(len.unwrap_or(0)))
}

pub(crate) fn ltrim(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    let (start, stop) = (int_arg(&argv[2])?, int_arg(&argv[3])?);
    w.modify::<List, _>(&argv[1], false, |list| {
        *list = match clamp_range(start, stop, list.len()) {
            Some((from, to)) => list.slice(from, to),
            None => List::new(),
        };
        ((), true)
    })?;
    Ok(Reply::ok())
}

/// LPOP/RPOP. Without a count: one element or nil. With one: an array (empty for 0), or a
/// nil array when the key is missing, as Redis 7 answers.
fn pop(w: &mut Writer<'_>, argv: &[Bytes], end: End) -> Outcome {
    if argv.len() > 3 {
        return Err(Reply::wrong_arity(if end == End::Head { "lpop" } else { "rpop" }));
    }
    let count = argv
        .get(2)
        .map(|c| {
            parse_i64(c).filter(|&n| n >= 0).ok_or_else(|| Reply::err("ERR value is out of range, must be positive"))
        })
        .transpose()?;
    let popped = w.modify::<List, _>(&argv[1], false, |list| {
        let n = count.map_or(1, |c| usize::try_from(c).unwrap_or(usize::MAX).min(list.len()));
        let taken: Vec<Bytes> = (0..n).filter_map(|_| list.pop(end)).collect();
        let changed = !taken.is_empty();
        (taken, changed)
    })?;
    Ok(match (popped, count) {
        (None, None) => Reply::Nil,
        (None, Some(_)) => Reply::NilArray,
        (Some(items), None) => Reply::bulk_or_nil(items.first()),
        (Some(items), Some(_)) => Reply::bulks(&items),
    })
}

pub(crate) fn lpop(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    pop(w, argv, End::Head)
}

pub(crate) fn rpop(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    pop(w, argv, End::Tail)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{bulk, bulks, err, Node};
    use super::Reply;

    fn list(items: &[&str]) -> Node {
        let mut n = Node::new();
        n.run(&format!("rpush l {}", items.join(" ")));
        n
    }

    #[test]
    fn push_and_range() {
        let mut n = Node::new();
        assert_eq!(n.run("rpush l b c"), Reply::Int(2));
        assert_eq!(n.run("lpush l a z"), Reply::Int(4));
        assert_eq!(n.query("lrange l 0 -1"), bulks(&["z", "a", "b", "c"]));
        assert_eq!(n.run("rpushx l d"), Reply::Int(5));
        assert_eq!(n.run("lpushx l y"), Reply::Int(6));
        assert_eq!(n.run("rpushx none d"), Reply::Int(0));
        assert_eq!(n.run("lpushx none d"), Reply::Int(0));
        assert_eq!(n.query("exists none"), Reply::Int(0));
        n.run("set s v");
        assert_eq!(n.run("rpush s a"), Reply::wrong_type());
        assert_eq!(n.run("lpushx s a"), Reply::wrong_type());
        assert_eq!(n.run("rpush l"), Reply::wrong_arity("rpush"));
    }

    #[test]
    fn lrange_indexes() {
        let mut n = list(&["id", "b1", "b2"]);
        assert_eq!(n.query("lrange l 1 -1"), bulks(&["b1", "b2"]));
        assert_eq!(n.query("lrange l 0 0"), bulks(&["id"]));
        assert_eq!(n.query("lrange l -2 -1"), bulks(&["b1", "b2"]));
        assert_eq!(n.query("lrange l -100 100"), bulks(&["id", "b1", "b2"]));
        assert_eq!(n.query("lrange l 2 1"), bulks(&[]));
        assert_eq!(n.query("lrange l 5 10"), bulks(&[]));
        assert_eq!(n.query("lrange l 0 -4"), bulks(&[]));
        assert_eq!(n.query("lrange none 0 -1"), bulks(&[]));
        assert_eq!(n.query("lrange l a 1"), Reply::not_integer());
        assert_eq!(n.query("llen l"), Reply::Int(3));
        assert_eq!(n.query("llen none"), Reply::Int(0));
        n.run("set s v");
        assert_eq!(n.query("lrange s 0 -1"), Reply::wrong_type());
        assert_eq!(n.query("llen s"), Reply::wrong_type());
    }

    #[test]
    fn lindex_and_lset() {
        let mut n = list(&["a", "b", "c"]);
        assert_eq!(n.query("lindex l 0"), bulk("a"));
        assert_eq!(n.query("lindex l -1"), bulk("c"));
        assert_eq!(n.query("lindex l 3"), Reply::Nil);
        assert_eq!(n.query("lindex l -4"), Reply::Nil);
        assert_eq!(n.query("lindex none 0"), Reply::Nil);
        assert_eq!(n.query("lindex l x"), Reply::not_integer());
        assert_eq!(n.run("lset l -1 z"), Reply::ok());
        assert_eq!(n.run("lset l 1 y"), Reply::ok());
        assert_eq!(n.query("lrange l 0 -1"), bulks(&["a", "y", "z"]));
        assert_eq!(n.run("lset l 3 q"), err("ERR index out of range"));
        assert_eq!(n.run("lset none 0 q"), err("ERR no such key"));
        assert_eq!(n.run("lset none x q"), err("ERR no such key"), "key checked before index");
        assert_eq!(n.run("lset l x q"), Reply::not_integer());
        n.run("set s v");
        assert_eq!(n.run("lset s 0 q"), Reply::wrong_type());
    }

    #[test]
    fn lrem_counts() {
        let items = ["a", "x", "b", "x", "c", "x"];
        let mut n = list(&items);
        assert_eq!(n.run("lrem l 2 x"), Reply::Int(2));
        assert_eq!(n.query("lrange l 0 -1"), bulks(&["a", "b", "c", "x"]));
        let mut n = list(&items);
        assert_eq!(n.run("lrem l -2 x"), Reply::Int(2));
        assert_eq!(n.query("lrange l 0 -1"), bulks(&["a", "x", "b", "c"]));
        let mut n = list(&items);
        assert_eq!(n.run("lrem l 0 x"), Reply::Int(3));
        assert_eq!(n.query("lrange l 0 -1"), bulks(&["a", "b", "c"]));
        assert_eq!(n.run("lrem l 0 nope"), Reply::Int(0));
        assert_eq!(n.run("lrem none 0 x"), Reply::Int(0));
        assert_eq!(n.run("lrem l x a"), Reply::not_integer());
        let mut n = list(&["x", "x"]);
        assert_eq!(n.run("lrem l 0 x"), Reply::Int(2));
        assert_eq!(n.query("exists l"), Reply::Int(0), "empty lists are deleted");
    }

    #[test]
    fn linsert() {
        let mut n = list(&["id", "b1"]);
        assert_eq!(n.run("linsert l after id b0"), Reply::Int(3));
        assert_eq!(n.run("LINSERT l BEFORE id first"), Reply::Int(4));
        assert_eq!(n.query("lrange l 0 -1"), bulks(&["first", "id", "b0", "b1"]));
        assert_eq!(n.run("linsert l after missing x"), Reply::Int(-1));
        assert_eq!(n.run("linsert none after id x"), Reply::Int(0));
        assert_eq!(n.run("linsert none middle id x"), Reply::syntax_error());
        n.run("set s v");
        assert_eq!(n.run("linsert s before a b"), Reply::wrong_type());
    }

    #[test]
    fn ltrim() {
        let mut n = list(&["a", "b", "c", "d"]);
        assert_eq!(n.run("ltrim l 1 -2"), Reply::ok());
        assert_eq!(n.query("lrange l 0 -1"), bulks(&["b", "c"]));
        assert_eq!(n.run("ltrim l 0 100"), Reply::ok());
        assert_eq!(n.query("lrange l 0 -1"), bulks(&["b", "c"]));
        assert_eq!(n.run("ltrim none 0 1"), Reply::ok());
        assert_eq!(n.run("ltrim l 5 10"), Reply::ok());
        assert_eq!(n.query("exists l"), Reply::Int(0));
        assert_eq!(n.run("ltrim l x 1"), Reply::not_integer());
    }

    #[test]
    fn pops() {
        let mut n = list(&["a", "b", "c", "d"]);
        assert_eq!(n.run("lpop l"), bulk("a"));
        assert_eq!(n.run("rpop l"), bulk("d"));
        assert_eq!(n.run("lpop l 0"), bulks(&[]));
        assert_eq!(n.run("rpop l 5"), bulks(&["c", "b"]));
        assert_eq!(n.query("exists l"), Reply::Int(0));
        assert_eq!(n.run("lpop l"), Reply::Nil);
        assert_eq!(n.run("lpop l 2"), Reply::NilArray);
        assert_eq!(n.run("lpop l 0"), Reply::NilArray);
        assert_eq!(n.run("lpop l -1"), err("ERR value is out of range, must be positive"));
        assert_eq!(n.run("rpop l x"), err("ERR value is out of range, must be positive"));
        assert_eq!(n.run("lpop l 1 2"), Reply::wrong_arity("lpop"));
        assert_eq!(n.run("rpop l 1 2"), Reply::wrong_arity("rpop"));
        n.run("set s v");
        assert_eq!(n.run("lpop s"), Reply::wrong_type());
    }
}
