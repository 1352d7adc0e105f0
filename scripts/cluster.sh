#!/usr/bin/env bash
# A local 3-node hipache-raft cluster on loopback, for development, demos and benchmarks.
#
#   scripts/cluster.sh up            start the nodes that are not running (node 1 first)
#   scripts/cluster.sh down          SIGTERM every node, SIGKILL after $CLUSTER_STOP_TIMEOUT s
#   scripts/cluster.sh status        PID / alive state and each node's Raft view (exit 3 if a node is down)
#   scripts/cluster.sh kill N        SIGKILL node N (simulates a crash; its data dir is kept)
#   scripts/cluster.sh restart N     stop node N if running, start it again on its data dir
#   scripts/cluster.sh logs N [-f]   last 200 lines of node N's log (or follow it)
#   scripts/cluster.sh clean         delete the cluster's data (refuses while a node runs)
#
# Node N listens on HTTP 808N, RESP 638N, gRPC 738N, metrics 938N, all on 127.0.0.1, and keeps
# everything under data/cluster/nN/: config.json, node.pid, node.log, raft/ (the data dir).
# CLUSTER_PORT_OFFSET=100 shifts every port by 100 (HTTP 8181…), for a second cluster beside
# the first (use another CLUSTER_DIR too).
#
# Environment: HIPACHE_RAFT_BIN (binary to run; default $CARGO_TARGET_DIR/release/hipache-raft,
# built with `cargo build --release` if missing), CLUSTER_DIR (default <repo>/data/cluster),
# CLUSTER_START_TIMEOUT (s, default 150), CLUSTER_STOP_TIMEOUT (s, default 15),
# CLUSTER_PORT_OFFSET (default 0), CLUSTER_WORKERS (each node's `server.workers`, written into
# new config files; default: the machine's cores divided among the three nodes, at least 1),
# RUST_LOG.
#
# The script only ever signals PIDs from its own pid files, and only after checking that the
# process is still a hipache-raft started with that node's config file: a recycled PID or
# another checkout's cluster is never touched.
set -euo pipefail

readonly NODES=(1 2 3)
PORT_OFFSET=${CLUSTER_PORT_OFFSET:-0}
[[ $PORT_OFFSET =~ ^[0-9]+$ ]] || { echo "cluster.sh: CLUSTER_PORT_OFFSET must be a number" >&2; exit 2; }
readonly PORT_OFFSET
http_port() { echo $((8080 + $1 + PORT_OFFSET)); }
resp_port() { echo $((6380 + $1 + PORT_OFFSET)); }
grpc_port() { echo $((7380 + $1 + PORT_OFFSET)); }
metrics_port() { echo $((9380 + $1 + PORT_OFFSET)); }
# The node every other node joins through. Any member would do; node 1 is the one that
# initialised the cluster, so it is the only address known to be a member from the start.
SEED_GRPC=127.0.0.1:$(grpc_port 1)
readonly SEED_GRPC

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT

# Resolve relative paths against the caller's directory, as cargo does for CARGO_TARGET_DIR,
# before anything changes directory.
abspath() {
    case $1 in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$PWD/$1" ;;
    esac
}

TARGET_DIR=$(abspath "${CARGO_TARGET_DIR:-$ROOT/target}")
BIN=$(abspath "${HIPACHE_RAFT_BIN:-$TARGET_DIR/release/hipache-raft}")
CLUSTER_DIR=$(abspath "${CLUSTER_DIR:-$ROOT/data/cluster}")
START_TIMEOUT=${CLUSTER_START_TIMEOUT:-150}
STOP_TIMEOUT=${CLUSTER_STOP_TIMEOUT:-15}
# Three nodes on one machine share its cores: a node's default (one worker thread per core)
# would run six busy threads on two cores, and the context switches cost the writes about a
# fifth of their throughput (docs/benchmarks.md, issue 5).
WORKERS=${CLUSTER_WORKERS:-$(($(nproc) / ${#NODES[@]}))}
[[ $WORKERS =~ ^[0-9]+$ ]] || { echo "cluster.sh: CLUSTER_WORKERS must be a number" >&2; exit 2; }
((WORKERS >= 1)) || WORKERS=1
readonly TARGET_DIR BIN CLUSTER_DIR START_TIMEOUT STOP_TIMEOUT WORKERS

say() { printf '%s\n' "$*" >&2; }
die() {
    say "cluster.sh: $*"
    exit 1
}

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

node_dir() { printf '%s/n%s\n' "$CLUSTER_DIR" "$1"; }
cfg_file() { printf '%s/config.json\n' "$(node_dir "$1")"; }
pid_file() { printf '%s/node.pid\n' "$(node_dir "$1")"; }
log_file() { printf '%s/node.log\n' "$(node_dir "$1")"; }
# Present once node N was started with --join and reported ready: the join is then recorded
# in its data dir, so later starts must not (and need not) ask again.
joined_file() { printf '%s/joined\n' "$(node_dir "$1")"; }

check_node() {
    local n
    for n in "${NODES[@]}"; do
        [[ $1 == "$n" ]] && return 0
    done
    die "no node '$1' (nodes: ${NODES[*]})"
}

ensure_binary() {
    [[ -x $BIN ]] && return 0
    if [[ -n ${HIPACHE_RAFT_BIN:-} ]]; then
        die "HIPACHE_RAFT_BIN=$BIN is not an executable file"
    fi
    say "cluster.sh: $BIN missing, building it (cargo build --release)"
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --bin hipache-raft)
    [[ -x $BIN ]] || die "cargo did not produce $BIN"
}

# Written once; edit it to experiment (e.g. add requirepass), delete it to get the default back.
write_config() {
    local n=$1 dir
    dir=$(node_dir "$n")
    [[ -e $(cfg_file "$n") ]] && return 0
    mkdir -p "$dir"
    cat >"$(cfg_file "$n")" <<EOF
{
    "server": {
        "accessLog": "$dir/access.log",
        "shutdownTimeout": 10,
        "workers": $WORKERS
    },
    "http": {
        "port": $(http_port "$n"),
        "bind": ["127.0.0.1"]
    },
    "cluster": {
        "nodeId": $n,
        "dataDir": "$dir/raft",
        "resp": "127.0.0.1:$(resp_port "$n")",
        "grpc": "127.0.0.1:$(grpc_port "$n")",
        "metrics": "127.0.0.1:$(metrics_port "$n")",
        "join": []
    }
}
EOF
}

# Prints node N's PID if its pid file names a live hipache-raft running N's config file.
live_pid() {
    local n=$1 pid args
    [[ -f $(pid_file "$n") ]] || return 1
    pid=$(<"$(pid_file "$n")")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    args=$(ps -ww -p "$pid" -o args= 2>/dev/null) || return 1
    case $args in
        *hipache-raft*"$(cfg_file "$n")"*) printf '%s\n' "$pid" ;;
        *) return 1 ;;
    esac
}

log_size() {
    if [[ -f $1 ]]; then wc -c <"$1" | tr -d ' '; else echo 0; fi
}

# Waits for the `{"event":"listening",...}` line this start of the node printed (only the part
# of the log after byte $3 counts: the log is appended across restarts). The binary prints it
# once every listener is bound and, for a joining node, once it is a voter.
wait_ready() {
    local n=$1 pid=$2 offset=$3 deadline=$((SECONDS + START_TIMEOUT)) log
    log=$(log_file "$n")
    while ((SECONDS < deadline)); do
        # Not `grep -q`: it would quit early, tail would die of SIGPIPE and pipefail would turn
        # the match into a failure.
        if tail -c "+$((offset + 1))" "$log" | grep '"event":"listening"' >/dev/null; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            say "cluster.sh: node $n (pid $pid) exited during start-up; end of $log:"
            tail -c "+$((offset + 1))" "$log" | tail -n 20 >&2
            rm -f "$(pid_file "$n")"
            return 1
        fi
        sleep 0.2
    done
    say "cluster.sh: node $n (pid $pid) not ready after ${START_TIMEOUT}s (left running; see: $0 logs $n)"
    return 1
}

# Starts node N in the background unless it already runs; does not wait.
# Sets STARTED_PID/STARTED_OFFSET for wait_ready (empty when nothing was started).
start_node() {
    local n=$1 pid log
    local -a join=()
    STARTED_PID='' STARTED_OFFSET=0
    if pid=$(live_pid "$n"); then
        say "node $n already running (pid $pid)"
        return 0
    fi
    write_config "$n"
    # Node 1 initialises a one-node cluster on an empty data dir; every other node joins it the
    # first time and afterwards resumes from its own data dir like node 1.
    if [[ $n != "${NODES[0]}" && ! -e $(joined_file "$n") ]]; then
        join=(--join "$SEED_GRPC")
    fi
    log=$(log_file "$n")
    STARTED_OFFSET=$(log_size "$log")
    printf "=== cluster.sh: starting node %s%s at %s\n" "$n" "${join[*]:+ ${join[*]}}" "$(date "+%F %T")" >>"$log"
    # nohup execs the binary, so $! is its PID; stdin from /dev/null so it never reads the tty.
    # NO_COLOR: plain log files (tracing colours its output even when it is not a terminal).
    NO_COLOR=${NO_COLOR-1} nohup "$BIN" --config "$(cfg_file "$n")" ${join[@]+"${join[@]}"} </dev/null >>"$log" 2>&1 &
    STARTED_PID=$!
    printf '%s\n' "$STARTED_PID" >"$(pid_file "$n")"
    say "node $n starting (pid $STARTED_PID${join[*]:+, ${join[*]}})"
}

# Waits for a node start_node just launched; records a completed join.
finish_start() {
    local n=$1 pid=$2 offset=$3
    [[ -n $pid ]] || return 0
    wait_ready "$n" "$pid" "$offset" || return 1
    if [[ $n != "${NODES[0]}" ]]; then
        : >"$(joined_file "$n")"
    fi
    say "node $n ready (pid $pid): http 127.0.0.1:$(http_port "$n") resp 127.0.0.1:$(resp_port "$n") grpc 127.0.0.1:$(grpc_port "$n")"
}

# SIGTERM (drain) the given nodes, SIGKILL whatever is left after STOP_TIMEOUT seconds.
stop_nodes() {
    local n pid deadline=$((SECONDS + STOP_TIMEOUT))
    local -a waiting=()
    for n in "$@"; do
        if pid=$(live_pid "$n"); then
            kill -TERM "$pid" 2>/dev/null || true
            waiting+=("$n:$pid")
            say "node $n: SIGTERM sent (pid $pid)"
        else
            rm -f "$(pid_file "$n")"
        fi
    done
    local entry left
    while ((${#waiting[@]} > 0)); do
        left=()
        for entry in "${waiting[@]}"; do
            if kill -0 "${entry#*:}" 2>/dev/null; then
                left+=("$entry")
            else
                say "node ${entry%%:*} stopped"
                rm -f "$(pid_file "${entry%%:*}")"
            fi
        done
        waiting=(${left[@]+"${left[@]}"})
        ((${#waiting[@]} > 0)) || break
        if ((SECONDS >= deadline)); then
            for entry in "${waiting[@]}"; do
                # Re-check identity: the PID may have been recycled while we waited.
                if pid=$(live_pid "${entry%%:*}"); then
                    say "node ${entry%%:*}: still running after ${STOP_TIMEOUT}s, SIGKILL (pid $pid)"
                    kill -KILL "$pid" 2>/dev/null || true
                    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
                fi
                rm -f "$(pid_file "${entry%%:*}")"
            done
            break
        fi
        sleep 0.2
    done
}

cmd_up() {
    ensure_binary
    mkdir -p "$CLUSTER_DIR"
    local n first=${NODES[0]}
    start_node "$first"
    finish_start "$first" "$STARTED_PID" "$STARTED_OFFSET" || die "node $first did not start"
    # The others join concurrently: the leader serialises membership changes itself.
    local -a pids=() offsets=()
    for n in "${NODES[@]:1}"; do
        start_node "$n"
        pids[n]=$STARTED_PID
        offsets[n]=$STARTED_OFFSET
    done
    local failed=0
    for n in "${NODES[@]:1}"; do
        finish_start "$n" "${pids[n]}" "${offsets[n]}" || failed=1
    done
    ((failed == 0)) || die "some nodes did not start"
    cmd_status || true
}

cmd_down() {
    stop_nodes "${NODES[@]}"
}

# One line per node; redis-cli is optional (the PID part works without it).
cmd_status() {
    local n pid state all_up=0 info
    local have_cli=0 timeout_cmd=()
    command -v redis-cli >/dev/null && have_cli=1
    # A wedged node must not hang `status`.
    command -v timeout >/dev/null && timeout_cmd=(timeout 3)
    printf '%-5s %-8s %-8s %-10s %-7s %-6s %-8s %s\n' NODE PID STATE ROLE LEADER TERM APPLIED MEMBERS
    for n in "${NODES[@]}"; do
        local role=- leader=- term=- applied=- members=-
        if pid=$(live_pid "$n"); then
            state=running
            if ((have_cli)) &&
                info=$(${timeout_cmd[@]+"${timeout_cmd[@]}"} redis-cli -h 127.0.0.1 -p "$(resp_port "$n")" info raft 2>/dev/null | tr -d '\r') &&
                [[ $info == *raft_role:* ]]; then
                role=$(sed -n 's/^raft_role://p' <<<"$info")
                leader=$(sed -n 's/^raft_leader://p' <<<"$info")
                term=$(sed -n 's/^raft_term://p' <<<"$info")
                applied=$(sed -n 's/^raft_applied_index://p' <<<"$info")
                members=$(sed -n 's/^raft_members://p' <<<"$info")
            elif ((have_cli)); then
                role='(no answer on RESP)'
            fi
        elif [[ -f $(pid_file "$n") ]]; then
            pid=$(<"$(pid_file "$n")")
            state=dead
            all_up=3
        else
            pid=- state=stopped
            all_up=3
        fi
        printf '%-5s %-8s %-8s %-10s %-7s %-6s %-8s %s\n' "$n" "$pid" "$state" "$role" "${leader:--}" "$term" "$applied" "$members"
    done
    ((have_cli)) || say "(redis-cli not found: install redis-tools to see each node's Raft view)"
    return "$all_up"
}

cmd_kill() {
    local n=$1 pid
    if ! pid=$(live_pid "$n"); then
        say "node $n is not running"
        return 0
    fi
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    # The pid file goes so that `status` says "stopped"; the data dir stays for `restart`.
    rm -f "$(pid_file "$n")"
    say "node $n killed (pid $pid, SIGKILL)"
}

cmd_restart() {
    local n=$1
    ensure_binary
    stop_nodes "$n"
    start_node "$n"
    finish_start "$n" "$STARTED_PID" "$STARTED_OFFSET" || die "node $n did not start"
}

cmd_logs() {
    local n=$1 log
    log=$(log_file "$n")
    [[ -f $log ]] || die "no log for node $n yet ($log)"
    if [[ ${2:-} == -f ]]; then
        exec tail -n 200 -f "$log"
    fi
    tail -n 200 "$log"
}

cmd_clean() {
    local n pid
    for n in "${NODES[@]}"; do
        if pid=$(live_pid "$n"); then
            die "node $n is running (pid $pid): run '$0 down' first"
        fi
    done
    rm -rf "$CLUSTER_DIR"
    say "removed $CLUSTER_DIR"
}

main() {
    (($# >= 1)) || usage
    local cmd=$1
    shift
    case $cmd in
        up | down | status | clean)
            (($# == 0)) || usage
            "cmd_$cmd"
            ;;
        kill | restart)
            (($# == 1)) || usage
            check_node "$1"
            "cmd_$cmd" "$1"
            ;;
        logs)
            (($# == 1 || $# == 2)) || usage
            check_node "$1"
            cmd_logs "$@"
            ;;
        -h | --help | help) usage ;;
        *) usage ;;
    esac
}

main "$@"
