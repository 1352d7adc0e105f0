#!/usr/bin/env python3
"""Propagation of single route changes to every proxy of a cluster, for scripts/bench-scale.sh.

K times, one after the other: writes a new frontend `prop<i>.test` (routed to the backend)
through one node's RESP port, then polls every node's proxy over a keep-alive connection of
its own until the new host answers 200. A sample is the time from the write's reply to one
proxy serving the route; "all" is the time until the last proxy serves it.

Usage: propagation.py RESP_PORT BACKEND_PORT K HTTP_PORT...
Prints one line: samples, p50 ms, p99 ms, max ms (every node and change), then p99 ms and max
ms until every proxy serves a change. Everything on 127.0.0.1.
"""
import http.client
import socket
import sys
import time

# A change not live everywhere after this long counts as lost: the run fails.
GIVE_UP_S = 10


def main():
    resp_port, backend_port, k = map(int, sys.argv[1:4])
    http_ports = [int(p) for p in sys.argv[4:]]
    sock = socket.create_connection(("127.0.0.1", resp_port))
    reader = sock.makefile("rb")
    proxies = [http.client.HTTPConnection("127.0.0.1", p, timeout=5) for p in http_ports]

    def status(conn, host):
        conn.request("GET", "/", headers={"Host": host})
        r = conn.getresponse()
        r.read()
        return r.status

    samples, everywhere = [], []
    for i in range(k):
        host = "prop%d.test" % i
        # Each proxy's connection is warm and the host not routed yet.
        for conn in proxies:
            if status(conn, host) == 200:
                raise SystemExit("%s is routed before it was written" % host)
        args = [b"RPUSH", b"frontend:" + host.encode(), b"prop", b"http://127.0.0.1:%d" % backend_port]
        sock.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
        reply = reader.readline()
        since = time.monotonic()
        if not reply.startswith(b":"):
            raise SystemExit("write refused: %r" % reply)
        waiting = list(range(len(proxies)))
        while waiting:
            if time.monotonic() - since > GIVE_UP_S:
                raise SystemExit("%s not served by proxies %r after %d s" % (host, waiting, GIVE_UP_S))
            for n in list(waiting):
                if status(proxies[n], host) == 200:
                    samples.append((time.monotonic() - since) * 1000)
                    waiting.remove(n)
        everywhere.append((time.monotonic() - since) * 1000)

    def pct(values, q):
        v = sorted(values)
        return v[min(len(v) - 1, int(q * len(v)))]

    print("%d %.2f %.2f %.2f %.2f %.2f" % (len(samples), pct(samples, 0.5), pct(samples, 0.99), max(samples),
                                           pct(everywhere, 0.99), max(everywhere)))


if __name__ == "__main__":
    main()
