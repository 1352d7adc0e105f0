//! The configuration file: Hipache's `config.json`, read once at start-up.
//!
//! Users swap the Hipache binary for ours and keep their file, so both of Hipache's layouts are
//! accepted (docs/hipache-behaviour.md §1):
//! - **0.3.1** (the last npm release): `server.port`, `server.address`, `server.https`;
//! - **master** (0.4.0-dev, never released): top-level `http`, `https`, `user`, `group`.
//!
//! Every key gets master's default (§1.1), because 0.3.1 had no defaults at all and a missing key
//! there only produced `undefined` behaviour nobody relies on. Our own additions are the timeouts
//! `server.connectTimeout`, `server.backendTimeout`, `server.shutdownTimeout`, the
//! `cluster` section and the command-line overrides (the README's "Configuration").
//!
//! Hipache ignored unknown keys silently; we still accept them but return a warning naming each
//! one, so a typo (`tcpTimout`) does not go unnoticed. A value of the wrong type is an error that
//! names the key. This module does no logging and reads no environment: [`Config::load`] returns
//! the warnings and `main` logs them; `main` also passes `SETTINGS_FLAVOR` to [`resolve_path`].
//!
//! Relative paths (`staticDir`, certificates, `accessLog`, `dataDir`) are kept as written and so
//! resolve against the process's working directory, as in Hipache (Node resolves them that way).

mod driver;
mod parse;
mod proxy;
#[cfg(test)]
mod tests;
mod values;

pub use driver::Driver;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Serialize, Serializer};

/// A configuration problem; `main` prints it and exits with status 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file (explicit, flavoured or default) does not exist. Hipache crashed with a Node
    /// stack trace here; we say which file we looked for and how to pick another.
    #[error("config error: {}: no such file (use --config FILE or SETTINGS_FLAVOR)", path.display())]
    MissingFile { path: PathBuf },
    #[error("config error: cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `source` already ends with "at line L column C"; the numbers are kept for callers.
    #[error("config error: {}: invalid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        #[source]
        source: serde_json::Error,
    },
    /// `key` is the dotted path of the offending value, e.g. `https.bind[1].port`.
    #[error("config error: {key}: {message}")]
    Invalid { key: String, message: String },
}

/// A successfully parsed file plus the warnings `main` should log (unknown keys, ignored
/// Hipache features). Kept out of the error path because none of them stops the node.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// The effective, normalised configuration: both Hipache layouts end up here.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// One plain-HTTP proxy listener per entry. May be empty (an HTTPS-only router).
    pub http: Vec<Listen>,
    /// One TLS listener per entry, each with its own certificate: Hipache's only way to serve
    /// several certificates (§1.1 `https.bind`, §3.11).
    pub https: Vec<TlsListen>,
    pub server: ServerOptions,
    pub cluster: ClusterOptions,
    /// The database and key prefix of Hipache's first `driver` URL: where the proxy reads
    /// routes (its host and port mean nothing to an embedded store).
    pub driver: Driver,
    /// Master's `user`/`group`: setuid/setgid after every listener is bound, when started as
    /// root. `None` means "do not drop". "root"/`0` normalise to `None`; a `group` left out
    /// falls back to `user`, as in Hipache.
    ///
    /// Differs from Hipache master, whose *default* user was `www-data`: that default never
    /// shipped (npm users ran 0.3.1, which never dropped privileges), and dropping silently
    /// would leave `cluster.dataDir` unwritable. So we drop only when the file asks.
    pub user: Option<String>,
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listen {
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsListen {
    pub addr: SocketAddr,
    /// PEM files, not yet read: unlike Hipache (which read them while parsing the config) the
    /// TLS loader reads them, and should name [`TlsListen::origin`] when one is unusable.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Extra certificates appended to the served chain (Hipache's `ca`, "the chain").
    pub ca: Vec<PathBuf>,
    /// For an encrypted key. Inherited from the global `https.passphrase` only when this
    /// entry uses the global key, as in Hipache master.
    pub passphrase: Option<String>,
    /// Prefer the server's cipher order (rustls `ignore_client_order`). `ciphers`,
    /// `secureProtocol` and `secureOptions` are OpenSSL strings with no rustls equivalent; they
    /// are accepted with a warning.
    pub honor_cipher_order: bool,
    /// Where this listener came from (`https.bind[2]`, `server.https`), for error messages.
    #[serde(skip)]
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerOptions {
    /// Hipache's `server.debug`; it enabled nearly nothing there (§1.1). `X-Debug` response
    /// headers do not depend on it (§3.9).
    pub debug: bool,
    /// Proxy worker threads, each serving its own share of the connections (Hipache forked
    /// this many processes, default 10), and the node runtime's threads. `None`: one per core
    /// this process may run on.
    pub workers: Option<usize>,
    /// Hipache set it on Node's global agent, which http-proxy 1.0.2 never used, so it had no
    /// effect (§1.1). Exposed for the proxy's backend pool.
    pub max_sockets: usize,
    /// Client-socket idle timeout (§3.5). `None` when the file says `0`, which disables it, as
    /// in Hipache.
    #[serde(serialize_with = "opt_secs")]
    pub tcp_timeout: Option<Duration>,
    /// TTL of a `dead:<host>` mark (§2.3). May be fractional here; Redis `EXPIRE` takes whole
    /// seconds, so whoever builds the mark rounds up or uses `PEXPIRE`.
    #[serde(serialize_with = "secs")]
    pub dead_backend_ttl: Duration,
    /// Retries after a proxy error, so up to N+1 attempts; 0 disables retry (§3.6).
    pub retry_on_error: u32,
    pub access_log: AccessLog,
    /// Reuse backend connections. In Hipache both values gave one backend connection per
    /// request (§1.1); we honour `true`.
    pub http_keep_alive: bool,
    /// Parsed for compatibility only. Like Hipache 0.3.x/master it does **not** change the 5xx
    /// rule: 500 and 503 never mark a backend dead (§1.1, §3.7).
    pub dead_backend_on_500: bool,
    /// Where `error_<code>.html` and `error_default.html` live (§3.10). `None`: `main` uses
    /// the bundled `static/` directory. Relative paths resolve against the working directory,
    /// as in Hipache.
    pub static_dir: Option<PathBuf>,
    /// New: backend connect timeout. Hipache had none (§3.5, BugID:5654); `None` if set to 0.
    #[serde(serialize_with = "opt_secs")]
    pub connect_timeout: Option<Duration>,
    /// New: how long a backend may stay silent (response head or body) before the attempt
    /// fails. Defaults to `tcpTimeout`, the only timer that ever caught a stuck backend in
    /// Hipache. `None` if 0.
    #[serde(serialize_with = "opt_secs")]
    pub backend_timeout: Option<Duration>,
    /// New: graceful drain on SIGTERM/SIGINT. Hipache had no drain at all (§4.1).
    #[serde(serialize_with = "secs")]
    pub shutdown_timeout: Duration,
    /// New: the whole request head must arrive within this (408 otherwise), however slowly
    /// its bytes trickle in; `tcpTimeout` alone restarts at every byte, so a client sending one
    /// byte every few seconds held a connection forever (slowloris). `None` if 0.
    #[serde(serialize_with = "opt_secs")]
    pub header_timeout: Option<Duration>,
    /// New: the largest request head (request line and headers) accepted; larger gets 431.
    pub max_header_size: usize,
    /// New: request bodies of a known length up to this many bytes are kept so a failed
    /// attempt can be retried on another backend (`retryOnError`); larger or chunked ones
    /// stream to one attempt. Hipache retried with a body already consumed. 0: never kept.
    pub max_retry_body: u64,
    /// New: client connections served at once; more wait in the listen backlog. `None`: from
    /// the file-descriptor limit at start (each proxied connection may need a backend one).
    pub max_connections: Option<usize>,
}

/// `server.accessLog`. `"-"` (stdout) is our addition, asked for in Hipache issue #226;
/// `null`, `false` or `""` turn the log off.
#[derive(Debug, Clone, PartialEq)]
pub enum AccessLog {
    Off,
    Stdout,
    File(PathBuf),
}

impl Serialize for AccessLog {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AccessLog::Off => s.serialize_none(),
            AccessLog::Stdout => s.serialize_str("-"),
            AccessLog::File(p) => p.serialize(s),
        }
    }
}

/// The embedded Raft node (no Hipache equivalent: this replaces `driver`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterOptions {
    pub node_id: u64,
    /// The node's data (Raft log and vote, snapshot). Defaults to `./data/node-<nodeId>` so several
    /// nodes can share a working directory without clobbering each other.
    pub data_dir: PathBuf,
    /// RESP admin listener (what Hipache tools talk to).
    pub resp: SocketAddr,
    /// gRPC admin and Raft traffic.
    pub grpc: SocketAddr,
    /// Prometheus endpoint; `null` in the file turns it off.
    pub metrics: Option<SocketAddr>,
    /// `AUTH` password for the RESP listener; `""` means none, as in Redis.
    pub requirepass: Option<String>,
    /// Shared secret between nodes on the gRPC port.
    pub secret: Option<String>,
    /// Peers ("host:port" of their gRPC listener) to join at first start.
    pub join: Vec<String>,
    /// The "host:port" other nodes use to reach this node's gRPC and RESP listeners, when
    /// that is not the bound address (binding 0.0.0.0, containers, Kubernetes pod DNS names).
    /// It is stored in the cluster membership, so it must stay stable across restarts.
    pub advertise_grpc: Option<String>,
    pub advertise_resp: Option<String>,
    /// RESP clients connected at once; one more is answered Redis's
    /// `-ERR max number of clients reached` and closed. Redis's default, 10,000.
    pub maxclients: u64,
    /// Bytes of pub/sub messages one subscriber may have waiting to be written; past it the
    /// subscriber is disconnected (Redis: `client-output-buffer-limit pubsub`, hard 32 MB).
    pub pubsub_buffer_limit: usize,
    /// The largest RESP bulk string a client may send (Redis's `proto-max-bulk-len`, 512 MB
    /// there; 64 MiB here, far above any routing value).
    pub proto_max_bulk_len: usize,
    /// The largest gRPC admin request or reply (tonic's default, 4 MiB); a larger request is
    /// refused with `OUT_OF_RANGE` ("decoded message length too large").
    pub grpc_max_message_size: usize,
    /// Free bytes the data dir's file system must keep: below it writes are refused with a
    /// clear error (routing and reads go on) until space is freed. 64 MiB; 0 turns it off.
    pub disk_reserve: u64,
    /// RESP users besides `default` (whose password is `requirepass`), for `AUTH user pass`.
    pub users: Vec<User>,
    /// Log entries between snapshots.
    pub snapshot_threshold: u64,
    /// TLS between nodes on the gRPC port; `None` means plaintext.
    pub tls: Option<ClusterTls>,
    /// Whether `data_dir` was chosen (file or flag) rather than derived from `node_id`.
    #[serde(skip)]
    data_dir_explicit: bool,
}

/// A RESP user (`cluster.users`). A read-only one may run every command that does not
/// change the keyspace or publish, as a Redis 6 ACL user with `+@read` only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    pub name: String,
    pub password: String,
    pub readonly: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Vec<PathBuf>,
}

/// Command-line flags that win over the file (mostly for tests and scripts that start several
/// nodes from one file).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub node_id: Option<u64>,
    pub data_dir: Option<PathBuf>,
    pub resp: Option<SocketAddr>,
    pub grpc: Option<SocketAddr>,
    /// Replaces every HTTP listener of the file.
    pub http: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    pub join: Option<Vec<String>>,
}

/// Which file to read, as Hipache's `bin/hipache` chose it (§1): `--config` wins, else
/// `config/config_<flavor>.json` when `SETTINGS_FLAVOR` is set and non-empty, else
/// `config/config.json`. Hipache looked under its install directory; `main` passes the working
/// directory as `base` so a checkout runs as-is.
pub fn resolve_path(explicit: Option<&Path>, settings_flavor: Option<&str>, base: &Path) -> PathBuf {
    match (explicit, settings_flavor) {
        (Some(path), _) => path.to_path_buf(),
        (None, Some(flavor)) if !flavor.is_empty() => base.join("config").join(format!("config_{flavor}.json")),
        _ => base.join("config").join("config.json"),
    }
}

impl Config {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ConfigError::MissingFile { path: path.to_path_buf() }
            } else {
                ConfigError::Read { path: path.to_path_buf(), source }
            }
        })?;
        Self::from_json(&text, path)
    }

    /// Parses file contents; `path` is only used in error messages.
    pub fn from_json(text: &str, path: &Path) -> Result<Loaded, ConfigError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|source| ConfigError::Json {
            path: path.to_path_buf(),
            line: source.line(),
            column: source.column(),
            source,
        })?;
        let (config, warnings) = parse::build(&value)?;
        Ok(Loaded { config, warnings })
    }

    pub fn apply_overrides(&mut self, o: Overrides) {
        if let Some(id) = o.node_id {
            self.cluster.node_id = id;
            if !self.cluster.data_dir_explicit {
                self.cluster.data_dir = default_data_dir(id);
            }
        }
        if let Some(dir) = o.data_dir {
            self.cluster.data_dir = dir;
            self.cluster.data_dir_explicit = true;
        }
        if let Some(addr) = o.resp {
            self.cluster.resp = addr;
        }
        if let Some(addr) = o.grpc {
            self.cluster.grpc = addr;
        }
        if let Some(addr) = o.http {
            self.http = vec![Listen { addr }];
        }
        if let Some(addr) = o.metrics {
            self.cluster.metrics = Some(addr);
        }
        if let Some(join) = o.join {
            self.cluster.join = join;
        }
    }

    /// The effective configuration for `--dry`, with secrets replaced by `"********"`. Like
    /// Hipache's `--dry` it hides key material; certificate paths stay visible because they are
    /// what an operator checks.
    pub fn censored_json(&self) -> serde_json::Value {
        // Serialising these plain structs cannot fail (string map keys only); Null is a
        // harmless fallback rather than a panic.
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        censor(&mut value);
        value
    }
}

const SECRET_FIELDS: [&str; 5] = ["key", "passphrase", "password", "requirepass", "secret"];

fn censor(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (name, v) in map.iter_mut() {
                if SECRET_FIELDS.contains(&name.as_str()) && !v.is_null() {
                    *v = serde_json::Value::from("********");
                } else {
                    censor(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(censor),
        _ => {}
    }
}

fn default_data_dir(node_id: u64) -> PathBuf {
    PathBuf::from(format!("./data/node-{node_id}"))
}

/// Durations print as (fractional) seconds, the unit the file uses.
fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn opt_secs<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_f64(0.0),
    }
}
