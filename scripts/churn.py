#!/usr/bin/env python3
"""Route churn for scripts/bench-churn.sh and scripts/bench-soak.sh: adds frontends routed to a
backend and deletes older ones, paced at RATE changes/s over four RESP connections, for
DURATION seconds. For one change in 20 it polls the proxy until the new host answers 200: the
propagation time from the write's reply to the route being served.

Usage: churn.py RESP_PORT HTTP_PORT BACKEND_PORT RATE DURATION
HTTP_PORT 0 polls nothing: the anchor run of scripts/bench-churn.sh, whose writes go to a
redis-server that no proxy reads.
Prints one line: changes, changes/s, propagation samples, p50 ms, p99 ms, max ms.
Everything on 127.0.0.1.
"""
import http.client
import socket
import sys
import threading
import time

# A durable write is a Raft round with an fsync: one connection waiting for each reply does
# about 500 a second on the 2-core bench machine, so the rate is shared by several.
WORKERS = 4
# Each worker deletes the frontend it added this many adds ago.
LIFETIME = 125


def main():
    resp_port, http_port, backend_port, rate, duration = map(int, sys.argv[1:6])
    propagation, pollers, lock = [], [], threading.Lock()
    counts = [0] * WORKERS
    start = time.monotonic()

    def watch(host, since):
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
        while time.monotonic() - since < 5:
            conn.request("GET", "/", headers={"Host": host})
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                with lock:
                    propagation.append((time.monotonic() - since) * 1000)
                return
            time.sleep(0.0005)

    def churn(w):
        sock = socket.create_connection(("127.0.0.1", resp_port))
        reader = sock.makefile("rb")

        def command(*args):
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a.encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            sock.sendall(out)
            line = reader.readline()
            if line.startswith(b"-"):
                raise SystemExit("write refused: %r" % line)

        done, k, my_rate = 0, 0, rate / WORKERS
        while time.monotonic() - start < duration:
            delay = start + done / my_rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if done % 2 == 0:
                host = "churn%d-%d.test" % (w, k)
                command("RPUSH", "frontend:" + host, host, "http://127.0.0.1:%d" % backend_port)
                if http_port and k % 10 == 0:
                    t = threading.Thread(target=watch, args=(host, time.monotonic()))
                    t.start()
                    with lock:
                        pollers.append(t)
                k += 1
            else:
                command("DEL", "frontend:churn%d-%d.test" % (w, max(0, k - LIFETIME)))
            done += 1
        counts[w] = done

    workers = [threading.Thread(target=churn, args=(w,)) for w in range(WORKERS)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed = time.monotonic() - start
    for t in pollers:
        t.join()
    done = sum(counts)
    p = sorted(propagation)

    def pct(q):
        return p[min(len(p) - 1, int(q * len(p)))] if p else float("nan")

    print("%d %.0f %d %.2f %.2f %.2f" % (done, done / elapsed, len(p), pct(0.5), pct(0.99), p[-1] if p else float("nan")))


if __name__ == "__main__":
    main()
