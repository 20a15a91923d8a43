#!/usr/bin/env python3
"""vip_drain: a VIP released with a drain, seen from clients (tests/lab/vip.sh).

Run in the lab's client namespace. Against VIP:PORT held by the dispatcher whose
control socket is SOCK:
  1. connection A and connection B each make one keep-alive request (served,
     no Connection: close); the dispatcher counts at least 2 connections on VIP;
  2. A sends a slow request (a long poll of a queued query); while it is in
     flight `qdctl vip release VIP --drain-ms DRAIN` runs;
  3. the VIP is draining; A's response arrives complete with Connection: close
     and A is closed by the dispatcher (EOF); B, idle, is closed too (EOF)
     without sending anything;
  4. the VIP turns absent before DRAIN ms are over.
Prints one JSON object with the timings; exit 0 when every check passed.
"""
import json
import socket
import subprocess
import sys
import time


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


class Conn:
    def __init__(self, host, port):
        self.s = socket.create_connection((host, port), timeout=10)
        self.buf = b""
        self.host = f"{host}:{port}"

    def send(self, method, path, body=b""):
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"User-Agent: vip_drain\r\nX-Trino-User: vip\r\n")
        if body or method == "POST":
            head += f"Content-Length: {len(body)}\r\n"
        self.s.sendall(head.encode() + b"\r\n" + body)

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def response(self):
        """One response with a Content-Length body: (status, headers, body)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def eof_within(self, seconds):
        """Seconds until the peer closed (FIN), or None when it did not in time."""
        start = time.monotonic()
        self.s.settimeout(0.05)
        while time.monotonic() - start < seconds:
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return -1.0  # reset, not a graceful close
            if not chunk:
                return time.monotonic() - start
            self.buf += chunk
        return None


def qdctl(qdctl_bin, sock, *args):
    out = subprocess.run([qdctl_bin, "-s", sock, "--json", *args], check=True,
                         capture_output=True, text=True, timeout=20).stdout
    return json.loads(out)


def vip_entry(qdctl_bin, sock, vip):
    for v in qdctl(qdctl_bin, sock, "vips")["vips"]:
        if v["address"] == vip:
            return v
    fail(f"{vip} not in qdctl vips")


def main():
    if len(sys.argv) != 6:
        print("usage: vip_drain.py QDCTL SOCK VIP PORT DRAIN_MS", file=sys.stderr)
        sys.exit(2)
    qdctl_bin, sock, vip, port, drain_ms = sys.argv[1:6]
    port, drain_ms = int(port), int(drain_ms)
    out = {}

    a, b = Conn(vip, port), Conn(vip, port)
    for name, c in (("A", a), ("B", b)):
        c.send("GET", "/v1/dispatcher/health")
        st, h, _ = c.response()
        if st != 200 or h.get("connection", "").lower() == "close":
            fail(f"{name}: first request: status {st}, headers {h}")
    conns = vip_entry(qdctl_bin, sock, vip)["connections"]
    out["connections_before"] = conns
    if conns < 2:
        fail(f"the dispatcher counts {conns} connections on {vip}, expected >= 2")

    # A query that stays queued 4 s; its first queued poll is a long poll.
    a.send("POST", "/v1/statement", b"SELECT 1 /* sim: queue_ms=4000 */")
    st, h, body = a.response()
    if st != 200 or h.get("connection", "").lower() == "close":
        fail(f"A: POST: status {st}, headers {h}")
    next_uri = json.loads(body)["nextUri"]
    path = "/" + next_uri.split("/", 3)[3]
    a.send("GET", path)
    time.sleep(0.3)  # the poll is at the coordinator now
    t_release = time.monotonic()
    rel = qdctl(qdctl_bin, sock, "vip", "release", vip, "--drain-ms", str(drain_ms))
    out["state_after_release"] = rel["state"]
    if rel["state"] != "draining":
        fail(f"release answered state {rel['state']}, expected draining: {rel}")

    st, h, body = a.response()
    out["slow_request_ms"] = round((time.monotonic() - t_release) * 1000 + 300)
    out["slow_status"] = st
    out["slow_connection_header"] = h.get("connection")
    if st != 200 or h.get("connection", "").lower() != "close":
        fail(f"A: slow request: status {st}, Connection {h.get('connection')!r}")
    json.loads(body)  # a whole QueryResults
    a_eof = a.eof_within(3)
    b_eof = b.eof_within(3)
    out["a_closed_after_s"] = a_eof
    out["b_idle_closed_after_s"] = b_eof
    if a_eof is None or a_eof < 0:
        fail(f"A was not closed gracefully after its last response ({a_eof})")
    if b_eof is None or b_eof < 0:
        fail(f"idle B was not closed gracefully during the drain ({b_eof})")
    a.s.close()
    b.s.close()

    deadline = t_release + drain_ms / 1000.0
    while True:
        v = vip_entry(qdctl_bin, sock, vip)
        if v["state"] == "absent":
            break
        if time.monotonic() > deadline + 1:
            fail(f"{vip} still {v['state']} ({v['connections']} connections) after the drain")
        time.sleep(0.05)
    out["absent_after_ms"] = round((time.monotonic() - t_release) * 1000)
    if out["absent_after_ms"] >= drain_ms:
        fail(f"{vip} went absent after {out['absent_after_ms']} ms: the drain did not end by "
             "its connections")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
