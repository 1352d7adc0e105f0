//! The `hipache-raft` binary: parse the CLI and config, bind every listener, start the Raft
//! node, serve until SIGTERM/SIGINT, then drain and exit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use hipache_raft::config::{self, Config, Overrides};
use hipache_raft::grpc;
use hipache_raft::pubsub::PubSub;
use hipache_raft::raft::{NodeInfo, NodeOptions, RaftNode};
use hipache_raft::resp::{self, RespOptions};
use hipache_raft::secret::Secret;
use tokio::net::TcpListener;
use tokio::sync::watch;

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
    /// Overrides cluster.join: gRPC addresses of existing members, comma-separated.
    #[arg(long, value_delimiter = ',')]
    join: Option<Vec<String>>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sled=warn,openraft=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.server.workers {
        runtime.worker_threads(n.max(1));
    }
    let result = runtime.enable_all().build().context("cannot start the tokio runtime").and_then(|rt| rt.block_on(run(config)));
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
        join: cli.join.clone(),
    });
    Ok(config)
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} ({what})"))
}

async fn run(config: Config) -> anyhow::Result<()> {
    let resp_listener = bind(config.cluster.resp, "cluster.resp").await?;
    let resp_addr = resp_listener.local_addr()?;
    let grpc_listener = bind(config.cluster.grpc, "cluster.grpc").await?;
    let grpc_addr = grpc_listener.local_addr()?;
    let secret = Secret::new(config.cluster.secret.as_deref());

    let info = NodeInfo { grpc: grpc_addr.to_string(), resp: resp_addr.to_string() };
    let opts = NodeOptions {
        node_id: config.cluster.node_id,
        data_dir: config.cluster.data_dir.clone(),
        info: info.clone(),
        snapshot_threshold: config.cluster.snapshot_threshold,
        join: config.cluster.join.clone(),
        secret: secret.clone(),
    };
    let node = RaftNode::start(opts, Arc::new(PubSub::default())).await.context("cannot start the Raft node")?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let grpc_task = tokio::spawn(grpc::serve(grpc_listener, node.clone(), secret, shutdown_rx.clone()));
    if !config.cluster.join.is_empty() && !node.is_initialized().await {
        let leader = node
            .join(&config.cluster.join, &info, std::time::Duration::from_secs(120))
            .await
            .context("cannot join the cluster")?;
        tracing::info!(leader, "joined the cluster");
    }
    let resp_opts = RespOptions { requirepass: config.cluster.requirepass.clone(), max_bulk_len: None };
    let resp_task = tokio::spawn(resp::serve(resp_listener, node.clone(), resp_opts, shutdown_rx.clone()));

    // One machine-readable line: tests and scripts bind port 0 and read the real ports here.
    println!(
        "{}",
        serde_json::json!({
            "event": "listening",
            "node_id": node.id(),
            "resp": resp_addr.to_string(),
            "grpc": grpc_addr.to_string(),
        })
    );
    tracing::info!(node_id = node.id(), resp = %resp_addr, "hipache-raft started");

    wait_for_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    let _ = resp_task.await;
    let _ = grpc_task.await;
    node.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install the SIGTERM handler");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
