//! The command table: names, arity and key positions as Redis 7.0's `COMMAND INFO` reports
//! them, summaries from `COMMAND DOCS`, and the function that runs each command.

use bytes::Bytes;

use super::access::{View, Writer};
use super::args::eq_ic;
use super::reply::Reply;
use super::{expire, hashes, keys, lists, server, sets, strings, DATABASES};

/// A command's reply; `Err` holds an error reply so handlers can use `?`.
pub(crate) type Outcome = Result<Reply, Reply>;

/// How a command runs. Reads see an immutable `View` (so `Keyspace::read` can run them on a
/// shared reference); writes get a `Writer` and must go through the Raft log.
#[derive(Clone, Copy)]
pub(crate) enum Handler {
    Read(fn(&View<'_>, &[Bytes]) -> Outcome),
    Write(fn(&mut Writer<'_>, &[Bytes]) -> Outcome),
}

pub struct CommandSpec {
    /// Lowercase, as Redis prints it in errors.
    pub name: &'static str,
    /// Redis convention: `N` exactly N arguments (command name included), `-N` at least N.
    pub arity: i32,
    /// Mutates the keyspace or publishes: goes through the Raft log.
    pub replicated: bool,
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    pub group: &'static str,
    pub summary: &'static str,
    pub since: &'static str,
    pub(crate) handler: Handler,
}

impl std::fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSpec").field("name", &self.name).field("arity", &self.arity).finish_non_exhaustive()
    }
}

impl CommandSpec {
    pub fn check_arity(&self, argc: usize) -> Result<(), Reply> {
        if arity_matches(self.arity, argc) {
            Ok(())
        } else {
            Err(Reply::wrong_arity(self.name))
        }
    }

    /// The key arguments, from `first_key`/`last_key`/`step` (a negative `last_key` counts
    /// from the end, as in Redis' legacy key specs).
    pub fn keys<'a>(&self, argv: &'a [Bytes]) -> impl Iterator<Item = &'a Bytes> {
        let argc = argv.len() as i64;
        let first = i64::from(self.first_key);
        let last = match i64::from(self.last_key) {
            l if l < 0 => argc + l,
            l => l,
        };
        let step = usize::try_from(self.step).unwrap_or(1).max(1);
        let range = if first > 0 && last >= first { first as usize..(last as usize + 1).min(argv.len()) } else { 0..0 };
        argv.get(range).unwrap_or_default().iter().step_by(step)
    }
}

/// Redis's arity rule, shared with the connection commands the session answers itself.
pub fn arity_matches(arity: i32, argc: usize) -> bool {
    let argc = i64::try_from(argc).unwrap_or(i64::MAX);
    let arity = i64::from(arity);
    if arity >= 0 {
        argc == arity
    } else {
        argc >= -arity
    }
}

const W: bool = true;
const R: bool = false;

macro_rules! table {
    ($($name:literal, $arity:expr, $repl:ident, ($fk:expr, $lk:expr, $st:expr), $group:literal, $summary:literal, $since:literal, $handler:expr;)*) => {
        static COMMANDS: &[CommandSpec] = &[$(CommandSpec {
            name: $name, arity: $arity, replicated: $repl, first_key: $fk, last_key: $lk, step: $st,
            group: $group, summary: $summary, since: $since, handler: $handler,
        }),*];
    };
}

use Handler::{Read as Rd, Write as Wr};

table! {
    "rpush", -3, W, (1, 1, 1), "list", "Append one or multiple elements to a list", "1.0.0", Wr(lists::rpush);
    "lpush", -3, W, (1, 1, 1), "list", "Prepend one or multiple elements to a list", "1.0.0", Wr(lists::lpush);
    "rpushx", -3, W, (1, 1, 1), "list", "Append an element to a list, only if the list exists", "2.2.0", Wr(lists::rpushx);
    "lpushx", -3, W, (1, 1, 1), "list", "Prepend an element to a list, only if the list exists", "2.2.0", Wr(lists::lpushx);
    "lrange", 4, R, (1, 1, 1), "list", "Get a range of elements from a list", "1.0.0", Rd(lists::lrange);
    "llen", 2, R, (1, 1, 1), "list", "Get the length of a list", "1.0.0", Rd(lists::llen);
    "lindex", 3, R, (1, 1, 1), "list", "Get an element from a list by its index", "1.0.0", Rd(lists::lindex);
    "lset", 4, W, (1, 1, 1), "list", "Set the value of an element in a list by its index", "1.0.0", Wr(lists::lset);
    "lrem", 4, W, (1, 1, 1), "list", "Remove elements from a list", "1.0.0", Wr(lists::lrem);
    "linsert", 5, W, (1, 1, 1), "list", "Insert an element before or after another element in a list", "2.2.0", Wr(lists::linsert);
    "ltrim", 4, W, (1, 1, 1), "list", "Trim a list to the specified range", "1.0.0", Wr(lists::ltrim);
    "lpop", -2, W, (1, 1, 1), "list", "Remove and get the first elements in a list", "1.0.0", Wr(lists::lpop);
    "rpop", -2, W, (1, 1, 1), "list", "Remove and get the last elements in a list", "1.0.0", Wr(lists::rpop);
    "sadd", -3, W, (1, 1, 1), "set", "Add one or more members to a set", "1.0.0", Wr(sets::sadd);
    "srem", -3, W, (1, 1, 1), "set", "Remove one or more members from a set", "1.0.0", Wr(sets::srem);
    "smembers", 2, R, (1, 1, 1), "set", "Get all the members in a set", "1.0.0", Rd(sets::smembers);
    "sismember", 3, R, (1, 1, 1), "set", "Determine if a given value is a member of a set", "1.0.0", Rd(sets::sismember);
    "scard", 2, R, (1, 1, 1), "set", "Get the number of members in a set", "1.0.0", Rd(sets::scard);
    "sdiff", -2, R, (1, -1, 1), "set", "Subtract multiple sets", "1.0.0", Rd(sets::sdiff);
    "sinter", -2, R, (1, -1, 1), "set", "Intersect multiple sets", "1.0.0", Rd(sets::sinter);
    "sunion", -2, R, (1, -1, 1), "set", "Add multiple sets", "1.0.0", Rd(sets::sunion);
    "get", 2, R, (1, 1, 1), "string", "Get the value of a key", "1.0.0", Rd(strings::get);
    "set", -3, W, (1, 1, 1), "string", "Set the string value of a key", "1.0.0", Wr(strings::set);
    "setex", 4, W, (1, 1, 1), "string", "Set the value and expiration of a key", "2.0.0", Wr(strings::setex);
    "psetex", 4, W, (1, 1, 1), "string", "Set the value and expiration in milliseconds of a key", "2.6.0", Wr(strings::psetex);
    "setnx", 3, W, (1, 1, 1), "string", "Set the value of a key, only if the key does not exist", "1.0.0", Wr(strings::setnx);
    "mget", -2, R, (1, -1, 1), "string", "Get the values of all the given keys", "1.0.0", Rd(strings::mget);
    "mset", -3, W, (1, -1, 2), "string", "Set multiple keys to multiple values", "1.0.1", Wr(strings::mset);
    "incr", 2, W, (1, 1, 1), "string", "Increment the integer value of a key by one", "1.0.0", Wr(strings::incr);
    "decr", 2, W, (1, 1, 1), "string", "Decrement the integer value of a key by one", "1.0.0", Wr(strings::decr);
    "incrby", 3, W, (1, 1, 1), "string", "Increment the integer value of a key by the given amount", "1.0.0", Wr(strings::incrby);
    "decrby", 3, W, (1, 1, 1), "string", "Decrement the integer value of a key by the given number", "1.0.0", Wr(strings::decrby);
    "append", 3, W, (1, 1, 1), "string", "Append a value to a key", "2.0.0", Wr(strings::append);
    "strlen", 2, R, (1, 1, 1), "string", "Get the length of the value stored in a key", "2.2.0", Rd(strings::strlen);
    "del", -2, W, (1, -1, 1), "generic", "Delete a key", "1.0.0", Wr(keys::del);
    "unlink", -2, W, (1, -1, 1), "generic", "Delete a key asynchronously in another thread. Otherwise it is just as DEL, but non blocking.", "4.0.0", Wr(keys::del);
    "exists", -2, R, (1, -1, 1), "generic", "Determine if a key exists", "1.0.0", Rd(keys::exists);
    "rename", 3, W, (1, 2, 1), "generic", "Rename a key", "1.0.0", Wr(keys::rename);
    "renamenx", 3, W, (1, 2, 1), "generic", "Rename a key, only if the new key does not exist", "1.0.0", Wr(keys::renamenx);
    "type", 2, R, (1, 1, 1), "generic", "Determine the type stored at key", "1.0.0", Rd(keys::type_of);
    "keys", 2, R, (0, 0, 0), "generic", "Find all keys matching the given pattern", "1.0.0", Rd(keys::keys);
    "scan", -2, R, (0, 0, 0), "generic", "Incrementally iterate the keys space", "2.8.0", Rd(keys::scan);
    "dbsize", 1, R, (0, 0, 0), "server", "Return the number of keys in the selected database", "1.0.0", Rd(keys::dbsize);
    "expire", -3, W, (1, 1, 1), "generic", "Set a key's time to live in seconds", "1.0.0", Wr(expire::expire);
    "pexpire", -3, W, (1, 1, 1), "generic", "Set a key's time to live in milliseconds", "2.6.0", Wr(expire::pexpire);
    "expireat", -3, W, (1, 1, 1), "generic", "Set the expiration for a key as a UNIX timestamp", "1.2.0", Wr(expire::expireat);
    "pexpireat", -3, W, (1, 1, 1), "generic", "Set the expiration for a key as a UNIX timestamp specified in milliseconds", "2.6.0", Wr(expire::pexpireat);
    "ttl", 2, R, (1, 1, 1), "generic", "Get the time to live for a key in seconds", "1.0.0", Rd(expire::ttl);
    "pttl", 2, R, (1, 1, 1), "generic", "Get the time to live for a key in milliseconds", "2.6.0", Rd(expire::pttl);
    "persist", 2, W, (1, 1, 1), "generic", "Remove the expiration from a key", "2.2.0", Wr(expire::persist);
    "hset", -4, W, (1, 1, 1), "hash", "Set the string value of a hash field", "2.0.0", Wr(hashes::hset);
    "hsetnx", 4, W, (1, 1, 1), "hash", "Set the value of a hash field, only if the field does not exist", "2.0.0", Wr(hashes::hsetnx);
    "hget", 3, R, (1, 1, 1), "hash", "Get the value of a hash field", "2.0.0", Rd(hashes::hget);
    "hmget", -3, R, (1, 1, 1), "hash", "Get the values of all the given hash fields", "2.0.0", Rd(hashes::hmget);
    "hgetall", 2, R, (1, 1, 1), "hash", "Get all the fields and values in a hash", "2.0.0", Rd(hashes::hgetall);
    "hdel", -3, W, (1, 1, 1), "hash", "Delete one or more hash fields", "2.0.0", Wr(hashes::hdel);
    "hexists", 3, R, (1, 1, 1), "hash", "Determine if a hash field exists", "2.0.0", Rd(hashes::hexists);
    "hmset", -4, W, (1, 1, 1), "hash", "Set multiple hash fields to multiple values", "2.0.0", Wr(hashes::hmset);
    "hlen", 2, R, (1, 1, 1), "hash", "Get the number of fields in a hash", "2.0.0", Rd(hashes::hlen);
    "hkeys", 2, R, (1, 1, 1), "hash", "Get all the fields in a hash", "2.0.0", Rd(hashes::hkeys);
    "hvals", 2, R, (1, 1, 1), "hash", "Get all the values in a hash", "2.0.0", Rd(hashes::hvals);
    "hincrby", 4, W, (1, 1, 1), "hash", "Increment the integer value of a hash field by the given number", "2.0.0", Wr(hashes::hincrby);
    "publish", 3, W, (0, 0, 0), "pubsub", "Post a message to a channel", "2.0.0", Wr(server::publish);
    "flushdb", -1, W, (0, 0, 0), "server", "Remove all keys from the current database", "1.0.0", Wr(server::flushdb);
    "flushall", -1, W, (0, 0, 0), "server", "Remove all keys from all databases", "1.0.0", Wr(server::flushall);
}

pub fn command_table() -> &'static [CommandSpec] {
    COMMANDS
}

/// The core's command named `name`, any case.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| c.name.as_bytes().eq_ignore_ascii_case(name))
}

/// The command `argv` names, with its arity checked: what Redis does before running anything.
pub(crate) fn resolve(argv: &[Bytes]) -> Result<&'static CommandSpec, Reply> {
    let spec = argv.first().and_then(|name| lookup(name)).ok_or_else(|| unknown_command(argv))?;
    spec.check_arity(argv.len())?;
    Ok(spec)
}

/// Redis 7.0's reply to an unknown command, byte for byte: the name cut at 128 bytes, then
/// quoted arguments while the list is under 128 bytes (each cut to fit), C strings ending at a
/// NUL, CR and LF turned into spaces so the error stays one line. Non-UTF-8 bytes become
/// U+FFFD because `Reply::Error` holds a `String`.
pub fn unknown_command(argv: &[Bytes]) -> Reply {
    fn c_str(b: &[u8], max: usize) -> &[u8] {
        let b = b.split(|&c| c == 0).next().unwrap_or_default();
        &b[..b.len().min(max)]
    }
    const LIMIT: usize = 128;
    let name = argv.first().map_or(&b""[..], |n| c_str(n, LIMIT));
    let mut args = Vec::new();
    for arg in argv.iter().skip(1) {
        if args.len() >= LIMIT {
            break;
        }
        args.push(b'\'');
        args.extend_from_slice(c_str(arg, LIMIT - (args.len() - 1)));
        args.extend_from_slice(b"' ");
    }
    let mut text = b"ERR unknown command '".to_vec();
    text.extend_from_slice(name);
    text.extend_from_slice(b"', with args beginning with: ");
    text.extend_from_slice(&args);
    for c in &mut text {
        if *c == b'\r' || *c == b'\n' {
            *c = b' ';
        }
    }
    Reply::Error(String::from_utf8_lossy(&text).into_owned())
}

/// `SELECT` inside a transaction: `None` if `argv` is not a SELECT, else the new database or
/// Redis' error. The connection handles SELECT outside transactions; it may use this too.
pub fn select(argv: &[Bytes]) -> Option<Result<usize, Reply>> {
    if !eq_ic(argv.first()?, "select") {
        return None;
    }
    Some(select_index(argv))
}

/// `PING`/`ECHO` queued in a transaction: they touch no key, but Redis answers them in order
/// with the rest at `EXEC`, so the core does too. `None` if `argv` is neither.
pub fn ping_or_echo(argv: &[Bytes]) -> Option<Reply> {
    let name = argv.first()?;
    if eq_ic(name, "ping") {
        Some(match argv {
            [_] => Reply::Status("PONG".into()),
            [_, message] => Reply::Bulk(message.clone()),
            _ => Reply::wrong_arity("ping"),
        })
    } else if eq_ic(name, "echo") {
        Some(match argv {
            [_, message] => Reply::Bulk(message.clone()),
            _ => Reply::wrong_arity("echo"),
        })
    } else {
        None
    }
}

fn select_index(argv: &[Bytes]) -> Result<usize, Reply> {
    let [_, index] = argv else {
        return Err(Reply::wrong_arity("select"));
    };
    let out_of_int = || Reply::err("ERR value is out of range, value must between -2147483648 and 2147483647");
    let index = i32::try_from(super::args::int_arg(index)?).map_err(|_| out_of_int())?;
    usize::try_from(index).ok().filter(|&i| i < DATABASES).ok_or_else(super::store::db_out_of_range)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(items: &[&[u8]]) -> Vec<Bytes> {
        items.iter().map(|a| Bytes::copy_from_slice(a)).collect()
    }

    #[test]
    fn unknown_command_text_matches_redis() {
        assert_eq!(
            unknown_command(&args(&[b"foo"])),
            Reply::err("ERR unknown command 'foo', with args beginning with: ")
        );
        assert_eq!(
            unknown_command(&args(&[b"FOO", b"a", b"b"])),
            Reply::err("ERR unknown command 'FOO', with args beginning with: 'a' 'b' ")
        );
        // Byte-for-byte what redis-server 7.0.15 answered to these.
        let long_name = [b'x'; 200];
        assert_eq!(
            unknown_command(&args(&[&long_name, b"a"])),
            Reply::err(format!("ERR unknown command '{}', with args beginning with: 'a' ", "x".repeat(128)))
        );
        let (a, b) = ([b'a'; 100], [b'b'; 50]);
        assert_eq!(
            unknown_command(&args(&[b"foo", &a, &b, b"c"])),
            Reply::err(format!(
                "ERR unknown command 'foo', with args beginning with: '{}' '{}' ",
                "a".repeat(100),
                "b".repeat(25)
            ))
        );
        assert_eq!(
            unknown_command(&args(&[b"foo", b"a\r\nb", b"c\0d", b"e"])),
            Reply::err("ERR unknown command 'foo', with args beginning with: 'a  b' 'c' 'e' ")
        );
        assert_eq!(
            unknown_command(&args(&[b"fo\0o", b"a"])),
            Reply::err("ERR unknown command 'fo', with args beginning with: 'a' ")
        );
        let many: Vec<&[u8]> = std::iter::once(&b"foo"[..]).chain(std::iter::repeat_n(&b"ab"[..], 40)).collect();
        assert_eq!(
            unknown_command(&args(&many)),
            Reply::err(format!("ERR unknown command 'foo', with args beginning with: {}", "'ab' ".repeat(26)))
        );
    }

    #[test]
    fn lookup_and_arity() {
        assert_eq!(lookup(b"LRange").map(|c| c.name), Some("lrange"));
        assert!(lookup(b"select").is_none(), "connection commands are not the core's");
        assert!(lookup(b"").is_none());
        let lrange = lookup(b"lrange").expect("lrange");
        assert_eq!(lrange.check_arity(3), Err(Reply::err("ERR wrong number of arguments for 'lrange' command")));
        assert_eq!(lrange.check_arity(4), Ok(()));
        let del = lookup(b"del").expect("del");
        assert!(del.check_arity(1).is_err());
        assert!(del.check_arity(9).is_ok());
    }

    #[test]
    fn table_is_consistent() {
        let mut names: Vec<_> = command_table().iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), command_table().len(), "names are unique");
        for spec in command_table() {
            assert_eq!(spec.name, spec.name.to_lowercase());
            assert_eq!(spec.replicated, matches!(spec.handler, Handler::Write(_)), "{}", spec.name);
            assert!(["list", "set", "string", "hash", "generic", "pubsub", "server"].contains(&spec.group));
        }
    }

    #[test]
    fn key_positions() {
        let keys = |name: &str, argv: &[&[u8]]| -> Vec<Bytes> {
            lookup(name.as_bytes()).expect(name).keys(&args(argv)).cloned().collect()
        };
        assert_eq!(keys("mget", &[b"mget", b"a", b"b"]), args(&[b"a", b"b"]));
        assert_eq!(keys("mset", &[b"mset", b"a", b"1", b"b", b"2"]), args(&[b"a", b"b"]));
        assert_eq!(keys("rename", &[b"rename", b"a", b"b"]), args(&[b"a", b"b"]));
        assert_eq!(keys("get", &[b"get", b"a"]), args(&[b"a"]));
        assert!(keys("keys", &[b"keys", b"*"]).is_empty());
    }

    #[test]
    fn select_parsing() {
        assert_eq!(select(&args(&[b"get", b"1"])), None);
        assert_eq!(select(&args(&[b"SELECT", b"15"])), Some(Ok(15)));
        assert_eq!(select(&args(&[b"select", b"16"])), Some(Err(Reply::err("ERR DB index is out of range"))));
        assert_eq!(select(&args(&[b"select", b"-1"])), Some(Err(Reply::err("ERR DB index is out of range"))));
        assert_eq!(
            select(&args(&[b"select", b"4294967296"])),
            Some(Err(Reply::err("ERR value is out of range, value must between -2147483648 and 2147483647")))
        );
        assert_eq!(select(&args(&[b"select", b"x"])), Some(Err(Reply::not_integer())));
        assert_eq!(select(&args(&[b"select"])), Some(Err(Reply::wrong_arity("select"))));
    }
}
