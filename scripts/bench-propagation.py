#!/usr/bin/env python3
"""Change propagation on a running local cluster (scripts/cluster.sh up): the time from an
RPUSH reply to the new route being served by every node's proxy.

For each of N changes: RPUSH a new frontend (through the node given by --resp), take the time
of the reply, then poll every proxy with that Host over a keep-alive connection until it answers
200 from the backend; the change's propagation time is the slowest proxy's first 200. Prints
p50/p90/p99/max. Loopback only; a tiny backend is started on an ephemeral port.
"""
import argparse
import http.client
import http.server
import socket
import statistics
import threading
import time


class Backend(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def resp_command(sock, *args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    sock.sendall(out)
    line = b""
    while not line.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise RuntimeError("RESP connection closed")
        line += chunk
    if not line.startswith(b":"):
        raise RuntimeError("unexpected reply %r" % line)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--resp", default="127.0.0.1:6382", help="RESP address to write through")
    p.add_argument("--proxies", default="127.0.0.1:8081,127.0.0.1:8082,127.0.0.1:8083")
    p.add_argument("-n", type=int, default=1000)
    args = p.parse_args()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    backend = "http://127.0.0.1:%d" % server.server_address[1]

    host, port = args.resp.rsplit(":", 1)
    resp = socket.create_connection((host, int(port)))
    resp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    proxies = []
    for addr in args.proxies.split(","):
        h, pt = addr.rsplit(":", 1)
        proxies.append(http.client.HTTPConnection(h, int(pt), timeout=5))

    run = "%d" % time.time_ns()
    samples = []
    for i in range(args.n):
        vhost = "p%s-%d.bench.local" % (run, i)
        resp_command(resp, "RPUSH", "frontend:" + vhost, "bench", backend)
        t0 = time.perf_counter()
        worst = 0.0
        for conn in proxies:
            deadline = t0 + 5
            while True:
                conn.request("GET", "/", headers={"Host": vhost})
                r = conn.getresponse()
                r.read()
                if r.status == 200:
                    worst = max(worst, time.perf_counter() - t0)
                    break
                if time.perf_counter() > deadline:
                    raise SystemExit("%s never routed %s (last status %d)" % (conn.host, vhost, r.status))
        samples.append(worst * 1000)
        resp_command(resp, "DEL", "frontend:" + vhost)
    samples.sort()
    q = lambda f: samples[min(len(samples) - 1, int(f * len(samples)))]
    print("| changes | p50 ms | p90 ms | p99 ms | max ms | mean ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    print("| %d | %.2f | %.2f | %.2f | %.2f | %.2f |" % (len(samples), q(0.5), q(0.9), q(0.99), samples[-1], statistics.mean(samples)))
    server.shutdown()


if __name__ == "__main__":
    main()
