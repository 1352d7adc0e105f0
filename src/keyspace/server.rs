//! Commands on whole databases, and PUBLISH (replicated so every node delivers it once, in
//! log order, to its own subscribers).

use bytes::Bytes;

use super::access::Writer;
use super::args::eq_ic;
use super::commands::Outcome;
use super::reply::Reply;
use super::DATABASES;

pub(crate) fn publish(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    Ok(Reply::Int(w.publish(&argv[1], &argv[2])))
}

/// FLUSHDB/FLUSHALL accept one optional ASYNC or SYNC (both mean "now" here).
fn check_flush_mode(argv: &[Bytes]) -> Result<(), Reply> {
    match argv {
        [_] => Ok(()),
        [_, mode] if eq_ic(mode, "async") || eq_ic(mode, "sync") => Ok(()),
        _ => Err(Reply::syntax_error()),
    }
}

pub(crate) fn flushdb(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    check_flush_mode(argv)?;
    w.flush(w.db());
    Ok(Reply::ok())
}

pub(crate) fn flushall(w: &mut Writer<'_>, argv: &[Bytes]) -> Outcome {
    check_flush_mode(argv)?;
    (0..DATABASES).for_each(|db| w.flush(db));
    Ok(Reply::ok())
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{argv, Node};
    use super::Reply;

    #[test]
    fn flushes() {
        let mut n = Node::new();
        n.run("set a 1");
        n.db = 1;
        n.run("set b 1");
        assert_eq!(n.run("flushdb"), Reply::ok());
        assert_eq!(n.query("dbsize"), Reply::Int(0));
        assert_eq!(n.ks.read(0, &argv("dbsize"), n.now), Reply::Int(1), "other dbs untouched");
        n.run("set b 1");
        assert_eq!(n.run("flushall ASYNC"), Reply::ok());
        assert_eq!(n.ks.iter().count(), 0);
        assert_eq!(n.run("flushdb sync"), Reply::ok());
        assert_eq!(n.run("flushdb foo"), Reply::syntax_error());
        assert_eq!(n.run("flushall async sync"), Reply::syntax_error());
    }

    #[test]
    fn publish_arity() {
        let mut n = Node::new();
        assert_eq!(n.run("publish chan"), Reply::wrong_arity("publish"));
        assert!(n.published.0.is_empty());
    }
}
