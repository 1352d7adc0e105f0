#!/usr/bin/env bash
# The scale benchmark: a node holding N frontends (1,000,000 by default; Hipache's "unusually
# large numbers of virtual hosts"), each `frontend:h<i>.test` = [app<i>, two backend URLs on
# 127.0.x.y / 127.1.x.y], against redis-server 7 holding the same data in the same run.
#
# Measures, on one release-built node:
#   A. durable RPUSH/s at 50 clients while the keyspace grows 0 -> N (redis-benchmark -r,
#      new random keys), reported per step of the growth;
#   B. proxy req/s (wrk) on a hot host with 10 frontends, then with N more loaded (same node);
#      loading the N frontends with one pipelining client (`redis-cli --pipe`): time and
#      writes/s; RSS after the load; the data dir's size; restart time until every key and the
#      hot host are served again, and RSS after the restart;
#   C. redis-server (appendfsync always) loading the same file with `redis-cli --pipe`: time,
#      INFO memory's used_memory and RSS;
#   D. a 3-node cluster (scripts/cluster.sh) loaded with the same N frontends: 200 single route
#      changes, one after the other, each timed from the write's reply until every node's proxy
#      serves it (scripts/bench-propagation.py).
#
# Usage: scripts/bench-scale.sh            (N=1,000,000: about 5 minutes, 2 GB of RAM free)
#        scripts/bench-scale.sh --quick    (N=100,000: under 2 minutes)
# Env:   N, BIN (release binary), DURATION (wrk seconds), WRK_CONNS (64), CLUSTER_PORT_OFFSET
#        (2000: the 3-node cluster of step D listens on scripts/cluster.sh's ports plus this).
# Everything listens on 127.0.0.1 ports the kernel picks or that are free; the backend is a
# private nginx on 127.0.0.1; every process is stopped by its own PID on exit
# (scripts/bench-lib.sh).
set -euo pipefail

# shellcheck source=/dev/null # scripts/bench-lib.sh, linted on its own
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
sizes 1000000 10 100000 3 "$@"
WRK_CONNS="${WRK_CONNS:-64}"
HOT=10
need_tools redis-cli redis-benchmark redis-server nginx wrk curl python3
mb() { echo $(( $1 / 1024 )); }
write_frontends "$N" "$WORK/load.resp"
start_backend

wrk_rate() { # req/s on the hot host
  wrk -t2 -c"$WRK_CONNS" -d"${DURATION}s" -H "Host: hot0.test" "http://127.0.0.1:$HTTP_PORT/" \
    | awk '/^Requests\/sec/ {printf "%d", $2}'
}

# A. durable RPUSH/s while the keyspace grows
start_node growth
STEPS=5
STEP=$(( N / STEPS ))
GROWTH=()
# Each step writes keys of its own prefix: redis-benchmark seeds its generator with the time in
# seconds XOR its PID, and two runs seconds apart can draw the same seed (then one step's
# "new" keys are all the previous step's, and the keyspace does not grow).
for step in $(seq 1 "$STEPS"); do
  keys="$(redis-cli -p "$RESP_PORT" DBSIZE)"
  rate="$(redis-benchmark -p "$RESP_PORT" -c 50 -n "$STEP" -r 1000000000 -q \
            RPUSH "frontend:g${step}-__rand_int__.test" http://127.0.0.1:8080 2>/dev/null | tr '\r' '\n' \
            | grep 'requests per second' | tail -1 | sed 's/.*: *\([0-9.]*\) requests per second.*/\1/')"
  added=$(( $(redis-cli -p "$RESP_PORT" DBSIZE) - keys ))
  GROWTH+=("$keys:$rate:$added")
done
stop_node

# B. the proxy and the pipelined load
start_node scale
add_hot_hosts "$HOT"
RATE_FEW="$(wrk_rate)"
T0="$(now)"
redis-cli -p "$RESP_PORT" --pipe < "$WORK/load.resp" > "$WORK/pipe.out"
T1="$(now)"
grep -q "errors: 0" "$WORK/pipe.out" || { cat "$WORK/pipe.out"; exit 1; }
LOAD_S="$(secs "$T0" "$T1")"
LOAD_HWM="$(hwm_kb "$NODE_PID")"
# jemalloc's background threads give pages the load freed back over its 10 s decay time: the
# RSS that stays (5 s after the load it is about 10 MB higher at 1M).
sleep 15
LOAD_RSS="$(rss_kb "$NODE_PID")"
RATE_MANY="$(wrk_rate)"
TOTAL=$(( N + HOT ))
[[ "$(redis-cli -p "$RESP_PORT" DBSIZE)" == "$TOTAL" ]] || { echo "DBSIZE is not $TOTAL" >&2; exit 1; }
stop_node
DATA_MB="$(du -sm "$WORK/scale" | cut -f1)"
start_node scale
until [[ "$(redis-cli -p "$RESP_PORT" DBSIZE 2>/dev/null)" == "$TOTAL" ]] \
      && curl -sf -H "Host: hot$(( HOT - 1 )).test" "http://127.0.0.1:$HTTP_PORT/" > /dev/null; do
  sleep 0.01
done
RESTART_S="$(secs "$START" "$(now)")"
RESTART_HWM="$(hwm_kb "$NODE_PID")"
# What the start freed (log entries replayed), given back over jemalloc's decay time.
sleep 12
RESTART_RSS="$(rss_kb "$NODE_PID")"
stop_node

# C. redis-server 7 with the same data
start_redis
BASE_USED="$(redis-cli -p "$REDIS_PORT" INFO memory | tr -d '\r' | awk -F: '/^used_memory:/ {print $2}')"
T0="$(now)"
redis-cli -p "$REDIS_PORT" --pipe < "$WORK/load.resp" > "$WORK/redis-pipe.out"
T1="$(now)"
REDIS_LOAD_S="$(secs "$T0" "$T1")"
REDIS_USED="$(redis-cli -p "$REDIS_PORT" INFO memory | tr -d '\r' | awk -F: '/^used_memory:/ {print $2}')"
REDIS_RSS="$(rss_kb "$REDIS_PID")"

kill -TERM "$REDIS_PID"

# D. route changes reaching every proxy of a 3-node cluster holding the N frontends
export CLUSTER_DIR="$WORK/cluster" CLUSTER_PORT_OFFSET="${CLUSTER_PORT_OFFSET:-2000}" HIPACHE_RAFT_BIN="$BIN"
AT_EXIT+=("bash '$ROOT/scripts/cluster.sh' down")
bash "$ROOT/scripts/cluster.sh" up > "$WORK/cluster-up.log" 2>&1 || { cat "$WORK/cluster-up.log"; exit 1; }
node_port() { echo $(( $1 + $2 + CLUSTER_PORT_OFFSET )); } # BASE NODE: scripts/cluster.sh's ports
redis-cli -p "$(node_port 6380 1)" --pipe < "$WORK/load.resp" > "$WORK/cluster-pipe.out"
grep -q "errors: 0" "$WORK/cluster-pipe.out" || { cat "$WORK/cluster-pipe.out"; exit 1; }
for n in 1 2 3; do # every replica holds the N frontends (READONLY: this node's own)
  until [[ "$(printf 'READONLY\nDBSIZE\n' | redis-cli -p "$(node_port 6380 "$n")" | tail -1)" == "$N" ]]; do
    sleep 0.2
  done
done
PROXIES="127.0.0.1:$(node_port 8080 1),127.0.0.1:$(node_port 8080 2),127.0.0.1:$(node_port 8080 3)"
# Its last line: | changes | p50 | p90 | p99 | max | mean |, in ms until every proxy serves.
IFS='|' read -r _ PROP_N PROP_P50 _ PROP_P99 PROP_MAX _ < <(python3 "$ROOT/scripts/bench-propagation.py" \
  --resp "127.0.0.1:$(node_port 6380 1)" --proxies "$PROXIES" -n 200 | tail -1 | tr -d ' ')

per() { python3 -c "print(f'{$1 * 1024 / $N:,.0f}')"; }
rate_of() { python3 -c "print(f'{$N / $1:,.0f}')"; }
echo "bench-scale: N=$N frontends, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, commit $(cd "$ROOT" && git rev-parse --short HEAD)"
echo
echo "| what | hipache-raft | redis-server 7 (appendfsync always) |"
echo "|---|---|---|"
echo "| load N frontends, one client, redis-cli --pipe | ${LOAD_S} s ($(rate_of "$LOAD_S") writes/s) | ${REDIS_LOAD_S} s ($(rate_of "$REDIS_LOAD_S") writes/s) |"
echo "| RSS after the load | $(mb "$LOAD_RSS") MB ($(per "$LOAD_RSS") B/frontend; peak $(mb "$LOAD_HWM") MB) | $(mb "$REDIS_RSS") MB RSS, used_memory $(( (REDIS_USED - BASE_USED) / N )) B/frontend |"
echo "| restart until every key and the proxy serve | ${RESTART_S} s | – |"
echo "| RSS after the restart | $(mb "$RESTART_RSS") MB ($(per "$RESTART_RSS") B/frontend; peak $(mb "$RESTART_HWM") MB) | – |"
echo "| data dir | ${DATA_MB} MB | – |"
echo "| a route change live on every proxy of a 3-node cluster, N frontends ($PROP_N changes) | p50 ${PROP_P50} ms, p99 ${PROP_P99} ms, max ${PROP_MAX} ms | – |"
echo "| proxy req/s, hot host, $HOT frontends -> $TOTAL | $RATE_FEW -> $RATE_MANY ($(python3 -c "print(f'{$RATE_MANY / $RATE_FEW:.2f}')")x) | – |"
echo
echo "Durable RPUSH/s at 50 clients (new random keys) while the keyspace grows:"
echo
echo "| keys at the start of the step | RPUSH/s | keys added (of $STEP writes) |"
echo "|---:|---:|---:|"
for g in "${GROWTH[@]}"; do
  IFS=: read -r keys rate added <<< "$g"
  echo "| $keys | $rate | $added |"
done
