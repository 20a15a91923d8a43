#!/usr/bin/env python3
"""Check how a proxy forwards every response framing of tests/clients/framing_server.py.

usage: framing_check.py --server http://HOST:PORT
Prints one "ok NAME: ..." line per case and exits 1 at the first failure.
"""
import argparse
import http.client
import socket
import sys
import urllib.parse

PATTERN = b"0123456789abcdef"


def body(n):
    return (PATTERN * (n // 16 + 1))[:n]


def fail(msg):
    print(f"FAIL {msg}")
    sys.exit(1)


def get(conn, method, path, name):
    conn.request(method, path, headers={"X-Trino-User": "framing"})
    r = conn.getresponse()
    data = r.read()
    return r, data


def get_http10(host, port, path):
    """GET <path> as HTTP/1.0 on a raw socket, read to the close: (head, body)."""
    s = socket.create_connection((host, port), timeout=20)
    s.sendall(b"GET " + path.encode() + b" HTTP/1.0\r\n\r\n")
    raw = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        raw += chunk
    s.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    return head, rest


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    a = ap.parse_args()
    u = urllib.parse.urlsplit(a.server)
    host, port = u.hostname, u.port or 80

    # One keep-alive connection through every framing: the proxy must leave it usable.
    c = http.client.HTTPConnection(host, port, timeout=20)
    r, d = get(c, "GET", "/frame/chunked?n=300&size=1000", "chunked")
    if r.status != 200 or d != body(300000):
        fail(f"chunked: HTTP {r.status}, {len(d)} bytes, content ok: {d == body(300000)}")
    if (r.getheader("Transfer-Encoding") or "").lower() != "chunked":
        fail(f"chunked: forwarded with Transfer-Encoding {r.getheader('Transfer-Encoding')!r}")
    print("ok chunked: 300 chunks with extensions and a trailer -> 300000 bytes, chunked")

    r, d = get(c, "GET", "/frame/eof?bytes=400000", "eof")
    if r.status != 200 or d != body(400000):
        fail(f"eof: HTTP {r.status}, {len(d)} bytes, content ok: {d == body(400000)}")
    if (r.getheader("Transfer-Encoding") or "").lower() != "chunked":
        fail("eof: a close-delimited body must reach an HTTP/1.1 client chunked")
    if r.will_close:
        fail("eof: the client connection was closed (only the coordinator's should be)")
    print("ok eof: close-delimited 400000 bytes -> chunked to the client, connection kept")

    r, d = get(c, "GET", "/frame/interim?bytes=5000", "interim")
    if r.status != 200 or d != body(5000):
        fail(f"interim: HTTP {r.status}, {len(d)} bytes")
    print("ok interim: 103 dropped, the 200 forwarded")

    r, d = get(c, "HEAD", "/frame/length?bytes=7777", "head")
    if r.status != 200 or d != b"" or r.getheader("Content-Length") != "7777":
        fail(f"head: HTTP {r.status}, {len(d)} body bytes, Content-Length "
             f"{r.getheader('Content-Length')!r}")
    print("ok head: Content-Length 7777 kept, no body")

    r, d = get(c, "GET", "/frame/nocontent", "204")
    if r.status != 204 or d != b"":
        fail(f"204: HTTP {r.status}, {len(d)} bytes")
    r, d = get(c, "GET", "/frame/length?bytes=12345", "length")
    if r.status != 200 or d != body(12345):
        fail(f"length after 204: HTTP {r.status}, {len(d)} bytes")
    print("ok nocontent: 204 without body, the connection then serves a 12345-byte answer")
    c.close()

    # HTTP/1.0: no chunked encoding allowed; a close-delimited answer instead.
    head, rest = get_http10(host, port, "/frame/eof?bytes=250000")
    if not head.startswith(b"HTTP/1.1 200") or b"chunked" in head.lower() or rest != body(250000):
        fail(f"http/1.0 eof: head {head[:200]!r}, {len(rest)} body bytes")
    print("ok http10: close-delimited to an HTTP/1.0 client, 250000 bytes, then closed")

    head, rest = get_http10(host, port, "/frame/chunked?n=50&size=999")
    if b"chunked" in head.lower() or rest != body(50 * 999):
        fail(f"http/1.0 chunked: head {head[:200]!r}, {len(rest)} body bytes")
    print("ok http10-chunked: a chunked answer reaches an HTTP/1.0 client decoded, then closed")


if __name__ == "__main__":
    main()
