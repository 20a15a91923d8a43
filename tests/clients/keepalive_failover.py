#!/usr/bin/env python3
"""keepalive_failover.py VIP GO_FILE: one keep-alive HTTP connection across a failover.

Opens one connection to VIP:8080 and asks GET /v1/dispatcher/health (which names the
serving peer), prints "before <peer>", then waits until GO_FILE exists (the test kills
that peer and waits for the takeover meanwhile) and asks again ON THE SAME connection.
Exit 0 and "after <peer>" when the answer is a 200 from another peer: the survivor
adopted the connection (docs/architecture.md "Peers"); exit 1 otherwise.
"""
import json
import os
import socket
import sys
import time

REQ = b"GET /v1/dispatcher/health HTTP/1.1\r\nHost: qd\r\n\r\n"


def ask(s):
    s.sendall(REQ)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        body += s.recv(4096)
    status = int(head.split(b" ")[1])
    return status, json.loads(body[:length])


def main():
    vip, go = sys.argv[1], sys.argv[2]
    s = socket.create_connection((vip, 8080), timeout=10)
    status, doc = ask(s)
    before = doc["peers"]["self"]
    print(f"before {before}", flush=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            return 1
        time.sleep(0.05)
    try:
        status, doc = ask(s)
    except OSError as e:
        print(f"after: {type(e).__name__}: {e}", flush=True)
        return 1
    after = doc["peers"]["self"]
    print(f"after {after} (status {status})", flush=True)
    return 0 if status == 200 and after != before else 1


if __name__ == "__main__":
    sys.exit(main())
