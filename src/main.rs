//! The `hipache-raft` binary: parse the CLI and config, bind every listener, start the Raft
//! node, serve until SIGTERM/SIGINT, then drain and exit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use hipache_raft::config::{self, Config, Overrides};
use hipache_raft::grpc::{self, cli};
use hipache_raft::peer_tls::PeerTls;
use hipache_raft::privileges::Account;
use hipache_raft::pubsub::PubSub;
use hipache_raft::raft::{NodeInfo, NodeOptions, RaftNode};
use hipache_raft::resp::{self, RespOptions};
use hipache_raft::secret::Secret;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// jemalloc, as redis-server uses, instead of glibc malloc: a proxied request makes a few
/// dozen small allocations (header maps, bodies, futures) and its thread cache serves them
/// without a lock. It replaced mimalloc (docs/benchmarks.md, "Scale"), at the same proxy
/// throughput: a keyspace of persistent maps frees the blocks its path copies replaced all
/// over the heap while a bulk load runs, and the survivors pin half-empty pages. After loading
/// 1,000,000 frontends (272 MB live in each case) RSS settled at 380 MB with mimalloc, 333 MB
/// with jemalloc, 301 MB with the keyspace in an arena of its own ([`keyspace_arena`]).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first allocation (`_RJEM_MALLOC_CONF` in the environment
/// still wins): background threads give freed memory back to the system, as redis-server
/// configures its jemalloc. Without them memory is purged only when some thread happens to
/// allocate past the decay time, and an idle node never does: after a restart at 1,000,000
/// frontends the snapshot's read buffer and the loader's scratch would stay resident.
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &u8 = &b"background_thread:true\0"[0];

/// An arena of its own for the node's runtime (Raft, the state machine, RESP, gRPC), where the
/// keyspace is built, so its long-lived blocks do not share pages with the proxy's short-lived
/// ones or spread over every thread's arena. `None` when jemalloc refuses (then threads keep
/// the arena it gave them).
fn keyspace_arena() -> Option<std::ffi::c_uint> {
    // SAFETY: `arenas.create` is read as an unsigned int, the type jemalloc documents for it.
    match unsafe { tikv_jemalloc_ctl::raw::read::<std::ffi::c_uint>(b"arenas.create\0") } {
        Ok(arena) => Some(arena),
        Err(e) => {
            tracing::warn!(error = %e, "no arena of its own for the keyspace: it shares the proxy's");
            None
        }
    }
}

/// Makes the calling thread allocate from `arena`.
fn use_arena(arena: std::ffi::c_uint) {
    // SAFETY: `thread.arena` is written as an unsigned int naming an existing arena.
    if let Err(e) = unsafe { tikv_jemalloc_ctl::raw::write(b"thread.arena\0", arena) } {
        tracing::warn!(error = %e, arena, "thread left in the arena jemalloc gave it");
    }
}

/// A Hipache-compatible reverse proxy whose routing state lives in an embedded Raft cluster.
#[derive(Debug, Parser)]
#[command(name = "hipache-raft", version)]
struct Cli {
    /// Hipache config file (default: config/config.json, or config/config_$SETTINGS_FLAVOR.json).
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Print the effective configuration (secrets censored) and exit.
    #[arg(short, long)]
    dry: bool,
    /// Overrides cluster.nodeId.
    #[arg(long)]
    node_id: Option<u64>,
    /// Overrides cluster.dataDir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Overrides cluster.resp (RESP admin listener), e.g. 127.0.0.1:6380.
    #[arg(long)]
    resp: Option<SocketAddr>,
    /// Overrides cluster.grpc (gRPC admin and Raft listener).
    #[arg(long)]
    grpc: Option<SocketAddr>,
    /// Replaces every HTTP listener of the config with this one.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Overrides cluster.metrics (Prometheus listener), e.g. 127.0.0.1:9382.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Overrides cluster.advertiseGrpc: the host:port peers dial for this node's gRPC.
    #[arg(long)]
    advertise_grpc: Option<String>,
    /// Overrides cluster.advertiseResp: the host:port other nodes list for this node's RESP.
    #[arg(long)]
    advertise_resp: Option<String>,
    /// Overrides cluster.join: gRPC addresses of existing members, comma-separated.
    #[arg(long, value_delimiter = ',')]
    join: Option<Vec<String>>,
    /// Seconds to keep trying to join (the cluster may still be starting) before giving up.
    #[arg(long, env = "HIPACHE_RAFT_JOIN_TIMEOUT", default_value_t = 120)]
    join_timeout: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Cluster administration against any node's gRPC port.
    Cluster {
        /// gRPC address (host:port) of any member.
        #[arg(long, default_value = "127.0.0.1:7380")]
        addr: String,
        /// The cluster.secret, if the cluster has one.
        #[arg(long, env = "HIPACHE_RAFT_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Client certificate, key and CA (PEM) when the cluster uses mutual TLS (cluster.tls).
        #[arg(long, requires_all = ["tls_key", "tls_ca"])]
        tls_cert: Option<PathBuf>,
        #[arg(long)]
        tls_key: Option<PathBuf>,
        #[arg(long)]
        tls_ca: Option<PathBuf>,
        #[command(subcommand)]
        action: ClusterAction,
    },
}

#[derive(Debug, clap::Subcommand)]
enum ClusterAction {
    /// Members, roles, term, leader, commit and applied index per node.
    Status,
    /// Adds a node (started with an empty data dir) as learner, then voter.
    AddNode {
        #[arg(long)]
        id: u64,
        /// The new node's gRPC address.
        #[arg(long)]
        grpc: String,
        /// The new node's RESP address.
        #[arg(long)]
        resp: String,
    },
    /// Removes a node from the membership.
    RemoveNode {
        #[arg(long)]
        id: u64,
    },
}

/// Runs a `cluster …` subcommand and exits: 0 on success, 1 when the call failed.
fn cluster_command(addr: &str, secret: Option<&str>, tls: Option<PeerTls>, action: &ClusterAction) -> ExitCode {
    let action = match action {
        ClusterAction::Status => cli::Action::Status,
        ClusterAction::AddNode { id, grpc, resp } => {
            cli::Action::AddNode { id: *id, grpc: grpc.clone(), resp: resp.clone() }
        }
        ClusterAction::RemoveNode { id } => cli::Action::RemoveNode { id: *id },
    };
    let secret = Secret::new(secret);
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(cli::run(addr, &secret, tls.as_ref(), action)).map_err(|e| e.to_string()));
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    // As redis-server does (`disable-thp`): transparent huge pages back a 2 MiB page wherever
    // the allocator touches a byte of it, and a keyspace of persistent maps frees and reuses
    // small blocks all over its heap. Measured at 1,000,000 frontends: RSS 510 MB with THP,
    // 445-467 MB without, and the same load time. Done before the first large allocation.
    let thp_disabled = nix::sys::prctl::set_thp_disable(true);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn,raft_log=warn,chunked_wal=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = thp_disabled {
        tracing::debug!(error = %e, "transparent huge pages left as the kernel has them");
    }
    let cli = Cli::parse();
    if let Some(Command::Cluster { addr, secret, action, tls_cert, tls_key, tls_ca }) = &cli.command {
        let tls = match (tls_cert, tls_key, tls_ca) {
            (Some(c), Some(k), Some(ca)) => match PeerTls::load(c, k, std::slice::from_ref(ca)) {
                Ok(t) => Some(t),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            },
            _ => None,
        };
        return cluster_command(addr, secret.as_deref(), tls, action);
    }
    let config = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if cli.dry {
        println!("{}", serde_json::to_string_pretty(&config.censored_json()).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    // The node's runtime: Raft, RESP, gRPC, metrics. The proxy runs on threads of its own
    // (`proxy::server`). `server.workers` sizes both, so a node given fewer cores than the
    // machine has (three nodes on one machine, `scripts/cluster.sh`) keeps to them.
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(arena) = keyspace_arena() {
        // The main thread too: it runs `run`, which loads the snapshot at start-up.
        use_arena(arena);
        runtime.on_thread_start(move || use_arena(arena));
    }
    if let Some(n) = config.server.workers {
        runtime.worker_threads(n.max(1));
    }
    let join_timeout = std::time::Duration::from_secs(cli.join_timeout);
    let result = runtime
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
        .and_then(|rt| rt.block_on(run(config, join_timeout)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(cli: &Cli) -> Result<Config, config::ConfigError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let flavor = std::env::var("SETTINGS_FLAVOR").ok();
    let path = config::resolve_path(cli.config.as_deref(), flavor.as_deref(), &cwd);
    let loaded = Config::load(&path)?;
    for w in &loaded.warnings {
        tracing::warn!(file = %path.display(), "{w}");
    }
    let mut config = loaded.config;
    config.apply_overrides(Overrides {
        node_id: cli.node_id,
        data_dir: cli.data_dir.clone(),
        resp: cli.resp,
        grpc: cli.grpc,
        http: cli.http,
        metrics: cli.metrics,
        join: cli.join.clone(),
    });
    if cli.advertise_grpc.is_some() {
        config.cluster.advertise_grpc = cli.advertise_grpc.clone();
    }
    if cli.advertise_resp.is_some() {
        config.cluster.advertise_resp = cli.advertise_resp.clone();
    }
    Ok(config)
}

/// The address peers should use: the configured one, else the bound one (with a warning when
/// that is a wildcard address no peer can dial).
fn advertised(configured: Option<&str>, bound: SocketAddr, bind_key: &str, advertise_key: &str) -> String {
    if let Some(a) = configured {
        return a.to_string();
    }
    if bound.ip().is_unspecified() {
        tracing::warn!(
            "{bind_key} binds {bound}, which other nodes cannot dial: set {advertise_key} before adding nodes"
        );
    }
    bound.to_string()
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} ({what})"))
}

async fn run(config: Config, join_timeout: std::time::Duration) -> anyhow::Result<()> {
    // Resolved first, so a name that does not exist stops the start before anything is bound.
    let account = Account::resolve(config.user.as_deref(), config.group.as_deref())?;
    // SIGUSR1 means "reopen the access log" (logrotate, `systemctl reload`). Registering it here
    // replaces the default action (terminate) for the whole process lifetime, so the signal is
    // harmless even when the access log is off.
    let _ = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
        .context("cannot handle SIGUSR1")?;
    // SIGHUP (terminal hang-up, and many logrotate recipes) means the same as SIGUSR1 instead of
    // killing the node; the configuration is read once and is not reloaded.
    let mut hangup =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("cannot handle SIGHUP")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: the access log is reopened, as on SIGUSR1; the config file is not reloaded");
        }
    });
    let resp_listener = bind(config.cluster.resp, "cluster.resp").await?;
    let resp_addr = resp_listener.local_addr()?;
    let grpc_listener = bind(config.cluster.grpc, "cluster.grpc").await?;
    let grpc_addr = grpc_listener.local_addr()?;
    warn_if_exposed(resp_addr, config.cluster.requirepass.is_some(), "cluster.resp", "cluster.requirepass");
    warn_if_exposed(grpc_addr, config.cluster.secret.is_some(), "cluster.grpc", "cluster.secret");
    let secret = Secret::new(config.cluster.secret.as_deref());
    let tls = match &config.cluster.tls {
        Some(t) => Some(PeerTls::load(&t.cert, &t.key, &t.ca)?),
        None => None,
    };

    let info = NodeInfo {
        grpc: advertised(config.cluster.advertise_grpc.as_deref(), grpc_addr, "cluster.grpc", "cluster.advertiseGrpc"),
        resp: advertised(config.cluster.advertise_resp.as_deref(), resp_addr, "cluster.resp", "cluster.advertiseResp"),
    };
    let opts = NodeOptions {
        node_id: config.cluster.node_id,
        data_dir: config.cluster.data_dir.clone(),
        info: info.clone(),
        snapshot_threshold: config.cluster.snapshot_threshold,
        join: config.cluster.join.clone(),
        secret: secret.clone(),
        tls: tls.clone(),
        source_ip: Some(grpc_addr.ip()).filter(|ip| !ip.is_unspecified()),
        disk_reserve: config.cluster.disk_reserve,
    };
    let node = RaftNode::start(opts, Arc::new(PubSub::default())).await.context("cannot start the Raft node")?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let keys = config.driver.routing_keys();
    let max_message = config.cluster.grpc_max_message_size;
    let grpc_task =
        tokio::spawn(grpc::serve(grpc_listener, node.clone(), secret, tls, keys, max_message, shutdown_rx.clone()));
    if !config.cluster.join.is_empty() && !node.is_initialized().await {
        let leader = node.join(&config.cluster.join, &info, join_timeout).await.context("cannot join the cluster")?;
        tracing::info!(leader, "joined the cluster");
    }
    let resp_opts = RespOptions {
        requirepass: config.cluster.requirepass.clone(),
        max_bulk_len: Some(config.cluster.proto_max_bulk_len),
        maxclients: config.cluster.maxclients,
        pubsub_buffer_limit: config.cluster.pubsub_buffer_limit,
        users: config
            .cluster
            .users
            .iter()
            .map(|u| resp::User { name: u.name.clone(), password: u.password.clone(), readonly: u.readonly })
            .collect(),
    };
    let resp_task = tokio::spawn(resp::serve(resp_listener, node.clone(), resp_opts, shutdown_rx.clone()));

    // --- proxy wiring: bind the data plane, report its addresses, drain on shutdown ---
    tracing::info!(
        "routes are read from database {} under the key prefix {:?} (`driver`: its host and port are ignored, the store is embedded)",
        config.driver.db,
        config.driver.prefix
    );
    if let Some(addr) = config.cluster.metrics {
        hipache_raft::metrics::install(addr)?;
        hipache_raft::metrics::spawn_raft_gauges(&node);
    }
    let proxy = hipache_raft::proxy::Proxy::bind(config.proxy_options(open_files_limit()), node.clone())
        .await
        .context("cannot start the proxy")?;
    let (http_addrs, https_addrs) = (proxy.http_addrs(), proxy.https_addrs());
    // Every listener is bound and the access log is open: root is no longer needed.
    if let Some(account) = &account {
        let mut owned = vec![config.cluster.data_dir.as_path()];
        if let config::AccessLog::File(path) = &config.server.access_log {
            owned.push(path);
        }
        account.switch(&owned, &config.cluster.data_dir)?;
        tracing::info!(user = %account.user, uid = account.uid.as_raw(), gid = account.gid.as_raw(), "dropped privileges");
    }
    let proxy = proxy.start(shutdown_rx.clone()).context("cannot start the proxy")?;
    // --- end proxy wiring ---

    let stopped = stop_signals();
    // One machine-readable line: tests and scripts bind port 0 and read the real ports here.
    println!(
        "{}",
        serde_json::json!({
            "event": "listening",
            "node_id": node.id(),
            "resp": resp_addr.to_string(),
            "grpc": grpc_addr.to_string(),
            "http": http_addrs,
            "https": https_addrs,
        })
    );
    tracing::info!(node_id = node.id(), resp = %resp_addr, "hipache-raft started");

    stopped.await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    let _ = resp_task.await;
    proxy.drained().await;
    let _ = grpc_task.await;
    node.shutdown().await;
    Ok(())
}

/// The stop signals (SIGTERM, SIGINT), caught from the moment this is called: `main` calls it
/// before it reports "listening", so a supervisor that stops the node right after it is ready
/// gets the graceful drain, not the default action (killed at once).
fn stop_signals() -> impl std::future::Future<Output = ()> {
    use hipache_raft::signals;
    use tokio::signal::unix::SignalKind;
    let lost = "it stops the node without the drain";
    let mut term = signals::install(SignalKind::terminate(), "SIGTERM", lost);
    let mut int = signals::install(SignalKind::interrupt(), "SIGINT", lost);
    async move {
        tokio::select! {
            _ = signals::next(&mut term) => {}
            _ = signals::next(&mut int) => {}
        }
    }
}

/// Raises the soft descriptor limit to the hard one, as nginx's `worker_rlimit_nofile` and
/// redis-server do: 10,000 idle clients need 10,000 descriptors, and the soft limit is often
/// 1,024. Returns the limit in force, from which the default `server.maxConnections` follows.
fn open_files_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return 1024 };
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                tracing::info!(from = soft, to = hard, "raised the open-files limit");
                return hard;
            }
            Err(e) => tracing::warn!(limit = soft, error = %e, "cannot raise the open-files limit"),
        }
    }
    soft
}

/// An admin listener reachable from other hosts without a password lets anyone who reaches it
/// rewrite every route: said once at start, naming the keys that fix it.
fn warn_if_exposed(addr: std::net::SocketAddr, protected: bool, listener: &str, password: &str) {
    if !protected && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "{listener} is reachable from other hosts and has no password: anyone who reaches it can change every route; set {password}, or bind it to 127.0.0.1"
        );
    }
}
