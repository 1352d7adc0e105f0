#!/usr/bin/env bash
# Benchmarks hipache-raft's proxy against the peers of the benchmark rig in $BENCH (direct, nginx, HAProxy,
# Node Hipache 0.3.1), interleaved in the same run, at 1, 64 and 256 connections.
#
# Usage: scripts/bench-proxy.sh            (from the repository root; ~5 min)
#        ROUNDS=1 DURATION=3 scripts/bench-proxy.sh   (smoke)
# Needs: the rig set up once (`bash "$BENCH/setup.sh"`), and a release build
# (built here if missing). Starts one hipache-raft node on 127.0.0.1:${RAFT_PORT:-8084} routing
# bench.local to the rig's backends, and stops it (by its own PID) on exit.
# Results: the rig's table on stdout and under /tmp/proxybench-results/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="${BENCH:-$ROOT/../shared/bench}"
PORT="${RAFT_PORT:-8084}"
RESP_PORT="${RAFT_RESP_PORT:-6384}"
WORK="$(mktemp -d /tmp/bench-hipache-raft.XXXXXX)"
BIN="${BIN:-$ROOT/target/release/hipache-raft}"

# The rig unpacks Node Hipache under peers/ (gitignored); without it the comparison lacks Hipache.
if [[ ! -d "$BENCH/peers" ]]; then
  echo "Node Hipache is not installed in the rig: run 'SKIP_APT=1 bash $BENCH/setup.sh' first" >&2
  exit 1
fi

if [[ ! -x "$BIN" ]]; then
  (cd "$ROOT" && cargo build --release)
fi

cat > "$WORK/config.json" <<EOF
{
  "server": { "accessLog": null, "httpKeepAlive": true, "maxSockets": 256, "tcpTimeout": 30,
              "deadBackendTTL": 30, "retryOnError": 3, "connectTimeout": 3, "shutdownTimeout": 5,
              "workers": ${WORKERS:-2} },
  "http": { "bind": [{ "address": "127.0.0.1", "port": $PORT }] },
  "cluster": { "nodeId": 1, "dataDir": "$WORK/data", "resp": "127.0.0.1:$RESP_PORT",
               "grpc": "127.0.0.1:0", "metrics": null }
}
EOF

RAFT_PID=""
cleanup() {
  if [[ -n "$RAFT_PID" ]] && kill -0 "$RAFT_PID" 2>/dev/null; then
    kill -TERM "$RAFT_PID"
    wait "$RAFT_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" --config "$WORK/config.json" > "$WORK/stdout.log" 2> "$WORK/stderr.log" &
RAFT_PID=$!
echo "$RAFT_PID" > "$WORK/hipache-raft.pid"

for _ in $(seq 1 100); do
  grep -q '"listening"' "$WORK/stdout.log" 2>/dev/null && break
  sleep 0.1
done
grep -q '"listening"' "$WORK/stdout.log" || { cat "$WORK/stderr.log"; echo "hipache-raft did not start" >&2; exit 1; }

# The same route the rig gives Node Hipache (frontend:bench.local in its redis).
redis-cli -p "$RESP_PORT" DEL frontend:bench.local > /dev/null
redis-cli -p "$RESP_PORT" RPUSH frontend:bench.local bench http://127.0.0.1:9001 http://127.0.0.1:9002 > /dev/null

EXTRA_TARGETS="hipache-raft=$PORT:$WORK/hipache-raft.pid" bash "$BENCH/run.sh"
