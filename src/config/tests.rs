use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn parse(text: &str) -> Loaded {
    match Config::from_json(text, Path::new("test.json")) {
        Ok(loaded) => loaded,
        Err(e) => panic!("{text} should parse: {e}"),
    }
}

fn parse_err(text: &str) -> ConfigError {
    match Config::from_json(text, Path::new("test.json")) {
        Ok(loaded) => panic!("{text} should fail, got {:?}", loaded.config),
        Err(e) => e,
    }
}

/// The key an `Invalid` error names.
fn bad_key(text: &str) -> String {
    match parse_err(text) {
        ConfigError::Invalid { key, .. } => key,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn http_addrs(c: &Config) -> Vec<SocketAddr> {
    c.http.iter().map(|l| l.addr).collect()
}

#[test]
fn empty_file_gets_hipache_master_defaults() {
    let Loaded { config: c, warnings } = parse("{}");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(http_addrs(&c), [sa("127.0.0.1:80")]);
    assert!(c.https.is_empty());
    let s = &c.server;
    assert!(!s.debug);
    assert_eq!(s.workers, None);
    assert_eq!(s.max_sockets, 100);
    assert_eq!(s.tcp_timeout, Some(Duration::from_secs(30)));
    assert_eq!(s.dead_backend_ttl, Duration::from_secs(30));
    assert_eq!(s.retry_on_error, 3);
    assert_eq!(s.access_log, AccessLog::File("/var/log/hipache/access.log".into()));
    assert!(!s.http_keep_alive);
    assert!(s.dead_backend_on_500);
    assert_eq!(s.static_dir, None);
    assert_eq!(s.connect_timeout, Some(Duration::from_secs(3)));
    assert_eq!(s.backend_timeout, Some(Duration::from_secs(30)));
    assert_eq!(s.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(s.header_timeout, Some(Duration::from_secs(30)));
    assert_eq!(s.max_header_size, 64 * 1024);
    assert_eq!(s.max_connections, None, "from the descriptor limit at start");
    let k = &c.cluster;
    assert_eq!(k.maxclients, 10_000, "Redis's default");
    assert_eq!(k.pubsub_buffer_limit, 32 * 1024 * 1024, "Redis's hard limit for pub/sub clients");
    assert_eq!(k.proto_max_bulk_len, 64 * 1024 * 1024);
    assert_eq!(k.grpc_max_message_size, 4 * 1024 * 1024);
    assert_eq!(k.disk_reserve, 64 * 1024 * 1024);
    assert_eq!(k.node_id, 1);
    assert_eq!(k.data_dir, PathBuf::from("./data/node-1"));
    assert_eq!(k.resp, sa("127.0.0.1:6380"));
    assert_eq!(k.grpc, sa("127.0.0.1:7380"));
    assert_eq!(k.metrics, Some(sa("127.0.0.1:9380")));
    assert_eq!((k.requirepass.as_deref(), k.secret.as_deref()), (None, None));
    assert!(k.join.is_empty());
    assert_eq!(k.snapshot_threshold, 5000);
    assert_eq!(k.tls, None);
    assert_eq!((c.user.as_deref(), c.group.as_deref()), (None, None));
}

#[test]
fn shipped_configs_parse_without_warnings() {
    let loaded = parse(include_str!("../../config/config.json"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(http_addrs(&c), [sa("127.0.0.1:8080")]);
    assert_eq!(c.server.access_log, AccessLog::File("./data/access.log".into()));
    assert!(c.server.http_keep_alive);
    assert_eq!(c.cluster.metrics, Some(sa("127.0.0.1:9380")));

    let test = parse(include_str!("../../config/config_test.json"));
    assert!(test.warnings.is_empty(), "{:?}", test.warnings);
    assert_eq!(test.config.server.access_log, AccessLog::Stdout);
    assert_eq!(test.config.cluster.metrics, None);
}

#[test]
fn server_keys_and_timeouts() {
    let c = parse(
        r#"{"server": {"debug": true, "workers": 4, "maxSockets": 7, "tcpTimeout": 0,
            "deadBackendTTL": "12", "retryOnError": 0, "accessLog": "-", "httpKeepAlive": true,
            "deadBackendOn500": false, "staticDir": "./pages", "connectTimeout": 0.25,
            "shutdownTimeout": 1.5}}"#,
    )
    .config;
    let s = c.server;
    assert!(s.debug);
    assert_eq!(s.workers, Some(4));
    assert_eq!(s.max_sockets, 7);
    assert_eq!(s.tcp_timeout, None, "0 disables the idle timeout, as in Hipache");
    assert_eq!(s.backend_timeout, None, "backendTimeout follows tcpTimeout");
    assert_eq!(s.dead_backend_ttl, Duration::from_secs(12), "numeric strings are accepted");
    assert_eq!(s.retry_on_error, 0);
    assert_eq!(s.access_log, AccessLog::Stdout);
    assert!(s.http_keep_alive);
    assert!(!s.dead_backend_on_500);
    assert_eq!(s.static_dir, Some(PathBuf::from("./pages")));
    assert_eq!(s.connect_timeout, Some(Duration::from_millis(250)));
    assert_eq!(s.shutdown_timeout, Duration::from_millis(1500));

    let s = parse(r#"{"server": {"tcpTimeout": 10, "backendTimeout": 60}}"#).config.server;
    assert_eq!(s.backend_timeout, Some(Duration::from_secs(60)));
    for off in ["null", "false", "\"\""] {
        let c = parse(&format!(r#"{{"server": {{"accessLog": {off}}}}}"#)).config;
        assert_eq!(c.server.access_log, AccessLog::Off, "{off}");
    }
}

#[test]
fn legacy_031_layout() {
    let loaded = parse(
        r#"{"server": {"port": 8080, "address": ["0.0.0.0", "::1"], "workers": 2,
            "https": {"port": 8443, "key": "k.pem", "cert": "c.pem", "ca": "chain.pem",
                      "passphrase": "pw"}},
            "redisHost": "127.0.0.1", "redisPort": 6379}"#,
    );
    let c = loaded.config;
    assert_eq!(http_addrs(&c), [sa("0.0.0.0:8080"), sa("[::1]:8080")]);
    let https: Vec<_> = c.https.iter().map(|l| l.addr).collect();
    assert_eq!(https, [sa("0.0.0.0:8443"), sa("[::1]:8443")]);
    let tls = &c.https[0];
    assert_eq!((tls.key.as_path(), tls.cert.as_path()), (Path::new("k.pem"), Path::new("c.pem")));
    assert_eq!(tls.ca, [PathBuf::from("chain.pem")]);
    assert_eq!(tls.passphrase.as_deref(), Some("pw"));
    assert!(tls.honor_cipher_order);
    assert_eq!(tls.origin, "server.https");
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("redisHost, redisPort"), "{:?}", loaded.warnings);
}

#[test]
fn legacy_defaults_listen_everywhere_like_031() {
    let c = parse(r#"{"server": {"port": 8000}}"#).config;
    assert_eq!(http_addrs(&c), [sa("[::]:8000")]);
    assert!(c.https.is_empty());

    // Hipache master's quirk 2 (§1.2) dropped this HTTPS listener; we keep it.
    let c = parse(r#"{"server": {"https": {"key": "k", "cert": "c"}}}"#).config;
    assert_eq!(c.https.iter().map(|l| l.addr).collect::<Vec<_>>(), [sa("[::]:443")]);
    assert_eq!(http_addrs(&c), [sa("127.0.0.1:80")]);

    // Quirk 1: server.address alone never makes keyless HTTPS binds.
    let c = parse(r#"{"server": {"address": ["127.0.0.1"]}}"#).config;
    assert_eq!(http_addrs(&c), [sa("127.0.0.1:80")]);
    assert!(c.https.is_empty());
}

#[test]
fn master_bind_forms() {
    let c = parse(r#"{"http": {"port": 81, "bind": "0.0.0.0"}}"#).config;
    assert_eq!(http_addrs(&c), [sa("0.0.0.0:81")]);
    let c = parse(r#"{"http": {"port": 81}}"#).config;
    assert_eq!(http_addrs(&c), [sa("127.0.0.1:81")], "master binds loopback by default");
    let c = parse(
        r#"{"http": {"port": 81, "bind": ["::", "[::1]", "localhost", "127.0.0.1:9000",
            {"address": "127.0.0.2"}, {"address": "127.0.0.3", "port": 0}]}}"#,
    )
    .config;
    let want = ["[::]:81", "[::1]:81", "127.0.0.1:81", "127.0.0.1:9000", "127.0.0.2:81", "127.0.0.3:0"];
    assert_eq!(http_addrs(&c), want.map(sa));
    let c = parse(r#"{"http": {"bind": []}, "https": {"bind": "::", "key": "k", "cert": "c"}}"#).config;
    assert!(c.http.is_empty(), "an empty bind list means HTTPS only");
}

#[test]
fn https_per_bind_overrides() {
    let loaded = parse(
        r#"{"https": {"port": 443, "key": "g.key", "cert": "g.crt", "ca": ["a.pem", "b.pem"],
             "passphrase": "gpw", "honorCipherOrder": false, "ciphers": "HIGH",
             "bind": ["0.0.0.0",
                      {"address": "127.0.0.2", "port": 8443, "cert": "two.crt"},
                      {"address": "127.0.0.3", "key": "three.key", "cert": "three.crt",
                       "ca": "three-ca.pem", "honorCipherOrder": true},
                      {"address": "127.0.0.4", "key": "four.key", "passphrase": "fpw"}]}}"#,
    );
    let h = &loaded.config.https;
    assert_eq!(h.len(), 4);
    assert_eq!(h[0].addr, sa("0.0.0.0:443"));
    assert_eq!((h[0].key.to_str(), h[0].cert.to_str()), (Some("g.key"), Some("g.crt")));
    assert_eq!(h[0].ca.len(), 2);
    assert_eq!(h[0].passphrase.as_deref(), Some("gpw"));
    assert!(!h[0].honor_cipher_order);
    assert_eq!(h[1].addr, sa("127.0.0.2:8443"));
    assert_eq!(h[1].cert, PathBuf::from("two.crt"));
    assert_eq!(h[1].passphrase.as_deref(), Some("gpw"), "same key as global: passphrase inherited");
    assert_eq!(h[1].origin, "https.bind[1]");
    assert_eq!(h[2].key, PathBuf::from("three.key"));
    assert_eq!(h[2].ca, [PathBuf::from("three-ca.pem")]);
    assert_eq!(h[2].passphrase, None, "another key never gets the global passphrase");
    assert!(h[2].honor_cipher_order);
    assert_eq!(h[3].passphrase.as_deref(), Some("fpw"));
    assert_eq!(
        loaded.warnings,
        ["https.ciphers is ignored: TLS is served by rustls with its own safe cipher suites and versions"]
    );
}

#[test]
fn https_without_bind_warns() {
    let loaded = parse(r#"{"https": {"key": "k", "cert": "c"}}"#);
    assert!(loaded.config.https.is_empty());
    assert!(loaded.warnings[0].contains("https.bind is empty"), "{:?}", loaded.warnings);
}

#[test]
fn master_sections_win_over_legacy_keys() {
    let loaded = parse(
        r#"{"server": {"port": 1, "address": ["0.0.0.0"], "https": {"key": "k", "cert": "c"}},
            "http": {"port": 2, "bind": "127.0.0.1"}, "https": {"bind": []}}"#,
    );
    assert_eq!(http_addrs(&loaded.config), [sa("127.0.0.1:2")]);
    assert!(loaded.config.https.is_empty());
    let w = loaded.warnings.join("\n");
    for key in ["server.port", "server.https", "server.address"] {
        assert!(w.contains(key), "{key} not in {w}");
    }
}

#[test]
fn errors_name_their_key() {
    let err = parse_err(r#"{"server": {"tcpTimeout": "abc"}}"#);
    assert_eq!(err.to_string(), r#"config error: server.tcpTimeout: expected a non-negative number, got "abc""#);
    let cases = [
        (r#"{"server": {"tcpTimeout": -1}}"#, "server.tcpTimeout"),
        (r#"{"server": {"connectTimeout": -0.5}}"#, "server.connectTimeout"),
        (r#"{"server": {"backendTimeout": []}}"#, "server.backendTimeout"),
        (r#"{"server": {"shutdownTimeout": 1e300}}"#, "server.shutdownTimeout"),
        (r#"{"server": {"deadBackendTTL": true}}"#, "server.deadBackendTTL"),
        (r#"{"server": {"workers": 0}}"#, "server.workers"),
        (r#"{"server": {"headerTimeout": "soon"}}"#, "server.headerTimeout"),
        (r#"{"server": {"maxHeaderSize": 100}}"#, "server.maxHeaderSize"),
        (r#"{"server": {"maxConnections": 0}}"#, "server.maxConnections"),
        (r#"{"server": {"maxRetryBody": -1}}"#, "server.maxRetryBody"),
        (r#"{"server": {"maxRetryBody": "64k"}}"#, "server.maxRetryBody"),
        (r#"{"server": {"maxConnections": -5}}"#, "server.maxConnections"),
        (r#"{"cluster": {"maxclients": 0}}"#, "cluster.maxclients"),
        (r#"{"cluster": {"pubsubBufferLimit": 0}}"#, "cluster.pubsubBufferLimit"),
        (r#"{"cluster": {"protoMaxBulkLen": 100}}"#, "cluster.protoMaxBulkLen"),
        (r#"{"cluster": {"grpcMaxMessageSize": 100}}"#, "cluster.grpcMaxMessageSize"),
        (r#"{"cluster": {"diskReserve": -1}}"#, "cluster.diskReserve"),
        (r#"{"server": {"workers": 1.5}}"#, "server.workers"),
        (r#"{"server": {"retryOnError": -1}}"#, "server.retryOnError"),
        (r#"{"server": {"maxSockets": "many"}}"#, "server.maxSockets"),
        (r#"{"server": {"httpKeepAlive": "yes"}}"#, "server.httpKeepAlive"),
        (r#"{"server": {"debug": 1}}"#, "server.debug"),
        (r#"{"server": {"accessLog": 5}}"#, "server.accessLog"),
        (r#"{"server": {"staticDir": 5}}"#, "server.staticDir"),
        (r#"{"server": {"port": 70000}}"#, "server.port"),
        (r#"{"server": {"address": ["0.0.0.0", "example.com"]}}"#, "server.address[1]"),
        (r#"{"server": {"https": {"cert": "c"}}}"#, "server.https.key"),
        (r#"{"server": {"https": {"key": "k", "port": "x"}}}"#, "server.https.port"),
        (r#"{"server": 3}"#, "server"),
        (r#"{"http": {"port": -1}}"#, "http.port"),
        (r#"{"http": {"bind": ["::", {"address": "::", "port": 65536}]}}"#, "http.bind[1].port"),
        (r#"{"http": {"bind": [{"port": 80}]}}"#, "http.bind[0].address"),
        (r#"{"http": {"bind": "nope"}}"#, "http.bind"),
        (r#"{"https": {"bind": "::", "key": "k"}}"#, "https.cert"),
        (r#"{"https": {"bind": [{"address": "::", "cert": "c"}]}}"#, "https.key"),
        (r#"{"https": {"bind": "::", "key": "k", "cert": "c", "ca": [1]}}"#, "https.ca[0]"),
        (r#"{"https": {"bind": [{"address": "::", "key": 1}]}}"#, "https.bind[0].key"),
        (r#"{"cluster": {"nodeId": "one"}}"#, "cluster.nodeId"),
        (r#"{"cluster": {"dataDir": false}}"#, "cluster.dataDir"),
        (r#"{"cluster": {"resp": "127.0.0.1"}}"#, "cluster.resp"),
        (r#"{"cluster": {"grpc": "host:1"}}"#, "cluster.grpc"),
        (r#"{"cluster": {"metrics": 9380}}"#, "cluster.metrics"),
        (r#"{"cluster": {"requirepass": 1}}"#, "cluster.requirepass"),
        (r#"{"cluster": {"join": ["a:1", "b"]}}"#, "cluster.join[1]"),
        (r#"{"cluster": {"advertiseGrpc": "no-port"}}"#, "cluster.advertiseGrpc"),
        (r#"{"cluster": {"snapshotThreshold": 0}}"#, "cluster.snapshotThreshold"),
        (r#"{"cluster": {"tls": {"cert": "c"}}}"#, "cluster.tls.key"),
        (r#"{"user": ""}"#, "user"),
        (r#"{"group": true}"#, "group"),
        ("[]", "(top level)"),
    ];
    for (text, key) in cases {
        assert_eq!(bad_key(text), key, "{text}");
    }
}

#[test]
fn file_errors() {
    let err = parse_err("{\n  \"server\": {,}\n}");
    match &err {
        ConfigError::Json { line, column, .. } => assert_eq!((*line, *column), (2, 14)),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().starts_with("config error: test.json: invalid JSON"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("config.json");
    assert!(matches!(Config::load(&missing), Err(ConfigError::MissingFile { path }) if path == missing));
    assert!(matches!(Config::load(dir.path()), Err(ConfigError::Read { .. })));
    std::fs::write(&missing, r#"{"http": {"port": 9}}"#).unwrap();
    assert_eq!(http_addrs(&Config::load(&missing).unwrap().config), [sa("127.0.0.1:9")]);
}

#[test]
fn unknown_keys_are_named_in_warnings() {
    let loaded = parse(
        r#"{"foo": 1, "server": {"tcpTimout": 5, "address6": ["::"]},
            "http": {"bind": [{"address": "::", "tls": true}], "x": 0},
            "https": {"bind": [{"address": "::", "key": "k", "cert": "c", "sni": 1}]},
            "cluster": {"peers": []}}"#,
    );
    let w = loaded.warnings.join("\n");
    for key in [
        "unknown key foo ",
        "unknown key server.tcpTimout ",
        "unknown key http.bind[0].tls ",
        "unknown key http.x ",
        "unknown key https.bind[0].sni ",
        "unknown key cluster.peers ",
    ] {
        assert!(w.contains(key), "{key:?} not in\n{w}");
    }
    assert!(w.contains("server.address6 (0.2.x) is ignored"), "{w}");
}

#[test]
fn ignored_hipache_features_warn() {
    let loaded = parse(r#"{"driver": ["redis://:pw@host:6379"], "server": {"lruCache": {"size": 5}}}"#);
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("server.lruCache is unnecessary"));
    let loaded = parse(r#"{"http": {"bind": []}}"#);
    assert!(loaded.warnings[0].contains("no HTTP or HTTPS listener"));
}

#[test]
fn privileges_follow_master() {
    let c = parse(r#"{"user": "www-data"}"#).config;
    assert_eq!((c.user.as_deref(), c.group.as_deref()), (Some("www-data"), Some("www-data")));
    let c = parse(r#"{"user": 33, "group": "adm"}"#).config;
    assert_eq!((c.user.as_deref(), c.group.as_deref()), (Some("33"), Some("adm")));
    let c = parse(r#"{"user": "root"}"#).config;
    assert_eq!((c.user.as_deref(), c.group.as_deref()), (None, None));
}

#[test]
fn cluster_section() {
    let c = parse(
        r#"{"cluster": {"nodeId": 3, "resp": "[::1]:0", "grpc": "localhost:0", "metrics": null,
            "requirepass": "", "secret": "s3", "join": ["node1:7380", "127.0.0.1:7380"],
            "snapshotThreshold": 10, "tls": {"cert": "n.crt", "key": "n.key", "ca": "ca.pem"},
            "advertiseGrpc": "hr-2.hr.default.svc:7380", "advertiseResp": "hr-2.hr.default.svc:6380"}}"#,
    )
    .config
    .cluster;
    assert_eq!(c.node_id, 3);
    assert_eq!(c.advertise_grpc.as_deref(), Some("hr-2.hr.default.svc:7380"));
    assert_eq!(c.advertise_resp.as_deref(), Some("hr-2.hr.default.svc:6380"));
    assert_eq!(c.data_dir, PathBuf::from("./data/node-3"), "derived from nodeId");
    assert_eq!((c.resp, c.grpc), (sa("[::1]:0"), sa("127.0.0.1:0")));
    assert_eq!(c.metrics, None);
    assert_eq!(c.requirepass, None, "empty requirepass means no AUTH, as in Redis");
    assert_eq!(c.secret.as_deref(), Some("s3"));
    assert_eq!(c.join, ["node1:7380", "127.0.0.1:7380"]);
    assert_eq!(c.snapshot_threshold, 10);
    let tls = c.tls.unwrap();
    assert_eq!((tls.cert, tls.key, tls.ca), ("n.crt".into(), "n.key".into(), vec!["ca.pem".into()]));
}

#[test]
fn overrides_win() {
    let mut c = parse(r#"{"http": {"bind": ["::", "0.0.0.0"]}, "cluster": {"join": ["a:1"]}}"#).config;
    c.apply_overrides(Overrides {
        node_id: Some(2),
        resp: Some(sa("127.0.0.1:16380")),
        grpc: Some(sa("127.0.0.1:17380")),
        http: Some(sa("127.0.0.1:0")),
        metrics: Some(sa("127.0.0.1:19382")),
        join: Some(vec!["b:2".into()]),
        data_dir: None,
    });
    assert_eq!(c.cluster.metrics, Some(sa("127.0.0.1:19382")));
    assert_eq!(c.cluster.node_id, 2);
    assert_eq!(c.cluster.data_dir, PathBuf::from("./data/node-2"), "follows the new node id");
    assert_eq!((c.cluster.resp, c.cluster.grpc), (sa("127.0.0.1:16380"), sa("127.0.0.1:17380")));
    assert_eq!(http_addrs(&c), [sa("127.0.0.1:0")]);
    assert_eq!(c.cluster.join, ["b:2"]);

    c.apply_overrides(Overrides { data_dir: Some("/tmp/x".into()), ..Overrides::default() });
    c.apply_overrides(Overrides { node_id: Some(5), ..Overrides::default() });
    assert_eq!(c.cluster.data_dir, PathBuf::from("/tmp/x"), "an explicit dir stays");

    let mut c = parse(r#"{"cluster": {"dataDir": "/srv/raft"}}"#).config;
    c.apply_overrides(Overrides { node_id: Some(9), ..Overrides::default() });
    assert_eq!(c.cluster.data_dir, PathBuf::from("/srv/raft"), "the file's dir stays");
    let before = c.clone();
    c.apply_overrides(Overrides::default());
    assert_eq!(c, before);
}

#[test]
fn censored_json_hides_secrets_only() {
    let c = parse(
        r#"{"https": {"bind": "::", "key": "/etc/k.pem", "cert": "/etc/c.pem", "passphrase": "pw"},
            "server": {"tcpTimeout": 0, "connectTimeout": 0.5},
            "cluster": {"requirepass": "rp", "secret": "s", "tls": {"cert": "n.crt", "key": "n.key"},
                        "users": {"reader": {"password": "upw", "readonly": true}}}}"#,
    )
    .config;
    let v = c.censored_json();
    let text = v.to_string();
    assert_eq!(v["cluster"]["users"][0]["name"], "reader");
    for secret in ["/etc/k.pem", "\"pw\"", "\"rp\"", "\"s\"", "n.key", "upw"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert_eq!(v["https"][0]["key"], "********");
    assert_eq!(v["https"][0]["passphrase"], "********");
    assert_eq!(v["https"][0]["cert"], "/etc/c.pem");
    assert_eq!(v["https"][0]["addr"], "[::]:443");
    assert_eq!(v["cluster"]["requirepass"], "********");
    assert_eq!(v["cluster"]["secret"], "********");
    assert_eq!(v["cluster"]["tls"]["key"], "********");
    assert_eq!(v["cluster"]["tls"]["cert"], "n.crt");
    assert_eq!(v["server"]["tcpTimeout"], 0.0);
    assert_eq!(v["server"]["connectTimeout"], 0.5);
    assert_eq!(v["server"]["deadBackendOn500"], true);
    assert_eq!(v["server"]["accessLog"], "/var/log/hipache/access.log");
    assert_eq!(v["http"][0]["addr"], "127.0.0.1:80");

    let v = parse("{}").config.censored_json();
    assert!(v["cluster"]["requirepass"].is_null(), "unset secrets stay null");
}

#[test]
fn resolve_path_like_bin_hipache() {
    let base = Path::new("/opt/hipache");
    assert_eq!(resolve_path(None, None, base), PathBuf::from("/opt/hipache/config/config.json"));
    assert_eq!(resolve_path(None, Some("dev"), base), PathBuf::from("/opt/hipache/config/config_dev.json"));
    assert_eq!(resolve_path(None, Some(""), base), PathBuf::from("/opt/hipache/config/config.json"));
    assert_eq!(
        resolve_path(Some(Path::new("/etc/hipache.json")), Some("dev"), base),
        PathBuf::from("/etc/hipache.json")
    );
}

#[test]
fn driver_database_prefix_and_password() {
    let c = parse(r#"{"driver": "redis://:@127.0.0.1:6379/3#hip_"}"#).config;
    assert_eq!(c.driver, Driver { db: 3, prefix: "hip_".into(), password: None });
    assert_eq!(c.cluster.requirepass, None);
    let c = parse(r#"{"driver": ["redis://:pw@slave:6379/2#a", "redis://:other@master/5"]}"#).config;
    assert_eq!((c.driver.db, c.driver.prefix.as_str()), (2, "a"), "the first URL is where routes are read");
    assert_eq!(c.cluster.requirepass.as_deref(), Some("pw"), "the driver's password becomes requirepass");
    let c = parse(r#"{"driver": "redis://:pw@h/1", "cluster": {"requirepass": "mine"}}"#).config;
    assert_eq!(c.cluster.requirepass.as_deref(), Some("mine"), "cluster.requirepass wins");
    assert_eq!(parse("{}").config.driver, Driver::default());
    assert_eq!(bad_key(r#"{"driver": ["redis://h/99"]}"#), "driver[0]");
    assert_eq!(bad_key(r#"{"driver": 5}"#), "driver");
}

#[test]
fn limits_are_read_and_the_connection_limit_follows_the_descriptor_limit() {
    let c = parse(
        r#"{"server": {"headerTimeout": 0, "maxHeaderSize": 4096, "maxConnections": 50, "maxRetryBody": 0},
            "cluster": {"maxclients": 3}}"#,
    )
    .config;
    assert_eq!(c.server.header_timeout, None, "0 disables it, as for every timeout");
    assert_eq!(c.server.max_header_size, 4096);
    assert_eq!(c.proxy_options(1024).max_retry_body, 0, "0: no body is kept for a retry");
    assert_eq!(c.proxy_options(1024).max_connections, 50, "the file wins");
    assert_eq!(c.cluster.maxclients, 3);
    let default = parse("{}").config;
    assert_eq!(default.server.max_retry_body, 64 * 1024);
    assert_eq!(default.proxy_options(1024).max_connections, 384, "(1024 - 256 reserved) / 2");
    assert_eq!(default.proxy_options(1_048_576).max_connections, 524_160);
    assert_eq!(default.proxy_options(100).max_connections, 16, "never below 16");
}

#[test]
fn users_are_read_with_their_rights_and_bad_ones_are_named() {
    let c =
        parse(r#"{"cluster": {"users": {"reader": {"password": "p1", "readonly": true}, "ops": {"password": "p2"}}}}"#)
            .config;
    let mut users = c.cluster.users.clone();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(users[0], User { name: "ops".into(), password: "p2".into(), readonly: false });
    assert_eq!(users[1], User { name: "reader".into(), password: "p1".into(), readonly: true });
    for (json, key) in [
        (r#"{"cluster": {"users": {"default": {"password": "x"}}}}"#, "cluster.users.default"),
        (r#"{"cluster": {"users": {"r": {"readonly": true}}}}"#, "cluster.users.r.password"),
        (r#"{"cluster": {"users": {"r": {"password": ""}}}}"#, "cluster.users.r.password"),
        (r#"{"cluster": {"users": {"r": {"password": "x", "readonly": "yes"}}}}"#, "cluster.users.r.readonly"),
        (r#"{"cluster": {"users": []}}"#, "cluster.users"),
    ] {
        let e = parse_err(json).to_string();
        assert!(e.contains(key), "{json}: {e}");
    }
}
