#!/usr/bin/env bash
# Churn: the proxy under full load on a few hot hosts while a client adds and removes other
# frontends at 1,000 changes/s (Hipache's "backends added and removed several times per
# second", times a few hundred tenants). One release-built node holding N frontends.
#
#   1. wrk on the hot hosts for DURATION s, nothing else running: req/s, p99, errors;
#   2. the same wrk again while scripts/churn.py runs: each second it adds 500 frontends
#      routed to the backend and deletes 500 older ones (RPUSH / DEL over four connections,
#      paced); for one change in 20 it polls the proxy until the new host answers 200: the
#      propagation time from the write's reply to the route being served;
#   3. the anchor: the same wrk while the same churn goes to a redis-server (appendfsync
#      always) beside the node, which no proxy reads (no propagation polls). On a machine
#      where wrk, nginx and the node share the cores, what the churn client and a durable
#      Redis taking its writes cost the hot hosts' p99 is the floor any router's figure sits
#      on; ours is the node's own cost above it.
#
# Usage: scripts/bench-churn.sh            (N=100,000 frontends, 60 s per phase: ~4 minutes)
#        scripts/bench-churn.sh --quick    (N=10,000, 20 s per phase: under 2 minutes)
# Env:   N, DURATION (s per phase), RATE (changes/s, 1000), BIN (release binary).
# Backends only on 127.0.0.0/8 (scripts/bench-lib.sh).
set -euo pipefail

# shellcheck source=/dev/null # scripts/bench-lib.sh, linted on its own
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
sizes 100000 60 10000 20 "$@"
RATE="${RATE:-1000}"
HOT=4
need_tools redis-cli redis-server nginx wrk curl python3
write_frontends "$N" "$WORK/load.resp"
start_backend
start_node churn
add_hot_hosts "$HOT"
redis-cli -p "$RESP_PORT" --pipe < "$WORK/load.resp" > /dev/null

QUIET="$(hot_wrk)"

python3 "$ROOT/scripts/churn.py" "$RESP_PORT" "$HTTP_PORT" "$BACKEND_PORT" "$RATE" "$DURATION" > "$WORK/churn.txt" &
CHURN_PID=$!
PIDS+=("$CHURN_PID")
CHURNED="$(hot_wrk)"
wait "$CHURN_PID"

start_redis
python3 "$ROOT/scripts/churn.py" "$REDIS_PORT" 0 "$BACKEND_PORT" "$RATE" "$DURATION" > "$WORK/anchor.txt" &
CHURN_PID=$!
PIDS+=("$CHURN_PID")
ANCHOR="$(hot_wrk)"
wait "$CHURN_PID"

read -r changes churn_rate samples p50 p99 pmax < "$WORK/churn.txt"
read -r _ anchor_rate _ < "$WORK/anchor.txt"
read -r q_rate q_p99 q_err q_status _ <<< "$QUIET"
read -r c_rate c_p99 c_err c_status _ <<< "$CHURNED"
read -r a_rate a_p99 a_err a_status _ <<< "$ANCHOR"
rise() { python3 -c "print(f'{($1 / $q_p99 - 1) * 100:+.0f}%')"; }

echo "bench-churn: N=$N frontends + $HOT hot hosts, ${DURATION}s per phase, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, commit $(cd "$ROOT" && git rev-parse --short HEAD)"
echo
echo "| hot hosts (wrk, 64 conns) | req/s | p99 ms | socket errors | non-2xx |"
echo "|---|---:|---:|---:|---:|"
echo "| quiet | $q_rate | $q_p99 | $q_err | $q_status |"
echo "| churn at $churn_rate changes/s | $c_rate | $c_p99 | $c_err | $c_status |"
echo "| anchor: the churn into redis-server at $anchor_rate changes/s | $a_rate | $a_p99 | $a_err | $a_status |"
echo
echo "p99 with churn: $(rise "$c_p99") against quiet; with the churn going to Redis instead: $(rise "$a_p99")."
echo "Changes: $changes ($churn_rate/s); propagation (reply to the new host served), $samples samples: p50 ${p50} ms, p99 ${p99} ms, max ${pmax} ms."
