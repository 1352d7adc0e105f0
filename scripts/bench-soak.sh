#!/usr/bin/env bash
# Soak: a node holding N frontends under everything at once for a long time, with its RSS and
# open file descriptors sampled every 10 s; they must stay flat after warm-up.
#
#   - wrk on four hot hosts, for the whole run;
#   - scripts/churn.py adding and deleting frontends at RATE changes/s;
#   - scripts/ws.py opening WebSockets through the proxy (handshake, one echoed message,
#     close) at 20 a second, to a WebSocket echo backend on 127.0.0.1.
#
# Prints the samples' summary (growth of RSS after warm-up, the fd range) and writes the graph
# of both over time to SVG (docs/soak.svg unless OUT names another file; a --quick run's goes
# to /tmp/soak-quick.svg, so it never replaces the 30-minute run's graph).
#
# Usage: scripts/bench-soak.sh            (30 minutes, N=100,000)
#        scripts/bench-soak.sh --quick    (90 seconds, N=10,000)
# Env:   N, DURATION (seconds), RATE (changes/s, 200), OUT, BIN (release binary).
set -euo pipefail

# shellcheck source=/dev/null # scripts/bench-lib.sh, linted on its own
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
sizes 100000 1800 10000 90 "$@"
RATE="${RATE:-200}"
if [[ "${1:-}" == "--quick" ]]; then
  OUT="${OUT:-${TMPDIR:-/tmp}/soak-quick.svg}"
fi
OUT="${OUT:-$ROOT/docs/soak.svg}"
HOT=4
need_tools redis-cli nginx wrk curl python3
write_frontends "$N" "$WORK/load.resp"
start_backend
WS_PORT="$(free_port)"
python3 "$ROOT/scripts/ws.py" backend "$WS_PORT" &
PIDS+=($!)
start_node soak
add_hot_hosts "$HOT"
redis-cli -p "$RESP_PORT" --pipe < "$WORK/load.resp" > /dev/null
redis-cli -p "$RESP_PORT" RPUSH frontend:ws.test ws "http://127.0.0.1:$WS_PORT" > /dev/null

hot_wrk > "$WORK/wrk.txt" &
LOAD_PIDS=($!)
python3 "$ROOT/scripts/churn.py" "$RESP_PORT" "$HTTP_PORT" "$BACKEND_PORT" "$RATE" "$DURATION" > "$WORK/churn.txt" &
LOAD_PIDS+=($!)
python3 "$ROOT/scripts/ws.py" clients "$HTTP_PORT" ws.test 20 "$DURATION" > "$WORK/ws.txt" &
LOAD_PIDS+=($!)
PIDS+=("${LOAD_PIDS[@]}")

# seconds rss_kb fds, every 10 s, while the load runs.
T0="$(now)"
while kill -0 "${LOAD_PIDS[0]}" 2>/dev/null; do
  echo "$(secs "$T0" "$(now)") $(rss_kb "$NODE_PID") $(find "/proc/$NODE_PID/fd" -mindepth 1 | wc -l)" >> "$WORK/samples.txt"
  sleep 10
done
for pid in "${LOAD_PIDS[@]}"; do
  wait "$pid"
done
read -r _ _ sock_errors non_2xx requests < "$WORK/wrk.txt"
read -r changes churn_rate _ _ p99 _ < "$WORK/churn.txt"
read -r ws_ok ws_failed < "$WORK/ws.txt"

python3 - "$WORK/samples.txt" "$OUT" "$N" "$DURATION" <<'EOF'
import statistics
import sys
samples = [tuple(map(float, line.split())) for line in open(sys.argv[1])]
out, n, duration = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
# Warm-up: the first fifth of the run (caches, pools and the allocator settle).
warm = [s for s in samples if s[0] >= duration / 5] or samples
# Growth: the median RSS of the last quarter of the samples after warm-up against that of the
# first quarter. RSS swings by about 15 MB every half minute under this load (the allocator's
# purges, snapshot builds), so a single sample against the last few measured where in the
# swing the first one fell (-1.8 % and +12.9 % in two runs whose quarters were flat) rather
# than any growth.
quarter = max(1, len(warm) // 4)
first = statistics.median(s[1] for s in warm[:quarter])
last = statistics.median(s[1] for s in warm[-quarter:])
rss = [s[1] for s in warm]
fds = [s[2] for s in warm]
print("RSS after warm-up: %.0f MB -> %.0f MB (%+.1f %%; medians of the first and last quarter, range %.0f..%.0f MB); open fds %d..%d"
      % (first / 1024, last / 1024, (last / first - 1) * 100, min(rss) / 1024, max(rss) / 1024, min(fds), max(fds)))

W, H, L, B = 720, 300, 60, 40
t_max = max(s[0] for s in samples) or 1
rss_max = max(s[1] for s in samples) / 1024 * 1.2
fd_max = max(s[2] for s in samples) * 1.2 or 1
def line(points, colour):
    return '<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' % (colour, " ".join("%.1f,%.1f" % p for p in points))
x = lambda t: L + t / t_max * (W - L - 60)
rss = [(x(s[0]), H - B - s[1] / 1024 / rss_max * (H - B - 20)) for s in samples]
fd = [(x(s[0]), H - B - s[2] / fd_max * (H - B - 20)) for s in samples]
svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (W, H),
       '<rect width="100%" height="100%" fill="white"/>',
       '<text x="%d" y="14">hipache-raft soak: %d frontends, %d s, wrk + route churn + WebSockets</text>' % (L, n, duration),
       '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (L, H - B, W - 60, H - B),
       '<line x1="%d" y1="20" x2="%d" y2="%d" stroke="black"/>' % (L, L, H - B),
       '<text x="%d" y="%d">0</text><text x="%d" y="%d">%d s</text>' % (L, H - B + 16, W - 90, H - B + 16, t_max),
       '<text x="4" y="30" fill="#1f77b4">%.0f MB</text>' % rss_max,
       '<text x="%d" y="30" fill="#d62728">%.0f fds</text>' % (W - 56, fd_max),
       '<text x="%d" y="%d" fill="#1f77b4">RSS</text><text x="%d" y="%d" fill="#d62728">open file descriptors</text>' % (L + 10, H - 8, L + 60, H - 8),
       line(rss, "#1f77b4"), line(fd, "#d62728"), "</svg>"]
open(out, "w").write("\n".join(svg) + "\n")
EOF

echo "bench-soak: N=$N frontends, ${DURATION}s, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, commit $(cd "$ROOT" && git rev-parse --short HEAD)"
echo "hot hosts: $requests requests, $sock_errors socket errors, $non_2xx non-2xx"
echo "churn: $changes changes ($churn_rate/s), propagation p99 $p99 ms"
echo "WebSockets: $ws_ok opened, echoed and closed; $ws_failed failed"
echo "samples (s, RSS kB, fds): $(wc -l < "$WORK/samples.txt"); graph: $OUT"
