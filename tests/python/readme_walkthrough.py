"""Runs the README's redis-cli walkthrough through redis-py with its default settings.

Reads {"port": N, "commands": [[arg, ...], ...]} on stdin and prints a JSON list with each
reply formatted the way redis-cli prints it in a terminal; tests/readme_walkthrough.rs compares
that with the README. redis-py 8 defaults to RESP3 (HELLO 3 on connect); this script checks
that it really negotiated it, so the test exercises the RESP3 path.
"""
import json
import sys

import redis  # CI installs redis-py 8 (.ci/run); a missing module must fail the test


def cli_format(reply):
    if isinstance(reply, int):
        return f"(integer) {reply}"
    if reply is None:
        return "(nil)"
    if isinstance(reply, bytes):
        return json.dumps(reply.decode())
    if isinstance(reply, (list, set)):
        items = sorted(reply) if isinstance(reply, set) else reply
        if not items:
            return "(empty array)"
        return "\n".join(f"{i}) {cli_format(item)}" for i, item in enumerate(items, 1))
    raise TypeError(f"unexpected reply {reply!r}")


def main():
    request = json.load(sys.stdin)
    major = int(redis.__version__.split(".")[0])
    assert major >= 8, f"redis-py {redis.__version__}: the test needs 8.x"
    client = redis.Redis(port=request["port"])
    # Compare what the server sent, not redis-py's per-command conversions (EXPIRE -> bool).
    client.response_callbacks.clear()
    outputs = [cli_format(client.execute_command(*args)) for args in request["commands"]]
    conn = client.connection_pool.get_connection()
    try:
        assert conn.protocol == 3, f"redis-py negotiated RESP{conn.protocol}"
        assert conn.handshake_metadata[b"proto"] == 3, conn.handshake_metadata
    finally:
        client.connection_pool.release(conn)
    json.dump(outputs, sys.stdout)


if __name__ == "__main__":
    main()
