#!/usr/bin/env bash
# Shared by scripts/bench-scale.sh and scripts/bench-churn.sh (sourced, not run): a private
# nginx backend, hipache-raft nodes on ports the kernel picks, the frontends file, and cleanup
# of every process started here by its own PID. Everything listens on 127.0.0.1.
# Sets ROOT (the repository), BIN (the release binary, built by need_tools if missing) and
# WORK (a fresh directory, removed on exit).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/hipache-raft}"
WORK="$(mktemp -d "/tmp/$(basename "$0" .sh).XXXXXX")"

# sizes FULL_N FULL_DURATION QUICK_N QUICK_DURATION "$@": sets N and DURATION (the env's, else
# the full run's); `--quick` as the first argument picks the quick run's (N from QUICK_N if set).
sizes() {
  N="${N:-$1}"
  DURATION="${DURATION:-$2}"
  if [[ "${5:-}" == "--quick" ]]; then
    N="${QUICK_N:-$3}"
    DURATION="$4"
  fi
}

PIDS=()
# Commands run at exit before the processes in PIDS are stopped (a cluster's `down`).
AT_EXIT=()
cleanup() {
  for cmd in "${AT_EXIT[@]}"; do
    eval "$cmd" > /dev/null 2>&1 || true
  done
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

need_tools() {
  for tool in "$@"; do
    command -v "$tool" > /dev/null || { echo "$(basename "$0") needs $tool" >&2; exit 1; }
  done
  if [[ ! -x "$BIN" ]]; then
    (cd "$ROOT" && cargo build --release)
  fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }

# write_frontends N FILE: N frontends `frontend:h<i>.test` = [app<i>, two backend URLs on
# 127.0.x.y / 127.1.x.y] as raw RESP for `redis-cli --pipe`.
write_frontends() {
  python3 - "$1" > "$2" <<'EOF'
import sys
n = int(sys.argv[1])
out = sys.stdout.buffer
def cmd(*parts):
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
chunk = []
for i in range(n):
    a, b, port = (i >> 8) & 255, i & 255, 8000 + i % 1000
    chunk.append(cmd(b"RPUSH", b"frontend:h%d.test" % i, b"app%d" % i,
                     b"http://127.0.%d.%d:%d" % (a, b, port), b"http://127.1.%d.%d:%d" % (a, b, port + 1000)))
    if len(chunk) == 10000:
        out.write(b"".join(chunk))
        chunk = []
out.write(b"".join(chunk))
EOF
}

# start_redis: redis-server 7 as durable as a node (AOF, appendfsync always) on
# 127.0.0.1:$REDIS_PORT with its files in $WORK/redis, once it answers. Sets REDIS_PORT and
# REDIS_PID.
start_redis() {
  REDIS_PORT="$(free_port)"
  mkdir -p "$WORK/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/redis" --save '' \
    --appendonly yes --appendfsync always > "$WORK/redis.log" 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  for _ in $(seq 1 200); do
    redis-cli -p "$REDIS_PORT" ping > /dev/null 2>&1 && break
    sleep 0.05
  done
}

# start_backend: a private nginx answering 200 "ok" on 127.0.0.1:$BACKEND_PORT.
start_backend() {
  BACKEND_PORT="$(free_port)"
  mkdir -p "$WORK/nginx/logs"
  cat > "$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  server { listen 127.0.0.1:$BACKEND_PORT; keepalive_requests 1000000; location / { return 200 "ok\n"; } }
}
EOF
  nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
  PIDS+=($!)
}

# start_node NAME: a one-node cluster on $WORK/NAME (reused if it exists). Sets NODE_PID,
# RESP_PORT, HTTP_PORT and START (when it was started).
start_node() {
  cat > "$WORK/$1.json" <<EOF
{
  "server": { "accessLog": null, "workers": 2, "httpKeepAlive": true, "maxSockets": 256 },
  "http": { "port": 0, "bind": ["127.0.0.1"] },
  "cluster": { "nodeId": 1, "dataDir": "$WORK/$1", "resp": "127.0.0.1:0", "grpc": "127.0.0.1:0",
               "metrics": null }
}
EOF
  # shellcheck disable=SC2034 # read by the sourcing scripts
  START="$(now)"
  RUST_LOG=warn "$BIN" --config "$WORK/$1.json" > "$WORK/$1.out" 2> "$WORK/$1.err" &
  NODE_PID=$!
  PIDS+=("$NODE_PID")
  for _ in $(seq 1 600); do
    grep -q '"listening"' "$WORK/$1.out" 2>/dev/null && break
    sleep 0.01
  done
  grep -q '"listening"' "$WORK/$1.out" || { cat "$WORK/$1.err"; echo "hipache-raft did not start" >&2; exit 1; }
  RESP_PORT="$(grep -o '"resp":"[^"]*"' "$WORK/$1.out" | tail -1 | sed 's/.*:\([0-9]*\)"$/\1/')"
  HTTP_PORT="$(grep -o '"http":\["[^"]*"' "$WORK/$1.out" | tail -1 | sed 's/.*:\([0-9]*\)"$/\1/')"
}

stop_node() {
  kill -TERM "$NODE_PID"
  wait "$NODE_PID" 2>/dev/null || true
}

# add_hot_hosts K: frontends hot0.test .. hot<K-1>.test routed to the backend.
add_hot_hosts() {
  for i in $(seq 0 $(( $1 - 1 ))); do
    redis-cli -p "$RESP_PORT" RPUSH "frontend:hot$i.test" "hot$i" "http://127.0.0.1:$BACKEND_PORT" > /dev/null
  done
  curl -sf -H "Host: hot0.test" "http://127.0.0.1:$HTTP_PORT/" > /dev/null || { echo "the hot host is not served" >&2; exit 1; }
}

# hot_wrk: wrk (2 threads, 64 connections) for $DURATION s, spreading its requests over the
# $HOT hot hosts. Prints "req/s p99_ms socket_errors non_2xx requests".
hot_wrk() {
  cat > "$WORK/hot.lua" <<EOF
local hosts = {}
for i = 0, $(( HOT - 1 )) do hosts[#hosts + 1] = "hot" .. i .. ".test" end
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/", { Host = hosts[(n % #hosts) + 1] })
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %.3f %d %d %d\\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(99) / 1000, e.connect + e.read + e.write + e.timeout, e.status, summary.requests))
end
EOF
  wrk -t2 -c64 -d"${DURATION}s" -s "$WORK/hot.lua" "http://127.0.0.1:$HTTP_PORT/" | awk '/^RESULT/ {print $2, $3, $4, $5, $6}'
}
