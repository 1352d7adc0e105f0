//! Walks the JSON tree by hand rather than through `#[derive(Deserialize)]`: we need the
//! dotted path of every bad value, a warning for every unknown key, and Hipache's loose forms
//! (one address or an array, a path or an array, numbers written as strings).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::{
    default_data_dir, AccessLog, ClusterOptions, ClusterTls, Config, ConfigError, Driver, Listen, ServerOptions,
    TlsListen, User,
};

use super::values::{
    as_object, at_least, bind_addr, boolean, expected, get, integer, invalid, join_key, one_or_many, paths, port,
    seconds, section, show, size_at_least, socket_addr, string, to_usize, Obj,
};

const TOP_KEYS: &[&str] = &["server", "http", "https", "driver", "user", "group", "cluster"];
/// 0.2.x keys that 0.3.1 turned into a redis driver URL (§1.2).
const LEGACY_REDIS_KEYS: &[&str] = &[
    "redisHost",
    "redisPort",
    "redisPassword",
    "redisDatabase",
    "redisMasterHost",
    "redisMasterPort",
    "redisMasterPassword",
    "redisMasterDatabase",
];
const SERVER_KEYS: &[&str] = &[
    "debug",
    "workers",
    "maxSockets",
    "tcpTimeout",
    "deadBackendTTL",
    "retryOnError",
    "accessLog",
    "httpKeepAlive",
    "deadBackendOn500",
    "staticDir",
    "lruCache",
    "connectTimeout",
    "backendTimeout",
    "shutdownTimeout",
    "headerTimeout",
    "maxHeaderSize",
    "maxRetryBody",
    "maxConnections",
    "port",
    "address",
    "https",
    "address6",
];
const HTTP_KEYS: &[&str] = &["port", "bind"];
const HTTP_BIND_KEYS: &[&str] = &["address", "port"];
/// TLS settings allowed globally (`https`, 0.3.1 `server.https`) and per `https.bind` entry.
const TLS_KEYS: &[&str] =
    &["port", "key", "cert", "ca", "passphrase", "ciphers", "honorCipherOrder", "secureProtocol", "secureOptions"];
/// OpenSSL knobs that rustls has no equivalent for.
const OPENSSL_ONLY_KEYS: &[&str] = &["ciphers", "secureProtocol", "secureOptions"];
const CLUSTER_KEYS: &[&str] = &[
    "nodeId",
    "dataDir",
    "resp",
    "grpc",
    "metrics",
    "requirepass",
    "secret",
    "join",
    "snapshotThreshold",
    "tls",
    "advertiseGrpc",
    "advertiseResp",
    "maxclients",
    "pubsubBufferLimit",
    "users",
    "protoMaxBulkLen",
    "grpcMaxMessageSize",
    "diskReserve",
];
const CLUSTER_TLS_KEYS: &[&str] = &["cert", "key", "ca"];
const USER_KEYS: &[&str] = &["password", "readonly"];

/// The smallest `server.maxHeaderSize`: below it ordinary browsers' heads (cookies) fail.
const MIN_HEADER_SIZE: u64 = 1024;
const RAFT_REPLACES: &str = "routing state is replicated by the embedded Raft cluster";

pub(super) fn build(root: &Value) -> Result<(Config, Vec<String>), ConfigError> {
    let top = root
        .as_object()
        .ok_or_else(|| invalid("(top level)", format!("expected a JSON object, got {}", show(root))))?;
    let mut w = Warnings(Vec::new());

    let legacy_redis: Vec<&str> = top.keys().map(String::as_str).filter(|k| LEGACY_REDIS_KEYS.contains(k)).collect();
    if !legacy_redis.is_empty() {
        w.push(format!("deprecated 0.2.x keys {} are ignored: {RAFT_REPLACES}", legacy_redis.join(", ")));
    }
    let unknown_top: Vec<&str> =
        top.keys().map(String::as_str).filter(|k| !TOP_KEYS.contains(k) && !LEGACY_REDIS_KEYS.contains(k)).collect();
    w.unknown("", unknown_top);

    let empty = Obj::new();
    let server = section(top, "server", &empty)?;
    w.check_keys(server, "server", SERVER_KEYS);
    if server.contains_key("address6") {
        w.push("server.address6 (0.2.x) is ignored: list IPv6 addresses in server.address or http.bind".into());
    }

    let (http, https) = listeners(top, server, &mut w)?;
    if http.is_empty() && https.is_empty() {
        w.push("no HTTP or HTTPS listener is configured: this node will not proxy".into());
    }

    let (user, group) = privileges(top)?;
    let driver = driver(top)?;
    let mut cluster = cluster_options(section(top, "cluster", &empty)?, &mut w)?;
    // The tools that wrote to Hipache's Redis with the driver's password keep working.
    if cluster.requirepass.is_none() {
        cluster.requirepass = driver.password.clone();
    }
    let config = Config { http, https, server: server_options(server, &mut w)?, cluster, driver, user, group };
    Ok((config, w.0))
}

struct Warnings(Vec<String>);

impl Warnings {
    fn push(&mut self, message: String) {
        self.0.push(message);
    }

    fn unknown(&mut self, prefix: &str, keys: Vec<&str>) {
        for key in keys {
            self.push(format!("unknown key {} is ignored", join_key(prefix, key)));
        }
    }

    fn check_keys(&mut self, obj: &Obj, prefix: &str, known: &[&str]) {
        let unknown = obj.keys().map(String::as_str).filter(|k| !known.contains(k)).collect();
        self.unknown(prefix, unknown);
    }
}

// ---- listeners ---------------------------------------------------------------------------

/// Master's `http`/`https` sections win; without them the 0.3.1 keys apply (§1.2). Where the
/// 0.3.1 keys leave something out we follow 0.3.1, the release users actually ran: no
/// `server.address` means every interface (`::`, dual stack on Linux).
fn listeners(top: &Obj, server: &Obj, w: &mut Warnings) -> Result<(Vec<Listen>, Vec<TlsListen>), ConfigError> {
    let legacy_port = get(server, "port");
    let legacy_https = get(server, "https");
    let legacy_addresses = match get(server, "address") {
        Some(v) => Some(
            one_or_many(v, "server.address")?
                .into_iter()
                .map(|(v, key)| bind_addr(v, &key))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let everywhere = [(IpAddr::V6(Ipv6Addr::UNSPECIFIED), None)];
    let legacy_ips = legacy_addresses.as_deref().unwrap_or(&everywhere);

    let http_section = get(top, "http");
    let https_section = get(top, "https");
    let http = match http_section {
        Some(v) => {
            if legacy_port.is_some() {
                w.push("server.port is ignored because the `http` section is set".into());
            }
            http_listeners(as_object(v, "http")?, w)?
        }
        None if legacy_port.is_some() || legacy_addresses.is_some() => {
            let port = legacy_port.map(|v| port(v, "server.port")).transpose()?.unwrap_or(80);
            legacy_ips.iter().map(|&(ip, own)| Listen { addr: SocketAddr::new(ip, own.unwrap_or(port)) }).collect()
        }
        // Neither layout names an HTTP listener: master's defaults, loopback port 80 (§1.1).
        None => vec![Listen { addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 80) }],
    };

    let https = match (https_section, legacy_https) {
        (Some(v), legacy) => {
            if legacy.is_some() {
                w.push("server.https is ignored because the `https` section is set".into());
            }
            https_listeners(as_object(v, "https")?, w)?
        }
        // Fixes master's legacy mapping (§1.2 quirk 2), which dropped HTTPS when
        // `server.https` came without `server.address`: 0.3.1 served HTTPS on every
        // interface then, and so do we. Quirk 1 (`server.address` alone turning into keyless
        // HTTPS binds) cannot happen here: without `server.https` there is no HTTPS.
        (None, Some(v)) => {
            let obj = as_object(v, "server.https")?;
            w.check_keys(obj, "server.https", TLS_KEYS);
            let tls = tls_settings(obj, "server.https", None, w)?;
            let port = get(obj, "port").map(|v| port(v, "server.https.port")).transpose()?;
            legacy_ips
                .iter()
                // A port written into an address is the HTTP one; HTTPS keeps its own.
                .map(|&(ip, _)| {
                    let addr = SocketAddr::new(ip, port.unwrap_or(443));
                    tls.listener(addr, "server.https", "server.https")
                })
                .collect::<Result<_, _>>()?
        }
        (None, None) => Vec::new(),
    };
    let address_unused = http_section.is_some() && (https_section.is_some() || legacy_https.is_none());
    if address_unused && legacy_addresses.is_some() {
        w.push("server.address is ignored: the `http` section is set and no server.https uses it".into());
    }
    Ok((http, https))
}

fn http_listeners(http: &Obj, w: &mut Warnings) -> Result<Vec<Listen>, ConfigError> {
    w.check_keys(http, "http", HTTP_KEYS);
    let default_port = get(http, "port").map(|v| port(v, "http.port")).transpose()?.unwrap_or(80);
    let Some(bind) = get(http, "bind") else {
        // Master's default bind is loopback only (§1.1).
        return Ok(vec![Listen { addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), default_port) }]);
    };
    one_or_many(bind, "http.bind")?
        .into_iter()
        .map(|(entry, key)| {
            let (addr, _) = bind_entry(entry, &key, default_port, HTTP_BIND_KEYS, w)?;
            Ok(Listen { addr })
        })
        .collect()
}

fn https_listeners(https: &Obj, w: &mut Warnings) -> Result<Vec<TlsListen>, ConfigError> {
    w.check_keys(https, "https", &[TLS_KEYS, &["bind"]].concat());
    let global = tls_settings(https, "https", None, w)?;
    let default_port = get(https, "port").map(|v| port(v, "https.port")).transpose()?.unwrap_or(443);
    let Some(bind) = get(https, "bind") else {
        if global.key.is_some() || global.cert.is_some() {
            w.push("https.key/https.cert are set but https.bind is empty: no HTTPS listener".into());
        }
        return Ok(Vec::new());
    };
    let bind_keys = [TLS_KEYS, &["address"]].concat();
    one_or_many(bind, "https.bind")?
        .into_iter()
        .map(|(entry, key)| {
            let (addr, obj) = bind_entry(entry, &key, default_port, &bind_keys, w)?;
            match obj {
                Some(obj) => tls_settings(obj, &key, Some(&global), w)?.listener(addr, &key, "https"),
                None => global.listener(addr, &key, "https"),
            }
        })
        .collect()
}

/// One `bind` entry: an address string (optionally with its own port) or an
/// `{address, port, ...}` object, whose extra keys the caller reads.
fn bind_entry<'a>(
    entry: &'a Value,
    key: &str,
    default_port: u16,
    known: &[&str],
    w: &mut Warnings,
) -> Result<(SocketAddr, Option<&'a Obj>), ConfigError> {
    match entry {
        Value::Object(obj) => {
            w.check_keys(obj, key, known);
            let address_key = format!("{key}.address");
            let address = get(obj, "address")
                .ok_or_else(|| invalid(&address_key, "missing: every bind object needs an address"))?;
            let (ip, own_port) = bind_addr(address, &address_key)?;
            let port = match get(obj, "port") {
                Some(v) => port(v, &format!("{key}.port"))?,
                None => own_port.unwrap_or(default_port),
            };
            Ok((SocketAddr::new(ip, port), Some(obj)))
        }
        _ => {
            let (ip, own_port) = bind_addr(entry, key)?;
            Ok((SocketAddr::new(ip, own_port.unwrap_or(default_port)), None))
        }
    }
}

/// TLS settings of one level. Per-bind values fall back to the global `https` ones.
struct TlsSettings {
    key: Option<PathBuf>,
    cert: Option<PathBuf>,
    ca: Vec<PathBuf>,
    passphrase: Option<String>,
    honor_cipher_order: bool,
}

fn tls_settings(
    obj: &Obj,
    prefix: &str,
    global: Option<&TlsSettings>,
    w: &mut Warnings,
) -> Result<TlsSettings, ConfigError> {
    let path_of = |name: &str| -> Result<Option<PathBuf>, ConfigError> {
        get(obj, name).map(|v| string(v, &join_key(prefix, name)).map(PathBuf::from)).transpose()
    };
    for name in OPENSSL_ONLY_KEYS {
        if obj.contains_key(*name) {
            w.push(format!(
                "{} is ignored: TLS is served by rustls with its own safe cipher suites and versions",
                join_key(prefix, name)
            ));
        }
    }
    let own_key = path_of("key")?;
    let own_passphrase =
        get(obj, "passphrase").map(|v| string(v, &join_key(prefix, "passphrase")).map(str::to_owned)).transpose()?;
    // Hipache master hands the global passphrase only to an entry using the global key: a
    // passphrase belongs to one key file.
    let passphrase = match (own_passphrase, global) {
        (Some(p), _) => Some(p),
        (None, Some(g)) if own_key.is_none() || own_key == g.key => g.passphrase.clone(),
        (None, _) => None,
    };
    Ok(TlsSettings {
        key: own_key.or_else(|| global.and_then(|g| g.key.clone())),
        cert: path_of("cert")?.or_else(|| global.and_then(|g| g.cert.clone())),
        ca: match get(obj, "ca") {
            Some(v) => paths(v, &join_key(prefix, "ca"))?,
            None => global.map(|g| g.ca.clone()).unwrap_or_default(),
        },
        passphrase,
        honor_cipher_order: match get(obj, "honorCipherOrder") {
            Some(v) => boolean(v, &join_key(prefix, "honorCipherOrder"))?,
            None => global.is_none_or(|g| g.honor_cipher_order),
        },
    })
}

impl TlsSettings {
    /// Hipache refused a bind without key or cert (`MISSING_KEY`); so do we, naming the key
    /// to set at `fix_prefix` (the global section, where users usually put it).
    fn listener(&self, addr: SocketAddr, origin: &str, fix_prefix: &str) -> Result<TlsListen, ConfigError> {
        let missing = |name: &str| {
            invalid(
                join_key(fix_prefix, name),
                format!("missing: the HTTPS listener {addr} ({origin}) needs a {name} file"),
            )
        };
        Ok(TlsListen {
            addr,
            key: self.key.clone().ok_or_else(|| missing("key"))?,
            cert: self.cert.clone().ok_or_else(|| missing("cert"))?,
            ca: self.ca.clone(),
            passphrase: self.passphrase.clone(),
            honor_cipher_order: self.honor_cipher_order,
            origin: origin.to_owned(),
        })
    }
}

// ---- server, cluster, privileges -------------------------------------------------------

fn server_options(s: &Obj, w: &mut Warnings) -> Result<ServerOptions, ConfigError> {
    if s.contains_key("lruCache") {
        w.push(
            "server.lruCache is unnecessary and ignored: every node routes from an in-memory \
             snapshot of the replicated state"
                .into(),
        );
    }
    let key = |name: &str| format!("server.{name}");
    let opt_secs = |name: &str| get(s, name).map(|v| seconds(v, &key(name))).transpose();
    let flag = |name: &str, default: bool| get(s, name).map_or(Ok(default), |v| boolean(v, &key(name)));
    let disabled_if_zero = |d: Duration| (!d.is_zero()).then_some(d);

    let tcp_timeout = disabled_if_zero(opt_secs("tcpTimeout")?.unwrap_or(Duration::from_secs(30)));
    Ok(ServerOptions {
        debug: flag("debug", false)?,
        workers: match get(s, "workers") {
            Some(v) => match integer(v, &key("workers"))? {
                0 => return Err(invalid(key("workers"), "expected at least 1 worker thread, got 0")),
                n => Some(to_usize(n, &key("workers"))?),
            },
            None => None,
        },
        max_sockets: get(s, "maxSockets")
            .map(|v| integer(v, &key("maxSockets")).and_then(|n| to_usize(n, &key("maxSockets"))))
            .transpose()?
            .unwrap_or(100),
        tcp_timeout,
        dead_backend_ttl: opt_secs("deadBackendTTL")?.unwrap_or(Duration::from_secs(30)),
        retry_on_error: match get(s, "retryOnError") {
            Some(v) => u32::try_from(integer(v, &key("retryOnError"))?)
                .map_err(|_| invalid(key("retryOnError"), "too large"))?,
            None => 3,
        },
        access_log: access_log(s.get("accessLog"))?,
        http_keep_alive: flag("httpKeepAlive", false)?,
        dead_backend_on_500: flag("deadBackendOn500", true)?,
        static_dir: get(s, "staticDir").map(|v| string(v, &key("staticDir")).map(PathBuf::from)).transpose()?,
        connect_timeout: disabled_if_zero(opt_secs("connectTimeout")?.unwrap_or(Duration::from_secs(3))),
        backend_timeout: match opt_secs("backendTimeout")? {
            Some(d) => disabled_if_zero(d),
            None => tcp_timeout,
        },
        shutdown_timeout: opt_secs("shutdownTimeout")?.unwrap_or(Duration::from_secs(30)),
        header_timeout: disabled_if_zero(opt_secs("headerTimeout")?.unwrap_or(Duration::from_secs(30))),
        max_header_size: size_at_least(
            get(s, "maxHeaderSize"),
            &key("maxHeaderSize"),
            MIN_HEADER_SIZE,
            "bytes",
            64 * 1024,
        )?,
        max_retry_body: get(s, "maxRetryBody")
            .map(|v| integer(v, &key("maxRetryBody")))
            .transpose()?
            .unwrap_or(64 * 1024),
        max_connections: get(s, "maxConnections")
            .map(|v| to_usize(at_least(v, &key("maxConnections"), 1, "connections")?, &key("maxConnections")))
            .transpose()?,
    })
}

/// Absent: Hipache master's default path. `null`, `false`, `""`: off. `"-"`: stdout.
fn access_log(v: Option<&Value>) -> Result<AccessLog, ConfigError> {
    Ok(match v {
        None => AccessLog::File(PathBuf::from("/var/log/hipache/access.log")),
        Some(Value::Null | Value::Bool(false)) => AccessLog::Off,
        Some(Value::String(s)) if s.is_empty() => AccessLog::Off,
        Some(Value::String(s)) if s == "-" => AccessLog::Stdout,
        Some(Value::String(s)) => AccessLog::File(PathBuf::from(s)),
        Some(other) => return Err(expected("server.accessLog", "a file path, \"-\" or null", other)),
    })
}

fn cluster_options(c: &Obj, w: &mut Warnings) -> Result<ClusterOptions, ConfigError> {
    w.check_keys(c, "cluster", CLUSTER_KEYS);
    let key = |name: &str| format!("cluster.{name}");
    let addr = |name: &str, default_port: u16| -> Result<SocketAddr, ConfigError> {
        match get(c, name) {
            Some(v) => socket_addr(v, &key(name)),
            None => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), default_port)),
        }
    };
    let secret = |name: &str| -> Result<Option<String>, ConfigError> {
        Ok(get(c, name).map(|v| string(v, &key(name))).transpose()?.filter(|s| !s.is_empty()).map(str::to_owned))
    };
    let node_id = get(c, "nodeId").map(|v| integer(v, &key("nodeId"))).transpose()?.unwrap_or(1);
    let data_dir = get(c, "dataDir").map(|v| string(v, &key("dataDir")).map(PathBuf::from)).transpose()?;
    Ok(ClusterOptions {
        node_id,
        data_dir_explicit: data_dir.is_some(),
        data_dir: data_dir.unwrap_or_else(|| default_data_dir(node_id)),
        resp: addr("resp", 6380)?,
        grpc: addr("grpc", 7380)?,
        // An explicit null turns metrics off; absent means the default port.
        metrics: match c.get("metrics") {
            Some(Value::Null) => None,
            Some(v) => Some(socket_addr(v, &key("metrics"))?),
            None => Some(addr("metrics", 9380)?),
        },
        requirepass: secret("requirepass")?,
        secret: secret("secret")?,
        advertise_grpc: get(c, "advertiseGrpc").map(|v| peer(v, &key("advertiseGrpc"))).transpose()?,
        advertise_resp: get(c, "advertiseResp").map(|v| peer(v, &key("advertiseResp"))).transpose()?,
        join: match get(c, "join") {
            Some(v) => one_or_many(v, &key("join"))?.into_iter().map(|(v, k)| peer(v, &k)).collect::<Result<_, _>>()?,
            None => Vec::new(),
        },
        maxclients: get(c, "maxclients").map_or(Ok(10_000), |v| at_least(v, &key("maxclients"), 1, "clients"))?,
        pubsub_buffer_limit: size_at_least(
            get(c, "pubsubBufferLimit"),
            &key("pubsubBufferLimit"),
            1,
            "bytes",
            32 * 1024 * 1024,
        )?,
        proto_max_bulk_len: size_at_least(
            get(c, "protoMaxBulkLen"),
            &key("protoMaxBulkLen"),
            1024,
            "bytes",
            64 * 1024 * 1024,
        )?,
        grpc_max_message_size: size_at_least(
            get(c, "grpcMaxMessageSize"),
            &key("grpcMaxMessageSize"),
            65_536,
            "bytes",
            4 * 1024 * 1024,
        )?,
        disk_reserve: get(c, "diskReserve").map_or(Ok(64 * 1024 * 1024), |v| integer(v, &key("diskReserve")))?,
        users: match get(c, "users") {
            Some(v) => users(as_object(v, "cluster.users")?, w)?,
            None => Vec::new(),
        },
        snapshot_threshold: get(c, "snapshotThreshold")
            .map_or(Ok(5000), |v| at_least(v, &key("snapshotThreshold"), 1, "log entries"))?,
        tls: match get(c, "tls") {
            Some(v) => {
                let t = as_object(v, "cluster.tls")?;
                w.check_keys(t, "cluster.tls", CLUSTER_TLS_KEYS);
                let file = |name: &str| -> Result<PathBuf, ConfigError> {
                    let k = format!("cluster.tls.{name}");
                    let v = get(t, name).ok_or_else(|| invalid(&k, "missing: cluster TLS needs cert and key"))?;
                    string(v, &k).map(PathBuf::from)
                };
                Some(ClusterTls {
                    cert: file("cert")?,
                    key: file("key")?,
                    ca: get(t, "ca").map(|v| paths(v, "cluster.tls.ca")).transpose()?.unwrap_or_default(),
                })
            }
            None => None,
        },
    })
}

/// A peer to join: "host:port" (host names allowed, they are resolved when joining).
fn peer(v: &Value, key: &str) -> Result<String, ConfigError> {
    let s = string(v, key)?;
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.to_owned()),
        _ => Err(expected(key, "\"host:port\"", v)),
    }
}

/// `driver`: one URL or an array of them; like Hipache, the first one says where routes are
/// read (a master/slave pair's last URL only chose where marks were written).
fn driver(top: &Obj) -> Result<Driver, ConfigError> {
    let Some(v) = get(top, "driver") else { return Ok(Driver::default()) };
    let urls = one_or_many(v, "driver")?;
    match urls.first() {
        Some((url, key)) => Driver::parse(string(url, key)?, key),
        None => Ok(Driver::default()),
    }
}

fn privileges(top: &Obj) -> Result<(Option<String>, Option<String>), ConfigError> {
    let name = |key: &str| -> Result<Option<String>, ConfigError> {
        match get(top, key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => {
                Err(invalid(key, "must not be empty (Hipache: ROOT_NEEDS_ROOT); use \"root\" to keep root"))
            }
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) if n.is_u64() => Ok(Some(n.to_string())),
            Some(other) => Err(expected(key, "a user/group name or numeric id", other)),
        }
    };
    let keep_root = |s: Option<String>| s.filter(|s| s != "root" && s != "0");
    let user = name("user")?;
    let group = name("group")?.or_else(|| user.clone());
    Ok((keep_root(user), keep_root(group)))
}

/// `cluster.users`: `{"<name>": {"password": "...", "readonly": true}}`, Redis 6 ACL users
/// for `AUTH <name> <password>`. `default` is `requirepass`'s user and cannot be redefined.
fn users(obj: &Obj, w: &mut Warnings) -> Result<Vec<User>, ConfigError> {
    obj.iter()
        .map(|(name, spec)| {
            let key = format!("cluster.users.{name}");
            if name.is_empty() || name == "default" {
                return Err(invalid(&key, "a user needs a name other than \"default\" (that one is requirepass)"));
            }
            let spec = as_object(spec, &key)?;
            w.check_keys(spec, &key, USER_KEYS);
            let password = match get(spec, "password") {
                Some(v) => string(v, &format!("{key}.password"))?.to_owned(),
                None => return Err(invalid(format!("{key}.password"), "missing: every user needs a password")),
            };
            if password.is_empty() {
                return Err(invalid(format!("{key}.password"), "empty: every user needs a password"));
            }
            let readonly = get(spec, "readonly").map_or(Ok(false), |v| boolean(v, &format!("{key}.readonly")))?;
            Ok(User { name: name.clone(), password, readonly })
        })
        .collect()
}
