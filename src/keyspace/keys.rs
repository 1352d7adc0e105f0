//! Commands on keys whatever their type: existence, deletion, renaming, listing.

use bytes::Bytes;

use super::access::{View, Writer};
use super::args::{cursor_arg, eq_ic, int_arg};
use super::commands::Outcome;
use super::glob;
use super::reply::Reply;

/// DEL and UNLINK (there is no background freeing to do here).
pub(crate) fn del(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    Ok(Reply::Int(argv[1..].iter().filter(|k| w.delete(k)).count() as i64))
}

/// Counts a key named twice twice, as Redis does.
pub(crate) fn exists(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    Ok(Reply::Int(argv[1..].iter().filter(|k| v.entry(k).is_some()).count() as i64))
}

pub(crate) fn type_of(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    Ok(Reply::Status(v.entry(&argv[1]).map_or("none", |e| e.value.type_name()).into()))
}

/// Moves the entry, TTL included; the destination's old value is dropped. Renaming a key to
/// itself only checks that it exists.
fn rename_generic(w: &mut Writer<'_>, argv: &[Bytes], only_if_free: bool) -> Result<bool, Reply> {
    let (from, to) = (&argv[1], &argv[2]);
    if !w.exists(from) {
        return Err(Reply::err("ERR no such key"));
    }
    if from == to {
        return Ok(!only_if_free);
    }
    if only_if_free && w.exists(to) {
        return Ok(false);
    }
    if let Some(entry) = w.take(from) {
        let deadline = entry.expire_at_ms();
        w.put(to, entry.value, deadline);
    }
    Ok(true)
}

pub(crate) fn rename(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    rename_generic(w, argv, false).map(|_| Reply::ok())
}

pub(crate) fn renamenx(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    rename_generic(w, argv, true).map(Reply::int_bool)
}

/// All live keys matching the pattern, in hash order, the order `SCAN` walks (Redis' order is unspecified).
pub(crate) fn keys(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    let pattern = &argv[1];
    let all = pattern.as_ref() == b"*";
    let found = v.db().keys().filter(|k| (all || glob::matches(pattern, k)) && v.entry(k).is_some());
    Ok(copied_bulks(found))
}

/// Live keys only (Redis counts expired keys until they are deleted; hiding them keeps DBSIZE
/// consistent with KEYS and independent of when the last sweep ran).
pub(crate) fn dbsize(v: &View<'_>, _argv: &[Bytes]) -> Outcome {
    let db = v.db();
    let expired = db.due_count(v.now);
    Ok(Reply::Int((db.len() - expired) as i64))
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`.
///
/// Cursor scheme: keys are walked in the order of a fixed 64-bit hash of the key (FNV-1a,
/// then the key bytes), and the cursor is the hash to resume from. So, as Redis promises, a
/// key present for the whole iteration is returned at least once (exactly once here), keys
/// added or removed meanwhile may or may not be, and the cursor works on any replica. Each
/// call visits about COUNT keys (keys sharing a hash are never split) and then filters them
/// by MATCH and TYPE, so a page can be empty while the cursor is not 0.
pub(crate) fn scan(v: &View<'_>, argv: &[Bytes]) -> Outcome {
    let cursor = cursor_arg(&argv[1])?;
    let mut count = 10usize;
    let mut pattern: Option<&Bytes> = None;
    let mut type_name: Option<&Bytes> = None;
    for opt in argv[2..].chunks(2) {
        match opt {
            [name, value] if eq_ic(name, "count") => {
                count = usize::try_from(int_arg(value)?).ok().filter(|&c| c >= 1).ok_or_else(Reply::syntax_error)?;
            }
            [name, value] if eq_ic(name, "match") => pattern = Some(value).filter(|p| p.as_ref() != b"*"),
            [name, value] if eq_ic(name, "type") => type_name = Some(value),
            _ => return Err(Reply::syntax_error()),
        }
    }
    let (candidates, next) = v.db().scan_from(cursor, count);
    let found = candidates.into_iter().filter(|k| {
        let Some(entry) = v.entry(k) else {
            return false;
        };
        pattern.is_none_or(|p| glob::matches(p, k)) && type_name.is_none_or(|t| eq_ic(t, entry.value.type_name()))
    });
    Ok(Reply::Array(vec![Reply::bulk(next.unwrap_or(0).to_string()), copied_bulks(found)]))
}

/// Keys as a bulk-string array (copied: stored keys are not `Bytes`).
fn copied_bulks<'a>(keys: impl Iterator<Item = &'a [u8]>) -> Reply {
    Reply::Array(keys.map(|k| Reply::Bulk(Bytes::copy_from_slice(k))).collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::testkit::{bulk, bulks, err, Node};
    use super::Reply;

    #[test]
    fn del_exists_type() {
        let mut n = Node::new();
        n.run("mset a 1 b 2");
        n.run("rpush l x");
        n.run("sadd s x");
        n.run("hset h f v");
        assert_eq!(n.query("exists a a nope l"), Reply::Int(3), "duplicates count twice");
        for (key, name) in [("a", "string"), ("l", "list"), ("s", "set"), ("h", "hash"), ("nope", "none")] {
            assert_eq!(n.query(&format!("type {key}")), Reply::Status(name.into()));
        }
        assert_eq!(n.run("del a nope a"), Reply::Int(1));
        assert_eq!(n.run("unlink b l"), Reply::Int(2));
        assert_eq!(n.query("dbsize"), Reply::Int(2));
    }

    #[test]
    fn rename_moves_value_and_ttl() {
        let mut n = Node::new();
        n.run("rpush frontend:a id b1");
        n.run("expire frontend:a 100");
        n.run("set frontend:b old");
        assert_eq!(n.run("rename frontend:a frontend:b"), Reply::ok());
        assert_eq!(n.query("lrange frontend:b 0 -1"), bulks(&["id", "b1"]));
        assert_eq!(n.query("ttl frontend:b"), Reply::Int(100));
        assert_eq!(n.query("exists frontend:a"), Reply::Int(0));
        assert_eq!(n.run("rename frontend:a x"), err("ERR no such key"));
        assert_eq!(n.run("rename frontend:b frontend:b"), Reply::ok());
        n.run("set c v");
        assert_eq!(n.run("renamenx frontend:b c"), Reply::Int(0));
        assert_eq!(n.run("renamenx frontend:b d"), Reply::Int(1));
        assert_eq!(n.run("renamenx d d"), Reply::Int(0));
        assert_eq!(n.run("renamenx nope d"), err("ERR no such key"));
    }

    #[test]
    fn keys_is_a_glob_over_live_keys() {
        let mut n = Node::new();
        n.run("rpush frontend:*.example.com id");
        n.run("rpush frontend:www.example.com id");
        n.run("sadd dead:www.example.com 1");
        n.run("set gone v px 10");
        assert_eq!(n.query("keys frontend:*"), bulks(&["frontend:*.example.com", "frontend:www.example.com"]));
        assert_eq!(n.query("keys frontend:\\**"), bulks(&["frontend:*.example.com"]));
        assert_eq!(n.query("keys dead:www.example.com"), bulks(&["dead:www.example.com"]));
        n.now += 10;
        assert_eq!(
            n.query("keys *"),
            bulks(&["dead:www.example.com", "frontend:*.example.com", "frontend:www.example.com"])
        );
        assert_eq!(n.query("dbsize"), Reply::Int(3));
    }

    /// One SCAN call: the next cursor and the page.
    fn scan_page(n: &Node, cursor: &str, extra: &str) -> (String, Vec<String>) {
        let Reply::Array(parts) = n.read(&format!("scan {cursor}{extra}")) else { panic!("scan reply") };
        let [Reply::Bulk(next), Reply::Array(page)] = &parts[..] else { panic!("scan shape") };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let keys = page.iter().map(|k| match k {
            Reply::Bulk(b) => text(b),
            other => panic!("{other:?}"),
        });
        (text(next), keys.collect())
    }

    /// Every key SCAN returns from `cursor` to the end, and the number of calls.
    fn scan_rest(n: &Node, cursor: &str, extra: &str) -> (Vec<String>, usize) {
        let (mut cursor, mut keys, mut calls) = (cursor.to_string(), Vec::new(), 0);
        loop {
            calls += 1;
            let (next, page) = scan_page(n, &cursor, extra);
            keys.extend(page);
            if next == "0" {
                return (keys, calls);
            }
            cursor = next;
        }
    }

    fn scan_all(n: &Node, extra: &str) -> (Vec<String>, usize) {
        scan_rest(n, "0", extra)
    }

    #[test]
    fn scan_visits_each_key_once_with_filters() {
        let mut n = Node::new();
        for i in 0..100 {
            n.run(&format!("set k{i} v"));
        }
        n.run("sadd set1 a");
        let (keys, calls) = scan_all(&n, "");
        assert_eq!(keys.len(), 101);
        assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), 101, "no duplicates");
        assert!(calls >= 10, "COUNT 10 pages: {calls}");
        let (keys, _) = scan_all(&n, " count 1000 match k1*");
        assert_eq!(keys.len(), 11);
        let (keys, _) = scan_all(&n, " TYPE SET");
        assert_eq!(keys, vec!["set1".to_string()]);
        let (keys, _) = scan_all(&n, " type nosuchtype");
        assert!(keys.is_empty());
    }

    #[test]
    fn scan_survives_changes_between_calls() {
        let mut n = Node::new();
        for i in 0..50 {
            n.run(&format!("set k{i} v"));
        }
        let (cursor, first) = scan_page(&n, "0", " count 5");
        for i in 0..50 {
            n.run(&format!("set extra{i} v"));
        }
        n.run("del k0 k1 k2");
        let (rest, _) = scan_rest(&n, &cursor, "");
        let seen: BTreeSet<String> = first.into_iter().chain(rest).collect();
        for i in 3..50 {
            assert!(seen.contains(&format!("k{i}")), "k{i} was present throughout, so it is returned");
        }
    }

    #[test]
    fn scan_errors() {
        let n = Node::new();
        assert_eq!(n.read("scan x"), err("ERR invalid cursor"));
        assert_eq!(n.read("scan 0 count 0"), Reply::syntax_error());
        assert_eq!(n.read("scan 0 count x"), Reply::not_integer());
        assert_eq!(n.read("scan 0 match"), Reply::syntax_error());
        assert_eq!(n.read("scan 0 bogus 1"), Reply::syntax_error());
        assert_eq!(n.read("scan -1"), Reply::Array(vec![bulk("0"), bulks(&[])]));
    }
}
