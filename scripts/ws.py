#!/usr/bin/env python3
"""WebSockets for scripts/bench-soak.sh, standard library only (RFC 6455, the few frames used).

  ws.py backend PORT                          an echo server on 127.0.0.1:PORT
  ws.py clients HTTP_PORT HOST RATE DURATION  opens RATE connections a second through the
                                              proxy for DURATION s: handshake, one echoed
                                              message, close. Prints "opened failed".
"""
import base64
import hashlib
import os
import socket
import socketserver
import sys
import threading
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_head(sock):
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        head += chunk
    return head


def frame(opcode, payload, masked):
    """One final frame; payloads here are under 126 bytes."""
    header = bytes([0x80 | opcode, (0x80 if masked else 0) | len(payload)])
    if not masked:
        return header + payload
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frame(sock):
    header = sock.recv(2, socket.MSG_WAITALL)
    if len(header) < 2:
        raise ConnectionError("closed")
    opcode, length = header[0] & 0x0F, header[1] & 0x7F
    mask = sock.recv(4, socket.MSG_WAITALL) if header[1] & 0x80 else None
    payload = sock.recv(length, socket.MSG_WAITALL) if length else b""
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return opcode, payload


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        head = read_head(sock).decode("latin-1")
        key = next(l.split(":", 1)[1].strip() for l in head.split("\r\n") if l.lower().startswith("sec-websocket-key:"))
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
        while True:
            opcode, payload = read_frame(sock)
            if opcode == 8:
                sock.sendall(frame(8, payload, masked=False))
                return
            sock.sendall(frame(opcode, payload, masked=False))


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def one_client(http_port, host):
    sock = socket.create_connection(("127.0.0.1", http_port), timeout=5)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(("GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (host, key)).encode())
        if not read_head(sock).startswith(b"HTTP/1.1 101"):
            return False
        sock.sendall(frame(1, b"ping", masked=True))
        if read_frame(sock) != (1, b"ping"):
            return False
        sock.sendall(frame(8, b"", masked=True))
        return read_frame(sock)[0] == 8
    except OSError:
        return False
    finally:
        sock.close()


def clients(http_port, host, rate, duration):
    results, lock = [0, 0], threading.Lock()

    def run():
        ok = one_client(http_port, host)
        with lock:
            results[0 if ok else 1] += 1

    start, n, threads = time.monotonic(), 0, []
    while time.monotonic() - start < duration:
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t = threading.Thread(target=run)
        t.start()
        threads.append(t)
        threads = [t for t in threads if t.is_alive()]
        n += 1
    for t in threads:
        t.join()
    print("%d %d" % (results[0], results[1]))


if __name__ == "__main__":
    if sys.argv[1] == "backend":
        Server(("127.0.0.1", int(sys.argv[2])), Echo).serve_forever()
    else:
        clients(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
