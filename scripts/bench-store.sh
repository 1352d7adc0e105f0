#!/usr/bin/env bash
# Issue 3's benchmark: durable writes on one node. Runs
#   redis-benchmark -t rpush,lrange_100 -n $N -c $C
# against one release-built hipache-raft node and, in the same sitting, against a private
# `redis-server --appendonly yes --appendfsync always` (its own directory and port), then prints
# a table. Both are started here and stopped by their own PIDs on exit; nothing else is touched.
#
# Usage: scripts/bench-store.sh                     (from anywhere; ~1-2 min)
#        N=20000 scripts/bench-store.sh             (quicker)
# Env:   N (requests, 100000), C (clients, 50), REDIS_PORT (6391), BIN (release binary).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/hipache-raft}"
N="${N:-100000}"
C="${C:-50}"
REDIS_PORT="${REDIS_PORT:-6391}"
WORK="$(mktemp -d /tmp/bench-store.XXXXXX)"

if [[ ! -x "$BIN" ]]; then
  (cd "$ROOT" && cargo build --release)
fi

NODE_PID=""
REDIS_PID=""
cleanup() {
  for pid in "$NODE_PID" "$REDIS_PID"; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# RESP on an ephemeral port: the node reports the real one on its "listening" line.
cat > "$WORK/config.json" <<EOF
{
  "server": { "accessLog": null, "workers": 2 },
  "http": { "port": 0, "bind": ["127.0.0.1"] },
  "cluster": { "nodeId": 1, "dataDir": "$WORK/node", "resp": "127.0.0.1:0", "grpc": "127.0.0.1:0",
               "metrics": null }
}
EOF
RUST_LOG=warn "$BIN" --config "$WORK/config.json" > "$WORK/node.out" 2> "$WORK/node.err" &
NODE_PID=$!
for _ in $(seq 1 200); do
  grep -q '"listening"' "$WORK/node.out" 2>/dev/null && break
  sleep 0.05
done
NODE_PORT="$(grep -o '"resp":"[^"]*"' "$WORK/node.out" | head -1 | sed 's/.*:\([0-9]*\)"$/\1/')"
[[ -n "$NODE_PORT" ]] || { cat "$WORK/node.err"; echo "hipache-raft did not start" >&2; exit 1; }

mkdir -p "$WORK/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/redis" --save '' \
  --appendonly yes --appendfsync always > "$WORK/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 1 200); do
  redis-cli -p "$REDIS_PORT" ping > /dev/null 2>&1 && break
  sleep 0.05
done

# "RPUSH: 12345.67 requests per second, p50=..." -> 12345.67
rate() { grep "^$1" "$2" | head -1 | sed 's/.*: *\([0-9.]*\) requests per second.*/\1/'; }
p50() { grep "^$1" "$2" | head -1 | sed -n 's/.*p50=\([0-9.]*\) msec.*/\1/p'; }

bench() {
  redis-benchmark -p "$2" -t rpush,lrange_100 -n "$N" -c "$C" -q 2>/dev/null | tr '\r' '\n' \
    | grep 'requests per second' > "$WORK/$1.txt"
}
bench hipache-raft "$NODE_PORT"
bench redis-aof "$REDIS_PORT"

echo "redis-benchmark -t rpush,lrange_100 -n $N -c $C   ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores)"
printf '| %-42s | %12s | %9s | %17s | %9s |\n' server "RPUSH/s" "p50 ms" "LRANGE_100/s" "p50 ms"
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..44})" "--------------" "-----------" "-------------------" "-----------"
for s in hipache-raft redis-aof; do
  label="$s"
  [[ "$s" == redis-aof ]] && label="redis-server 7.0 appendfsync always"
  [[ "$s" == hipache-raft ]] && label="hipache-raft (1 node, raft-log WAL, group fsync)"
  printf '| %-42s | %12s | %9s | %17s | %9s |\n' "$label" \
    "$(rate RPUSH "$WORK/$s.txt")" "$(p50 RPUSH "$WORK/$s.txt")" \
    "$(rate LRANGE_100 "$WORK/$s.txt")" "$(p50 LRANGE_100 "$WORK/$s.txt")"
done
