//! One RESP connection's state and command dispatch.
//!
//! Connection-level commands (AUTH, HELLO, SELECT, MULTI/EXEC, WATCH, pub/sub, INFO …) are
//! answered here; keyspace commands go to the pure core through the node: replicated ones
//! through the log (a pipeline's consecutive writes together, `MULTI … EXEC` as ONE entry),
//! reads after a ReadIndex check so they are linearizable.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use subtle::ConstantTimeEq;

use super::admin;
use super::encode::{encode, Protocol};
use super::server::Shared;
use crate::inject::{injected, Bug};
use crate::keyspace::{self, Reply, DATABASES};
use crate::pubsub::{ConnId, Message, Sender};
use crate::raft::{now_ms, NodeError, Op, WatchedKey};

/// Whether the connection goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Close,
}

/// Commands queued between MULTI and EXEC.
struct Transaction {
    queued: Vec<Vec<Bytes>>,
    /// A command failed to queue (unknown, wrong arity): EXEC answers EXECABORT.
    poisoned: bool,
}

pub struct Session {
    id: ConnId,
    shared: Arc<Shared>,
    messages: Sender,
    proto: Protocol,
    db: usize,
    authenticated: bool,
    /// Authenticated as a read-only user (`cluster.users`): writes are refused.
    readonly: bool,
    /// The `cluster.users` name authenticated as; `None` for `default`.
    user: Option<String>,
    pub(super) name: Option<Bytes>,
    tx: Option<Transaction>,
    watched: Vec<WatchedKey>,
    /// READONLY: reads come from this node's replica (fast, possibly stale).
    local_reads: bool,
    /// Log index of this connection's last write, for WAIT.
    last_write: u64,
    channels: BTreeSet<Bytes>,
    patterns: BTreeSet<Bytes>,
}

fn lower(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_lowercase()
}

fn arity_error(name: &str) -> Reply {
    Reply::err(format!("ERR wrong number of arguments for '{name}' command"))
}

/// Raft-level failures as Redis-style errors: `-TRYAGAIN` when retrying is safe and may
/// succeed (election under way), `-ERR` with the reason otherwise.
fn node_error(e: NodeError) -> Reply {
    match e {
        NodeError::NoLeader | NodeError::NotLeader { .. } => {
            Reply::err("TRYAGAIN no Raft leader is available right now, retry shortly")
        }
        other => Reply::err(format!("ERR {other}")),
    }
}

/// Parses a database index the way SELECT does.
fn parse_db(arg: &[u8]) -> Result<usize, Reply> {
    let n: i64 = std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Reply::err("ERR value is not an integer or out of range"))?;
    if n < 0 || n >= DATABASES as i64 {
        return Err(Reply::err("ERR DB index is out of range"));
    }
    Ok(n as usize)
}

impl Session {
    pub(super) fn new(id: ConnId, shared: Arc<Shared>, messages: Sender) -> Session {
        let authenticated = shared.opts.requirepass.is_none();
        Session {
            id,
            shared,
            messages,
            proto: Protocol::Resp2,
            db: 0,
            authenticated,
            readonly: false,
            user: None,
            name: None,
            tx: None,
            watched: Vec::new(),
            local_reads: false,
            last_write: 0,
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
        }
    }

    pub fn protocol(&self) -> Protocol {
        self.proto
    }

    pub(super) fn id(&self) -> ConnId {
        self.id
    }

    pub(super) fn db(&self) -> usize {
        self.db
    }

    fn subscriptions(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Runs one command and appends its reply (or replies, for SUBSCRIBE) to `out`.
    pub async fn handle(&mut self, argv: Vec<Bytes>, out: &mut BytesMut) -> Flow {
        let Some(first) = argv.first() else { return Flow::Continue };
        let name = lower(first);
        if let Some(rejected) = self.reject(&name, &argv) {
            encode(&rejected, self.proto, out);
            return Flow::Continue;
        }
        let mut reply = |r: Reply| encode(&r, self.proto, out);
        if !self.authenticated && !matches!(name.as_str(), "auth" | "hello" | "quit" | "reset") {
            reply(Reply::err("NOAUTH Authentication required."));
            return Flow::Continue;
        }
        if self.readonly && keyspace::lookup(first).is_some_and(|spec| spec.replicated) {
            if let Some(tx) = self.tx.as_mut() {
                tx.poisoned = true;
            }
            let user = self.user.as_deref().unwrap_or("default");
            reply(Reply::err(format!("NOPERM User {user} has no permissions to run the '{name}' command")));
            return Flow::Continue;
        }
        if self.proto == Protocol::Resp2
            && self.subscriptions() > 0
            && !matches!(
                name.as_str(),
                "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" | "ping" | "quit" | "reset"
            )
        {
            reply(Reply::err(format!(
                "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
            )));
            return Flow::Continue;
        }
        if self.tx.is_some() && !matches!(name.as_str(), "exec" | "discard" | "multi" | "watch" | "quit" | "reset") {
            let r = self.queue(&name, argv);
            encode(&r, self.proto, out);
            return Flow::Continue;
        }
        let r = match name.as_str() {
            "quit" => {
                encode(&Reply::ok(), self.proto, out);
                return Flow::Close;
            }
            "reset" => self.reset(),
            "subscribe" | "psubscribe" => return self.subscribe(&name, &argv, out),
            "unsubscribe" | "punsubscribe" => return self.unsubscribe(&name, &argv, out),
            "ping" => self.ping(&argv),
            "echo" => match argv.len() {
                2 => Reply::Bulk(argv[1].clone()),
                _ => arity_error("echo"),
            },
            "select" => match argv.len() {
                2 => match parse_db(&argv[1]) {
                    Ok(db) => {
                        self.db = db;
                        Reply::ok()
                    }
                    Err(e) => e,
                },
                _ => arity_error("select"),
            },
            "auth" => self.auth(&argv[1..]),
            "hello" => self.hello(&argv[1..]),
            "client" => admin::client(self, &argv),
            "command" => admin::command(&argv),
            "info" => admin::info(&self.shared, &argv),
            "multi" => self.multi(),
            "exec" => self.exec().await,
            "discard" => self.discard(),
            "watch" => self.watch(&argv).await,
            "readonly" => {
                self.local_reads = true;
                Reply::ok()
            }
            "readwrite" => {
                self.local_reads = false;
                Reply::ok()
            }
            "wait" => self.wait(&argv).await,
            "role" => admin::role(&self.shared),
            "unwatch" => {
                self.watched.clear();
                Reply::ok()
            }
            _ => self.keyspace_command(argv).await,
        };
        encode(&r, self.proto, out);
        Flow::Continue
    }

    /// Runs the commands a client had pipelined, in order, appending each reply to `out`.
    /// Consecutive plain writes (outside MULTI, not refused) are proposed together through
    /// [`RaftNode::write_many`](crate::raft::RaftNode::write_many): a pipeline of 1,000 RPUSH
    /// costs a Raft round or two, not 1,000, and a client's read timeout no longer fires
    /// halfway through (go-redis then re-sent the whole pipeline, duplicating backends). Any
    /// other command first waits for the writes before it, so a read in the pipeline sees
    /// them and MULTI/WATCH/SELECT behave exactly as when sent one at a time.
    pub async fn handle_pipeline(&mut self, commands: Vec<Vec<Bytes>>, out: &mut BytesMut) -> Flow {
        let mut writes = Vec::new();
        for argv in commands {
            if self.is_plain_write(&argv) {
                writes.push(argv);
                continue;
            }
            self.propose_writes(std::mem::take(&mut writes), out).await;
            if self.handle(argv, out).await == Flow::Close {
                return Flow::Close;
            }
        }
        self.propose_writes(writes, out).await;
        Flow::Continue
    }

    /// Whether `handle` would send `argv` straight to the log as one `Op::Command`.
    fn is_plain_write(&self, argv: &[Bytes]) -> bool {
        let Some(spec) = argv.first().and_then(|name| keyspace::lookup(name)) else { return false };
        spec.replicated
            && keyspace::commands::arity_matches(spec.arity, argv.len())
            && self.authenticated
            && !self.readonly
            && self.tx.is_none()
            && !(self.proto == Protocol::Resp2 && self.subscriptions() > 0)
    }

    async fn propose_writes(&mut self, writes: Vec<Vec<Bytes>>, out: &mut BytesMut) {
        if writes.is_empty() {
            return;
        }
        for r in self.write_all(writes).await {
            encode(&r, self.proto, out);
        }
    }

    /// Writes through the log, in order, one reply each; remembers the last index for WAIT.
    async fn write_all(&mut self, writes: Vec<Vec<Bytes>>) -> Vec<Reply> {
        let db = self.db as u8;
        let ops = writes.into_iter().map(|argv| Op::Command { db, argv }).collect();
        let replies = self.shared.node.write_many(ops).await;
        replies
            .into_iter()
            .map(|r| match r {
                Ok(w) => {
                    self.last_write = self.last_write.max(w.index);
                    w.reply
                }
                Err(e) => node_error(e),
            })
            .collect()
    }

    /// Redis refuses an unknown command or a wrong argument count before anything else, even
    /// before NOAUTH. Inside MULTI the refusal dooms the transaction, and a refused EXEC
    /// discards it. Commands answered by this session must be listed in
    /// `admin::CONNECTION_COMMANDS`, or they are refused here as unknown.
    fn reject(&mut self, name: &str, argv: &[Bytes]) -> Option<Reply> {
        let arity = match keyspace::lookup(&argv[0]) {
            Some(spec) => Some(spec.arity),
            None => admin::connection_arity(name),
        };
        let refusal = match arity {
            None => keyspace::unknown_command(argv),
            Some(arity) if keyspace::commands::arity_matches(arity, argv.len()) => return None,
            Some(_) if name == "exec" => {
                self.tx = None;
                self.watched.clear();
                return Some(Reply::err(
                    "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command",
                ));
            }
            Some(_) => arity_error(name),
        };
        if let Some(tx) = self.tx.as_mut() {
            tx.poisoned = true;
        }
        Some(refusal)
    }

    async fn keyspace_command(&mut self, argv: Vec<Bytes>) -> Reply {
        let Some(spec) = keyspace::lookup(&argv[0]) else { return keyspace::unknown_command(&argv) };
        if spec.replicated {
            return self.write_all(vec![argv]).await.pop().unwrap_or_else(|| Reply::err("ERR the write got no reply"));
        }
        let node = &self.shared.node;
        if self.local_reads || injected(Bug::LocalReads) {
            return node.local().read(self.db, &argv, now_ms());
        }
        node.read(self.db, argv).await.unwrap_or_else(node_error)
    }

    /// WAIT numreplicas timeout: how many OTHER nodes have applied this connection's last
    /// write (Redis counts replicas that acknowledged it; ours have applied it, so their
    /// proxies route it).
    async fn wait(&self, argv: &[Bytes]) -> Reply {
        if argv.len() != 3 {
            return arity_error("wait");
        }
        let int = |a: &Bytes| std::str::from_utf8(a).ok().and_then(|s| s.parse::<i64>().ok());
        let (Some(count), Some(timeout)) = (int(&argv[1]), int(&argv[2])) else {
            return Reply::err("ERR value is not an integer or out of range");
        };
        if timeout < 0 {
            return Reply::err("ERR timeout is negative");
        }
        let timeout = (timeout > 0).then(|| std::time::Duration::from_millis(timeout as u64));
        let n = self.shared.node.replicas_applied(self.last_write, count.max(0) as usize, timeout).await;
        Reply::Int(n as i64)
    }

    /// RESET (Redis 6.2): what connection pools send before reusing a connection. Back to a
    /// fresh connection's state: no transaction or watched keys, no subscriptions, database 0,
    /// RESP2, linearizable reads, no name, and authenticated only when no password is set.
    fn reset(&mut self) -> Reply {
        self.tx = None;
        self.watched.clear();
        self.close();
        self.db = 0;
        self.proto = Protocol::Resp2;
        self.local_reads = false;
        self.name = None;
        self.authenticated = self.shared.opts.requirepass.is_none();
        (self.readonly, self.user) = (false, None);
        Reply::Status("RESET".into())
    }

    fn ping(&self, argv: &[Bytes]) -> Reply {
        let in_pubsub = self.proto == Protocol::Resp2 && self.subscriptions() > 0;
        match (argv.len(), in_pubsub) {
            (1, false) => Reply::Status("PONG".into()),
            (2, false) => Reply::Bulk(argv[1].clone()),
            (1, true) => Reply::Array(vec![Reply::bulk("pong"), Reply::bulk("")]),
            (2, true) => Reply::Array(vec![Reply::bulk("pong"), Reply::Bulk(argv[1].clone())]),
            _ => arity_error("ping"),
        }
    }

    fn check_password(&mut self, user: Option<&Bytes>, pass: &Bytes) -> Result<(), Reply> {
        if let Some(checked) = user.and_then(|u| self.check_user(u, pass)) {
            return checked;
        }
        let pass_ok = match &self.shared.opts.requirepass {
            Some(expected) => bool::from(pass.as_ref().ct_eq(expected.as_bytes())),
            // Without requirepass Redis's `default` user is `nopass`: `AUTH default <any>`
            // succeeds, only the one-argument form is refused as a likely misconfiguration.
            None if user.is_none() => {
                return Err(Reply::err(
                    "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                ))
            }
            None => true,
        };
        let user_ok = user.is_none_or(|u| u.as_ref() == b"default");
        if user_ok && pass_ok {
            (self.authenticated, self.readonly, self.user) = (true, false, None);
            Ok(())
        } else {
            Err(Reply::err("WRONGPASS invalid username-password pair or user is disabled."))
        }
    }

    /// `AUTH <user> <pass>` for a user of `cluster.users`; `None` when no such user exists.
    fn check_user(&mut self, user: &[u8], pass: &[u8]) -> Option<Result<(), Reply>> {
        let found = self.shared.opts.users.iter().find(|u| u.name.as_bytes() == user)?;
        if !bool::from(pass.ct_eq(found.password.as_bytes())) {
            return Some(Err(Reply::err("WRONGPASS invalid username-password pair or user is disabled.")));
        }
        (self.authenticated, self.readonly, self.user) = (true, found.readonly, Some(found.name.clone()));
        Some(Ok(()))
    }

    fn auth(&mut self, args: &[Bytes]) -> Reply {
        let res = match args {
            [pass] => self.check_password(None, pass),
            [user, pass] => self.check_password(Some(user), pass),
            _ => return Reply::err("ERR syntax error"),
        };
        res.map(|_| Reply::ok()).unwrap_or_else(|e| e)
    }

    /// HELLO [protover [AUTH user pass] [SETNAME name]]: switches RESP2/RESP3 (redis-py 8
    /// and go-redis 9 open every connection with `HELLO 3`).
    fn hello(&mut self, args: &[Bytes]) -> Reply {
        let mut proto = self.proto;
        let mut rest = args;
        if let Some((ver, tail)) = args.split_first() {
            let v: Option<i64> = std::str::from_utf8(ver).ok().and_then(|s| s.parse().ok());
            proto = match v {
                Some(2) => Protocol::Resp2,
                Some(3) => Protocol::Resp3,
                Some(_) => return Reply::err("NOPROTO unsupported protocol version"),
                None => return Reply::err("ERR Protocol version is not an integer or out of range"),
            };
            rest = tail;
        }
        let mut name = None;
        let mut auth = None;
        while let Some((opt, tail)) = rest.split_first() {
            match (lower(opt).as_str(), tail) {
                ("auth", [user, pass, more @ ..]) => {
                    auth = Some((user, pass));
                    rest = more;
                }
                ("setname", [n, more @ ..]) => {
                    name = Some(n.clone());
                    rest = more;
                }
                _ => return Reply::err(format!("ERR Syntax error in HELLO option '{}'", String::from_utf8_lossy(opt))),
            }
        }
        // Redis 7.0's order: options parsed, then authenticate, switch protocol, and only
        // then validate the name (so a bad name still leaves the new protocol in place).
        if let Some((user, pass)) = auth {
            if let Err(e) = self.check_password(Some(user), pass) {
                return e;
            }
        }
        if !self.authenticated {
            return Reply::err(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
            );
        }
        self.proto = proto;
        if let Some(name) = name {
            if let Err(e) = admin::check_client_name(&name) {
                return e;
            }
            self.name = (!name.is_empty()).then_some(name);
        }
        admin::hello_reply(self.id, proto)
    }

    fn multi(&mut self) -> Reply {
        if self.tx.is_some() {
            return Reply::err("ERR MULTI calls can not be nested");
        }
        self.tx = Some(Transaction { queued: Vec::new(), poisoned: false });
        Reply::ok()
    }

    /// Queues a command inside MULTI (`reject` has already refused unknown commands and
    /// wrong arity, as Redis does); everything else fails (or not) at EXEC, in the core.
    fn queue(&mut self, name: &str, argv: Vec<Bytes>) -> Reply {
        let runs_in_core = keyspace::lookup(&argv[0]).is_some() || matches!(name, "select" | "ping" | "echo");
        let Some(tx) = self.tx.as_mut() else { return Reply::err("ERR EXEC without MULTI") };
        if !runs_in_core {
            tx.poisoned = true;
            return Reply::err(format!("ERR Command '{name}' is not supported inside MULTI by hipache-raft"));
        }
        tx.queued.push(argv);
        Reply::Status("QUEUED".into())
    }

    fn discard(&mut self) -> Reply {
        match self.tx.take() {
            Some(_) => {
                self.watched.clear();
                Reply::ok()
            }
            None => Reply::err("ERR DISCARD without MULTI"),
        }
    }

    /// EXEC: the whole transaction, watched versions included, is ONE Raft entry, so every
    /// replica applies it atomically and decides the WATCH abort the same way.
    async fn exec(&mut self) -> Reply {
        let Some(tx) = self.tx.take() else { return Reply::err("ERR EXEC without MULTI") };
        let watched = std::mem::take(&mut self.watched);
        if tx.poisoned {
            return Reply::err("EXECABORT Transaction discarded because of previous errors.");
        }
        let op = Op::Exec { db: self.db as u8, queued: tx.queued.clone(), watched };
        let reply = match self.shared.node.write(op).await {
            Ok(w) => {
                self.last_write = w.index;
                w.reply
            }
            Err(e) => return node_error(e),
        };
        // A SELECT that succeeded inside the transaction changes this connection's database.
        if let Reply::Array(replies) = &reply {
            for (cmd, r) in tx.queued.iter().zip(replies) {
                if lower(&cmd[0]) == "select" && !r.is_error() {
                    if let Ok(db) = parse_db(&cmd[1]) {
                        self.db = db;
                    }
                }
            }
        }
        reply
    }

    /// WATCH remembers each key's version as of a linearizable point; EXEC aborts if any
    /// changed by the time its entry is applied.
    async fn watch(&mut self, argv: &[Bytes]) -> Reply {
        if argv.len() < 2 {
            return arity_error("watch");
        }
        if self.tx.is_some() {
            return Reply::err("ERR WATCH inside MULTI is not allowed");
        }
        let keys = argv[1..].to_vec();
        let versions = if self.local_reads {
            let ks = self.shared.node.local();
            let now = now_ms();
            keys.iter().map(|k| ks.version(self.db, k, now)).collect()
        } else {
            match self.shared.node.versions(self.db, keys.clone()).await {
                Ok(v) => v,
                Err(e) => return node_error(e),
            }
        };
        for (key, version) in keys.into_iter().zip(versions) {
            self.watched.push(WatchedKey { db: self.db as u8, key, version });
        }
        Reply::ok()
    }

    fn subscribe(&mut self, name: &str, argv: &[Bytes], out: &mut BytesMut) -> Flow {
        if argv.len() < 2 {
            encode(&arity_error(name), self.proto, out);
            return Flow::Continue;
        }
        let pattern = name == "psubscribe";
        for ch in &argv[1..] {
            let set = if pattern { &mut self.patterns } else { &mut self.channels };
            if set.insert(ch.clone()) {
                self.shared.node.pubsub().subscribe(self.id, ch.clone(), self.messages.clone(), pattern);
            }
            let count = self.subscriptions() as i64;
            let r = Reply::Push(vec![Reply::bulk(name.to_string()), Reply::Bulk(ch.clone()), Reply::Int(count)]);
            encode(&r, self.proto, out);
        }
        Flow::Continue
    }

    fn unsubscribe(&mut self, name: &str, argv: &[Bytes], out: &mut BytesMut) -> Flow {
        let pattern = name == "punsubscribe";
        let targets: Vec<Bytes> = if argv.len() > 1 {
            argv[1..].to_vec()
        } else if pattern {
            self.patterns.iter().cloned().collect()
        } else {
            self.channels.iter().cloned().collect()
        };
        if targets.is_empty() {
            let r =
                Reply::Push(vec![Reply::bulk(name.to_string()), Reply::Nil, Reply::Int(self.subscriptions() as i64)]);
            encode(&r, self.proto, out);
        }
        for ch in targets {
            let set = if pattern { &mut self.patterns } else { &mut self.channels };
            if set.remove(&ch) {
                self.shared.node.pubsub().unsubscribe(self.id, &ch, pattern);
            }
            let count = self.subscriptions() as i64;
            let r = Reply::Push(vec![Reply::bulk(name.to_string()), Reply::Bulk(ch), Reply::Int(count)]);
            encode(&r, self.proto, out);
        }
        Flow::Continue
    }

    /// Writes a pub/sub message as Redis does (a push in RESP3, an array in RESP2); a queue
    /// that overflowed closes the connection.
    pub fn deliver(&self, msg: Message, out: &mut BytesMut) -> Flow {
        let r = match msg {
            Message::Overflowed => {
                tracing::warn!(
                    client = self.id,
                    "closing a subscriber that does not keep up: its queue passed cluster.pubsubBufferLimit"
                );
                return Flow::Close;
            }
            Message::Message { channel, payload } => {
                Reply::Push(vec![Reply::bulk("message"), Reply::Bulk(channel), Reply::Bulk(payload)])
            }
            Message::PMessage { pattern, channel, payload } => Reply::Push(vec![
                Reply::bulk("pmessage"),
                Reply::Bulk(pattern),
                Reply::Bulk(channel),
                Reply::Bulk(payload),
            ]),
        };
        encode(&r, self.proto, out);
        Flow::Continue
    }

    /// Drops this connection's subscriptions from the node's hub.
    pub fn close(&mut self) {
        let pubsub = self.shared.node.pubsub();
        for ch in std::mem::take(&mut self.channels) {
            pubsub.unsubscribe(self.id, &ch, false);
        }
        for p in std::mem::take(&mut self.patterns) {
            pubsub.unsubscribe(self.id, &p, true);
        }
    }
}
