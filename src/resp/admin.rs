//! Server-introspection replies: INFO, HELLO, CLIENT, COMMAND.
//!
//! Client libraries probe these on connect (node_redis's ready check needs INFO with
//! `loading:0`; redis-py 8 sends HELLO 3 and CLIENT SETINFO; redis-cli 7 asks COMMAND DOCS),
//! so they answer in Redis's shapes even where the content is ours (the `# Raft` section).

use std::fmt::Write;

use bytes::Bytes;

use super::encode::Protocol;
use super::server::Shared;
use super::session::Session;
use crate::keyspace::{self, Reply, DATABASES};

/// The Redis version we answer as: the one whose replies our differential tests match.
pub const REDIS_VERSION: &str = "7.0.15";

/// Connection-level commands answered by the session rather than the pure core, with their
/// arity and summary for COMMAND.
const CONNECTION_COMMANDS: &[(&str, i32, &str)] = &[
    ("auth", -2, "Authenticates the connection."),
    ("client", -2, "A container for client connection commands."),
    ("command", -1, "Returns detailed information about all commands."),
    ("discard", 1, "Discards a transaction."),
    ("echo", 2, "Returns the given string."),
    ("exec", 1, "Executes all commands in a transaction."),
    ("hello", -1, "Handshakes with the Redis server."),
    ("info", -1, "Returns information and statistics about the server."),
    ("multi", 1, "Starts a transaction."),
    ("ping", -1, "Returns the server's liveliness response."),
    ("psubscribe", -2, "Listens for messages published to channels that match one or more patterns."),
    ("punsubscribe", -1, "Stops listening to messages published to channels that match one or more patterns."),
    ("quit", -1, "Closes the connection."),
    ("readonly", 1, "Serves reads from this node's replica (fast, possibly stale)."),
    ("readwrite", 1, "Serves reads linearizably again (the default)."),
    ("reset", 1, "Resets the connection."),
    ("role", 1, "Returns the replication role (and the node's Raft view)."),
    ("select", 2, "Changes the selected database."),
    ("subscribe", -2, "Listens for messages published to channels."),
    ("unsubscribe", -1, "Stops listening to messages posted to channels."),
    ("unwatch", 1, "Forgets about watched keys of a transaction."),
    ("wait", 3, "Waits until this many other nodes applied the connection's last write."),
    ("watch", -2, "Monitors changes to keys to determine the execution of a transaction."),
];

/// The arity of a command the session answers itself, `None` if `name` is not one.
pub fn connection_arity(name: &str) -> Option<i32> {
    CONNECTION_COMMANDS.iter().find(|(n, _, _)| *n == name).map(|(_, arity, _)| *arity)
}

/// CLIENT SETNAME's and HELLO SETNAME's rule: names show up in `CLIENT LIST`'s space-separated
/// output, so they may not contain spaces or control characters.
pub fn check_client_name(name: &[u8]) -> Result<(), Reply> {
    if name.iter().any(|b| *b <= b' ' || *b > b'~') {
        return Err(Reply::err("ERR Client names cannot contain spaces, newlines or special characters."));
    }
    Ok(())
}

fn status(s: &str) -> Reply {
    Reply::Status(s.into())
}

pub fn hello_reply(id: u64, proto: Protocol) -> Reply {
    let proto_n = match proto {
        Protocol::Resp2 => 2,
        Protocol::Resp3 => 3,
    };
    Reply::Map(vec![
        (Reply::bulk("server"), Reply::bulk("redis")),
        (Reply::bulk("version"), Reply::bulk(REDIS_VERSION)),
        (Reply::bulk("proto"), Reply::Int(proto_n)),
        (Reply::bulk("id"), Reply::Int(id as i64)),
        (Reply::bulk("mode"), Reply::bulk("standalone")),
        (Reply::bulk("role"), Reply::bulk("master")),
        (Reply::bulk("modules"), Reply::Array(vec![])),
    ])
}

/// CLIENT ID | GETNAME | SETNAME name | INFO. `SETINFO` (Redis 7.2) is unknown, as in the
/// Redis 7.0 that INFO advertises; clients that send it (redis-py, go-redis, node-redis)
/// ignore the error, as they must with any 7.0 server.
pub fn client(session: &mut Session, argv: &[Bytes]) -> Reply {
    let Some(sub) = argv.get(1) else {
        return Reply::err("ERR wrong number of arguments for 'client' command");
    };
    let sub = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let arity = |n: usize| -> Result<(), Reply> {
        if argv.len() == n {
            Ok(())
        } else {
            Err(Reply::err(format!("ERR wrong number of arguments for 'client|{sub}' command")))
        }
    };
    let res = match sub.as_str() {
        "id" => arity(2).map(|_| Reply::Int(session.id() as i64)),
        "getname" => arity(2).map(|_| session.name.clone().map(Reply::Bulk).unwrap_or(Reply::Nil)),
        "setname" => arity(3).and_then(|_| {
            let name = &argv[2];
            check_client_name(name)?;
            session.name = (!name.is_empty()).then(|| name.clone());
            Ok(Reply::ok())
        }),
        "info" => arity(2).map(|_| {
            let name = session.name.as_ref().map(|n| String::from_utf8_lossy(n).into_owned()).unwrap_or_default();
            Reply::Verbatim(format!("id={} name={} db={}\n", session.id(), name, session.db()))
        }),
        _ => {
            Err(Reply::err(format!("ERR unknown subcommand '{}'. Try CLIENT HELP.", String::from_utf8_lossy(&argv[1]))))
        }
    };
    res.unwrap_or_else(|e| e)
}

fn all_commands() -> impl Iterator<Item = (&'static str, i32, bool, (i32, i32, i32), &'static str, &'static str)> {
    let core = keyspace::commands::command_table()
        .iter()
        .map(|c| (c.name, c.arity, c.replicated, (c.first_key, c.last_key, c.step), c.group, c.summary));
    let conn = CONNECTION_COMMANDS.iter().map(|(n, a, s)| (*n, *a, false, (0, 0, 0), "connection", *s));
    core.chain(conn)
}

/// COMMAND, COMMAND COUNT, COMMAND INFO name…, COMMAND DOCS [name…].
pub fn command(argv: &[Bytes]) -> Reply {
    let info = |(name, arity, write, (first, last, step), _group, _summary): (
        &str,
        i32,
        bool,
        (i32, i32, i32),
        &str,
        &str,
    )| {
        let flag = if write { "write" } else { "readonly" };
        Reply::Array(vec![
            Reply::bulk(name.to_string()),
            Reply::Int(arity as i64),
            Reply::Set(vec![status(flag)]),
            Reply::Int(first as i64),
            Reply::Int(last as i64),
            Reply::Int(step as i64),
        ])
    };
    let wanted = |name: &str| argv.len() <= 2 || argv[2..].iter().any(|a| a.eq_ignore_ascii_case(name.as_bytes()));
    let sub = argv.get(1).map(|s| String::from_utf8_lossy(s).to_ascii_lowercase());
    match sub.as_deref() {
        None => Reply::Array(all_commands().map(info).collect()),
        Some("count") => Reply::Int(all_commands().count() as i64),
        Some("info") => Reply::Array(all_commands().filter(|c| wanted(c.0)).map(info).collect()),
        Some("docs") => Reply::Map(
            all_commands()
                .filter(|c| wanted(c.0))
                .map(|(name, .., group, summary)| {
                    let doc = Reply::Map(vec![
                        (Reply::bulk("summary"), Reply::bulk(summary.to_string())),
                        (Reply::bulk("group"), Reply::bulk(group.to_string())),
                    ]);
                    (Reply::bulk(name.to_string()), doc)
                })
                .collect(),
        ),
        Some(other) => Reply::err(format!("ERR unknown subcommand '{other}'. Try COMMAND HELP.")),
    }
}

/// ROLE: Redis's shape (`master` with replicas, or `slave` with its master), from the Raft
/// view: the leader answers `master`, every other node `slave` of the leader.
pub fn role(shared: &Shared) -> Reply {
    let status = shared.node.status();
    let addr = |id: u64| status.members.iter().find(|(m, ..)| *m == id).map(|(_, n, _)| n.resp.clone());
    let split = |a: String| -> (String, i64) {
        match a.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().unwrap_or(0)),
            None => (a, 0),
        }
    };
    if status.role == "leader" {
        let replicas = status
            .members
            .iter()
            .filter(|(id, ..)| *id != status.id)
            .map(|(_, n, _)| {
                let (host, port) = split(n.resp.clone());
                Reply::Array(vec![
                    Reply::bulk(host),
                    Reply::bulk(port.to_string()),
                    Reply::bulk(status.applied_index.to_string()),
                ])
            })
            .collect();
        return Reply::Array(vec![
            Reply::bulk("master"),
            Reply::Int(status.applied_index as i64),
            Reply::Array(replicas),
        ]);
    }
    let (host, port) = status.leader.and_then(addr).map(split).unwrap_or_default();
    let state = if status.leader.is_some() { "connected" } else { "connect" };
    Reply::Array(vec![
        Reply::bulk("slave"),
        Reply::bulk(host),
        Reply::Int(port),
        Reply::bulk(state),
        Reply::Int(status.applied_index as i64),
    ])
}

/// INFO [section…]: Redis's layout plus a `# Raft` section with this node's view.
pub fn info(shared: &Shared, argv: &[Bytes]) -> Reply {
    let wanted: Vec<String> = argv[1..].iter().map(|a| String::from_utf8_lossy(a).to_ascii_lowercase()).collect();
    let show = |s: &str| {
        wanted.is_empty() || wanted.iter().any(|w| w == s || w == "all" || w == "everything" || w == "default")
    };
    let status = shared.node.status();
    let mut out = String::new();
    if show("server") {
        let _ = write!(
            out,
            "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:standalone\r\nhipache_raft_version:{}\r\nos:{}\r\narch_bits:64\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::process::id(),
            shared.port,
            shared.started.elapsed().as_secs(),
        );
    }
    if show("clients") {
        let (channels, patterns) = shared.node.pubsub().counts();
        let _ = write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\npubsub_channels:{channels}\r\npubsub_patterns:{patterns}\r\n\r\n",
            shared.connected.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    if show("persistence") {
        out.push_str("# Persistence\r\nloading:0\r\naof_enabled:0\r\nrdb_changes_since_last_save:0\r\n\r\n");
    }
    if show("replication") {
        let role = if status.role == "leader" { "master" } else { "slave" };
        let _ = write!(
            out,
            "# Replication\r\nrole:{role}\r\nconnected_slaves:{}\r\n\r\n",
            status.members.len().saturating_sub(1)
        );
    }
    if show("raft") {
        let leader = status.leader.map(|l| l.to_string()).unwrap_or_default();
        let _ = write!(
            out,
            "# Raft\r\nraft_node_id:{}\r\nraft_role:{}\r\nraft_term:{}\r\nraft_leader:{leader}\r\nraft_last_log_index:{}\r\nraft_commit_index:{}\r\nraft_applied_index:{}\r\nraft_purged_index:{}\r\nraft_writes_in_flight:{}\r\nraft_members:{}\r\n\r\n",
            status.id,
            status.role,
            status.term,
            status.last_log_index,
            status.commit_index,
            status.applied_index,
            status.purged_index.map(|p| p.to_string()).unwrap_or_default(),
            status.writes_in_flight,
            status.members.iter().map(|(id, n, voter)| format!("{id}@{}{}", n.resp, if *voter { "" } else { "(learner)" })).collect::<Vec<_>>().join(","),
        );
    }
    if show("keyspace") {
        out.push_str("# Keyspace\r\n");
        let ks = shared.node.local();
        for db in 0..DATABASES {
            let (keys, expires) = ks.db_stats(db);
            if keys > 0 {
                let _ = write!(out, "db{db}:keys={keys},expires={expires},avg_ttl=0\r\n");
            }
        }
        out.push_str("\r\n");
    }
    // Redis ends the text with one CRLF, not a blank line.
    if out.ends_with("\r\n\r\n") {
        out.truncate(out.len() - 2);
    }
    Reply::Verbatim(out)
}
