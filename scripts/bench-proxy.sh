#!/usr/bin/env bash
# Benchmarks hipache-raft's proxy against the peers of the benchmark rig in $BENCH (direct, nginx, HAProxy,
# Node Hipache 0.3.1), interleaved in the same run, at 1, 64 and 256 connections.
#
# Usage: scripts/bench-proxy.sh            (from the repository root; ~5 min)
#        ROUNDS=1 DURATION=3 scripts/bench-proxy.sh   (smoke)
#        WORKERS="1 2" scripts/bench-proxy.sh         (one node per `server.workers` value, as
#                                                     targets hipache-raft-w1, -w2: the A/B of
#                                                     cost per request against worker count)
#        ACCESS_LOG=1 scripts/bench-proxy.sh          (access logs on: our nodes log to a file,
#                                                     and an extra nginx proxy, nginx-log, with
#                                                     the rig's config plus a buffered access log
#                                                     in Hipache's line format)
# Other env: CONNS, ROUNDS, DURATION, ONLY, TARGETS, EXTRA_TARGETS (more proxies you started, e.g. another
# build) as the rig's run.sh takes them; BIN (our binary).
# Needs: the rig set up once (`bash "$BENCH/setup.sh"`), and a release build
# (built here if missing). Starts hipache-raft on 127.0.0.1:${RAFT_PORT:-8084} (and the ports after
# it, one per WORKERS value) routing bench.local to the rig's backends, and stops what it started
# (by PID) on exit. Logs are written under a temporary directory and removed at exit.
# Results: the rig's table on stdout and under /tmp/proxybench-results/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="${BENCH:-$ROOT/../shared/bench}"
PORT="${RAFT_PORT:-8084}"
RESP_PORT="${RAFT_RESP_PORT:-6384}"
NGINX_LOG_PORT="${NGINX_LOG_PORT:-8091}"
WORK="$(mktemp -d /tmp/bench-hipache-raft.XXXXXX)"
BIN="${BIN:-$ROOT/target/release/hipache-raft}"
WORKERS="${WORKERS:-2}"
ACCESS_LOG="${ACCESS_LOG:-0}"

# The rig unpacks Node Hipache under peers/ (gitignored); without it the comparison lacks Hipache.
if [[ ! -d "$BENCH/peers" ]]; then
  echo "Node Hipache is not installed in the rig: run 'SKIP_APT=1 bash $BENCH/setup.sh' first" >&2
  exit 1
fi

if [[ ! -x "$BIN" ]]; then
  (cd "$ROOT" && cargo build --release)
fi

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Hipache's access-log line, for nginx: the same fields in the same order.
nginx_with_log() {
  mkdir -p "$WORK/nginx-log/logs"
  cat > "$WORK/nginx-log/nginx.conf" <<CONF
worker_processes ${PROXY_WORKERS:-2};
pid $WORK/nginx-log/nginx.pid;
error_log $WORK/nginx-log/error.log warn;
daemon off;
events { worker_connections 8192; multi_accept on; }
http {
  log_format hipache '\$remote_addr - - [\$time_local] "\$request" \$status \$body_bytes_sent '
                     '"\$http_referer" "\$http_user_agent" "bench" \$request_time \$upstream_response_time';
  access_log $WORK/nginx-log/access.log hipache buffer=64k flush=1s;
  keepalive_requests 1000000;
  upstream hello_backends {
    server 127.0.0.1:${BACKEND1_PORT:-9001};
    server 127.0.0.1:${BACKEND2_PORT:-9002};
    keepalive 128;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$NGINX_LOG_PORT backlog=4096;
    server_name bench.local;
    location / {
      proxy_pass http://hello_backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_buffering on;
    }
  }
}
CONF
  nginx -p "$WORK/nginx-log" -c "$WORK/nginx-log/nginx.conf" > "$WORK/nginx-log/stdout.log" 2>&1 &
  PIDS+=($!)
  echo $! > "$WORK/nginx-log.pid"
}

targets=""
i=0
for w in $WORKERS; do
  node="$WORK/w$w"
  mkdir -p "$node"
  port=$((PORT + i)) resp=$((RESP_PORT + i))
  if [[ "$ACCESS_LOG" == 1 ]]; then log="\"$node/access.log\""; else log=null; fi
  cat > "$node/config.json" <<EOF2
{
  "server": { "accessLog": $log, "httpKeepAlive": true, "maxSockets": 256, "tcpTimeout": 30,
              "deadBackendTTL": 30, "retryOnError": 3, "connectTimeout": 3, "shutdownTimeout": 5,
              "workers": $w },
  "http": { "bind": [{ "address": "127.0.0.1", "port": $port }] },
  "cluster": { "nodeId": 1, "dataDir": "$node/data", "resp": "127.0.0.1:$resp",
               "grpc": "127.0.0.1:0", "metrics": null }
}
EOF2
  "$BIN" --config "$node/config.json" > "$node/stdout.log" 2> "$node/stderr.log" &
  PIDS+=($!)
  echo $! > "$node/hipache-raft.pid"
  for _ in $(seq 1 100); do
    grep -q '"listening"' "$node/stdout.log" 2>/dev/null && break
    sleep 0.1
  done
  grep -q '"listening"' "$node/stdout.log" || { cat "$node/stderr.log"; echo "hipache-raft did not start" >&2; exit 1; }
  # The same route the rig gives Node Hipache (frontend:bench.local in its redis).
  redis-cli -p "$resp" DEL frontend:bench.local > /dev/null
  redis-cli -p "$resp" RPUSH frontend:bench.local bench http://127.0.0.1:9001 http://127.0.0.1:9002 > /dev/null
  name=hipache-raft
  [[ "$WORKERS" == *" "* ]] && name="hipache-raft-w$w"
  targets="$targets $name=$port:$node/hipache-raft.pid"
  i=$((i + 1))
done

if [[ "$ACCESS_LOG" == 1 ]]; then
  nginx_with_log
  targets="$targets nginx-log=$NGINX_LOG_PORT:$WORK/nginx-log.pid"
fi

EXTRA_TARGETS="$targets ${EXTRA_TARGETS:-}" bash "$BENCH/run.sh"
if [[ "$ACCESS_LOG" == 1 ]]; then
  for f in "$WORK"/w*/access.log "$WORK/nginx-log/access.log"; do
    echo "access log $f: $(wc -l < "$f") lines" >&2
  done
fi
