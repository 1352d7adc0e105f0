#!/usr/bin/env bash
# Simulated power cuts on one node: its data dir lives on LazyFS (a FUSE file system from the
# Jepsen project that keeps every write not yet fsync'd in its own cache and drops that cache on
# command). Each trial writes W acknowledged RPUSH one at a time, SIGKILLs the node right after
# the last acknowledgement, drops LazyFS's unsynced data ("lazyfs::clear-cache": what a power
# cut does to a disk), restarts the node on the same dir and counts what survived.
#
# Usage: LAZYFS=/path/to/lazyfs/build/lazyfs scripts/power-loss-lazyfs.sh [TRIALS] [WRITES]
# Needs: root, /dev/fuse, fusermount3 (Debian's fuse3), redis-py (python3 -c 'import redis'),
#        a release build (BIN overrides it). LazyFS itself is not part of this repository:
#        build it from its public sources (dsrhaslab/lazyfs) with Debian's libfuse3-dev.
# Prints one line per trial and exits 1 if any acknowledged write was lost.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/hipache-raft}"
LAZYFS="${LAZYFS:?set LAZYFS to the lazyfs binary}"
TRIALS="${1:-10}"
WRITES="${2:-2000}"
WORK="$(mktemp -d /tmp/power-loss.XXXXXX)"
LAZY_PID=""
NODE_PID=""

cleanup() {
  if [[ -n "$NODE_PID" ]]; then kill -9 "$NODE_PID" 2>/dev/null || true; fi
  fusermount3 -u "$WORK/mnt" 2>/dev/null || true
  if [[ -n "$LAZY_PID" ]]; then kill "$LAZY_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# Starts the node (NODE_PID) and sets PORT to its RESP port.
start_node() {
  : > "$WORK/node.out"
  RUST_LOG=warn "$BIN" --config "$WORK/config.json" > "$WORK/node.out" 2>> "$WORK/node.err" &
  NODE_PID=$!
  for _ in $(seq 1 400); do
    grep -q '"listening"' "$WORK/node.out" 2>/dev/null && break
    sleep 0.05
  done
  PORT="$(grep -o '"resp":"[^"]*"' "$WORK/node.out" | head -1 | sed 's/.*:\([0-9]*\)"$/\1/')"
  [[ -n "$PORT" ]] || { cat "$WORK/node.err" >&2; echo "the node did not start" >&2; exit 2; }
}

lost_total=0
for trial in $(seq 1 "$TRIALS"); do
  mkdir -p "$WORK/root" "$WORK/mnt"
  cat > "$WORK/lazyfs.toml" <<TOML
[faults]
fifo_path="$WORK/faults.fifo"
[cache]
apply_eviction=false
[cache.simple]
custom_size="1gb"
blocks_per_page=1
[filesystem]
log_all_operations=false
logfile=""
TOML
  "$LAZYFS" "$WORK/mnt" --config-path "$WORK/lazyfs.toml" -o allow_other -o modules=subdir \
    -o subdir="$WORK/root" -f > "$WORK/lazyfs.log" 2>&1 &
  LAZY_PID=$!
  for _ in $(seq 1 100); do mountpoint -q "$WORK/mnt" && [[ -p "$WORK/faults.fifo" ]] && break; sleep 0.05; done
  cat > "$WORK/config.json" <<JSON
{ "server": { "accessLog": null, "workers": 2 }, "http": { "port": 0, "bind": ["127.0.0.1"] },
  "cluster": { "nodeId": 1, "dataDir": "$WORK/mnt/node", "resp": "127.0.0.1:0",
               "grpc": "127.0.0.1:0", "metrics": null } }
JSON
  start_node
  acked="$(python3 -c '
import sys, redis
from redis.retry import Retry
from redis.backoff import NoBackoff
r = redis.Redis(port=int(sys.argv[1]), retry=Retry(NoBackoff(), 0))
n = 0
for i in range(int(sys.argv[2])):
    n = r.rpush("frontend:power.test", "http://127.0.0.1:%d" % (1000 + i % 60000))
print(n)
' "$PORT" "$WRITES")"
  kill -9 "$NODE_PID"; wait "$NODE_PID" 2>/dev/null || true; NODE_PID=""
  echo "lazyfs::clear-cache" > "$WORK/faults.fifo"
  sleep 0.5
  start_node
  survived="$(python3 -c 'import sys, redis; print(redis.Redis(port=int(sys.argv[1])).llen("frontend:power.test"))' "$PORT")"
  kill -TERM "$NODE_PID"; wait "$NODE_PID" 2>/dev/null || true; NODE_PID=""
  lost=$(( acked - survived ))
  (( lost < 0 )) && lost=0
  lost_total=$(( lost_total + lost ))
  echo "trial $trial: acknowledged $acked, after the cut $survived, lost $lost"
  fusermount3 -u "$WORK/mnt"; wait "$LAZY_PID" 2>/dev/null || true; LAZY_PID=""
  rm -rf "${WORK:?}/root" "${WORK:?}/mnt" "${WORK:?}/faults.fifo"
done
echo "lost acknowledged writes in total: $lost_total"
(( lost_total == 0 ))
