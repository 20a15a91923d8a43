#!/usr/bin/env python3
"""http_cases.py: HTTP/1.1 edge cases of the Trino protocol over raw sockets.

The npm clients (run_queries.mjs) only ever send well-formed requests one at a
time. This tool writes the bytes itself, so it can pipeline, chunk a request
body, send an absolute-form target, stall in the middle of a head, send heads
too large, bodies too large, or drop a connection halfway through a 100 MB
result, and then reads the answers byte by byte (its own response parser:
Content-Length, chunked, close-delimited, pipelined answers in order).

usage: http_cases.py --server URL [--coordinators URL,...] [options] CASE...
Each CASE prints "ok CASE: ..." or "FAIL CASE: ..." and the exit code is 1 when
any failed (2 on bad usage). Run with --help for the cases and options.
The rows of a query are checked against the simulator's documented values
(docs/coordsim.md); keep expected_value() in step with run_queries.mjs.
"""

import argparse
import hashlib
import json
import re
import socket
import sys
import time
import urllib.parse

DEFAULT_ROW_BYTES = 8
ALPHABET = b"0123456789abcdefghijklmnopqrstuvwxyz"
SMALL_BODY_MAX = 4 * 1024 * 1024  # a small page is read whole into memory
POLL_LIMIT = 2000  # pages followed per query at most


class CaseFailed(Exception):
    pass


def expected_value(i, row_bytes):
    """Row i of a simulated query (docs/coordsim.md): the first row_bytes characters of
    "<i>:" and then the alphabet 0-9a-z repeated, starting at character i mod 36."""
    head = f"{i}:".encode()
    if len(head) >= row_bytes:
        return head[:row_bytes]
    fill = row_bytes - len(head)
    k = i % len(ALPHABET)
    turn = ALPHABET[k:] + ALPHABET[:k]
    return head + (turn * (fill // len(turn) + 1))[:fill]


def expected_value_stream(row_bytes, chunk=1 << 20):
    """The bytes of row 0's value for a large row_bytes, in pieces."""
    head = b"0:"
    yield head[:row_bytes]
    left = row_bytes - len(head)
    block = ALPHABET * (chunk // len(ALPHABET))
    while left > 0:
        piece = block[: min(left, len(block))]
        yield piece
        left -= len(piece)


def check(cond, msg):
    if not cond:
        raise CaseFailed(msg)


class Response:
    def __init__(self, status, reason, headers, body, framing):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (lower-case name, value)
        self.body = body
        self.framing = framing  # length | chunked | close | none

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise CaseFailed(f"HTTP {self.status} body is not JSON ({e}): {self.body[:200]!r}")


class Conn:
    """One TCP connection with a read buffer, so pipelined answers parse in turn."""

    def __init__(self, host, port, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False
        self.local = self.sock.getsockname()

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        self.sock.close()

    def reset(self):
        """Close with RST (SO_LINGER 0): a client that vanishes."""
        import struct
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def _fill(self, want=65536):
        if self.eof:
            return False
        data = self.sock.recv(want)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _line(self, limit=65536):
        while b"\r\n" not in self.buf:
            check(len(self.buf) <= limit, "a line longer than 64 KiB in a response")
            if not self._fill():
                raise CaseFailed(f"connection closed inside a response (have {self.buf[:100]!r})")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n, sink=None):
        """n bytes: returned, or passed to sink in pieces when sink is given."""
        out = []
        while n > 0:
            if not self.buf and not self._fill(min(n, 1 << 20)):
                raise CaseFailed(f"connection closed with {n} body bytes missing")
            take = self.buf[:n]
            self.buf = self.buf[len(take):]
            n -= len(take)
            if sink:
                sink(take)
            else:
                out.append(take)
        return b"".join(out)

    def read_head(self):
        while True:
            line = self._line()
            parts = line.decode("latin-1").split(" ", 2)
            check(len(parts) >= 2 and parts[0].startswith("HTTP/1."), f"bad status line {line!r}")
            status = int(parts[1])
            reason = parts[2] if len(parts) > 2 else ""
            headers = []
            while True:
                h = self._line()
                if h == b"":
                    break
                name, _, value = h.decode("latin-1").partition(":")
                headers.append((name.strip().lower(), value.strip()))
            if status == 100:
                continue
            return status, reason, headers

    def read_response(self, method="GET", sink=None, max_body=SMALL_BODY_MAX):
        """The next response. With sink, body bytes go to sink(bytes) instead."""
        status, reason, headers = self.read_head()
        hd = dict(headers)
        te = hd.get("transfer-encoding", "").lower()
        body = b""
        parts = []

        def keep(b):
            if sink:
                sink(b)
            else:
                parts.append(b)
                check(sum(map(len, parts)) <= max_body, f"a body over {max_body} bytes")

        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            framing = "none"
        elif "chunked" in te:
            framing = "chunked"
            while True:
                size_line = self._line().split(b";", 1)[0].strip()
                size = int(size_line, 16)
                if size == 0:
                    while self._line() != b"":  # trailers
                        pass
                    break
                self._exact(size, keep)
                check(self._exact(2) == b"\r\n", "chunk not followed by CRLF")
        elif "content-length" in hd:
            framing = "length"
            self._exact(int(hd["content-length"]), keep)
        else:
            framing = "close"
            while True:
                if self.buf:
                    keep(self.buf)
                    self.buf = b""
                if not self._fill():
                    break
        if not sink:
            body = b"".join(parts)
        return Response(status, reason, headers, body, framing)


def request_bytes(method, target, host, headers=(), body=None, chunks=None):
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += list(headers)
    if chunks is not None:
        lines.append("Transfer-Encoding: chunked")
    elif body is not None:
        lines.append(f"Content-Length: {len(body)}")
    out = ("\r\n".join(lines) + "\r\n\r\n").encode()
    if chunks is not None:
        for c in chunks:
            out += f"{len(c):x}\r\n".encode() + c + b"\r\n"
        out += b"0\r\n\r\n"
    elif body is not None:
        out += body
    return out


def sim_sql(directives, mark="http_cases"):
    return f"SELECT c0 FROM {mark} /* sim: {directives} */".encode()


class Ctx:
    def __init__(self, args):
        u = urllib.parse.urlsplit(args.server)
        self.server = args.server.rstrip("/")
        self.host = u.hostname
        self.port = u.port or 80
        self.hostport = f"{self.host}:{self.port}"
        self.coordinators = [c for c in (args.coordinators or "").split(",") if c]
        self.args = args
        self.user = "qd-http"

    def conn(self, timeout=10.0):
        return Conn(self.host, self.port, timeout)

    def path_of(self, uri):
        u = urllib.parse.urlsplit(uri)
        check(f"{u.hostname}:{u.port or 80}" == self.hostport,
              f"nextUri {uri} does not point back at {self.hostport}")
        return u.path + (f"?{u.query}" if u.query else "")

    def post(self, c, sql, headers=()):
        c.send(request_bytes("POST", "/v1/statement", self.hostport,
                             [f"X-Trino-User: {self.user}", *headers], body=sql))
        r = c.read_response("POST")
        check(r.status == 200, f"POST /v1/statement: HTTP {r.status} {r.body[:300]!r}")
        q = r.json()
        check(isinstance(q.get("id"), str) and q.get("nextUri"), f"POST answer without id/nextUri: {q}")
        return q

    def get(self, c, uri, method="GET", **kw):
        c.send(request_bytes(method, self.path_of(uri) if uri.startswith("http") else uri,
                             self.hostport, [f"X-Trino-User: {self.user}"]))
        return c.read_response(method, **kw)

    def run_query(self, c, q, rows, page_rows, row_bytes=DEFAULT_ROW_BYTES):
        """Follow nextUri on connection c to the end, checking every row."""
        seen = 0
        page = q
        for _ in range(POLL_LIMIT):
            if "error" in page and page["error"]:
                raise CaseFailed(f"query {q['id']} failed: {page['error']}")
            for row in page.get("data") or []:
                want = expected_value(seen, row_bytes).decode()
                check(row == [want], f"query {q['id']} row {seen} is {str(row)[:80]}, expected [{want!r}]")
                seen += 1
            check(len(page.get("data") or []) <= page_rows, "a page larger than page_rows")
            if not page.get("nextUri"):
                break
            r = self.get(c, page["nextUri"])
            check(r.status == 200, f"GET {page['nextUri']}: HTTP {r.status} {r.body[:200]!r}")
            page = r.json()
            check(page.get("id") == q["id"], f"a page of {page.get('id')} inside query {q['id']}")
        else:
            raise CaseFailed(f"query {q['id']} did not end within {POLL_LIMIT} pages")
        state = page.get("stats", {}).get("state")
        check(state == "FINISHED", f"query {q['id']} ended {state}: {page.get('error')}")
        check(seen == rows, f"query {q['id']}: {seen} rows, expected {rows}")
        return page

    def query_info(self, c, qid):
        r = self.get(c, f"/v1/query/{qid}")
        check(r.status == 200, f"GET /v1/query/{qid}: HTTP {r.status} {r.body[:200]!r}")
        return r.json()


# ---- the cases -----------------------------------------------------------

def case_health(ctx):
    c = ctx.conn()
    r = ctx.get(c, "/v1/dispatcher/health")
    check(r.status == 200, f"GET /v1/dispatcher/health: HTTP {r.status} {r.body[:200]!r}")
    body = r.json()
    check((r.header("content-type") or "").startswith("application/json"),
          f"content-type {r.header('content-type')}")
    return f"200 {json.dumps(body)[:160]}"


def case_keepalive(ctx):
    """A whole query, 12 pages, then a query info, on one connection."""
    c = ctx.conn()
    q = ctx.post(c, sim_sql("rows=23 page_rows=2"))
    last = ctx.run_query(c, q, 23, 2)
    info = ctx.query_info(c, q["id"])
    check(info.get("queryId") == q["id"], f"query info names {info.get('queryId')}")
    check(not c.eof, "the server closed the connection")
    # One more request still answered on the same connection.
    r = ctx.get(c, f"/v1/query/{q['id']}", method="HEAD")
    check(r.status == 200, f"HEAD /v1/query/{q['id']}: HTTP {r.status}")
    c.close()
    return f"query {q['id']} ({last['stats']['state']}), 23 rows, info and HEAD on one connection"


def case_pipeline(ctx):
    """Requests in one write, answered in order, even when they go to different coordinators."""
    setup = ctx.conn()
    ids = [ctx.post(setup, sim_sql(f"rows=1 queue_ms=0", mark=f"p{i}"))["id"] for i in range(4)]
    setup.close()
    c = ctx.conn()
    order = [ids[0], ids[1], ids[2], ids[3], ids[0]]
    c.send(b"".join(request_bytes("GET", f"/v1/query/{i}", ctx.hostport,
                                  [f"X-Trino-User: {ctx.user}"]) for i in order))
    got = []
    for want in order:
        r = c.read_response()
        check(r.status == 200, f"pipelined GET /v1/query/{want}: HTTP {r.status} {r.body[:200]!r}")
        got.append(r.json().get("queryId"))
    check(got == order, f"pipelined answers in order {got}, sent {order}")
    # A POST and a GET in one write (a body between two heads).
    sql = sim_sql("rows=3 page_rows=3", mark="pipe_post")
    c.send(request_bytes("POST", "/v1/statement", ctx.hostport, [f"X-Trino-User: {ctx.user}"], body=sql) +
           request_bytes("GET", f"/v1/query/{ids[1]}", ctx.hostport, []))
    r1 = c.read_response("POST")
    r2 = c.read_response()
    check(r1.status == 200 and r1.json().get("nextUri"), f"pipelined POST: HTTP {r1.status} {r1.body[:200]!r}")
    check(r2.status == 200 and r2.json().get("queryId") == ids[1],
          f"the GET after a pipelined POST: HTTP {r2.status} {r2.body[:200]!r}")
    ctx.run_query(c, r1.json(), 3, 3)
    c.close()
    return f"5 GETs over {len(set(ids))} queries in one write, then POST+GET, answered in order"


def case_chunked_request(ctx):
    """POST with Transfer-Encoding: chunked, the SQL split mid-directive."""
    c = ctx.conn()
    sql = sim_sql("rows=7 page_rows=3", mark="chunked_body")
    cut = sql.index(b"rows=") + 3
    pieces = [sql[:5], sql[5:cut], sql[cut:]]
    c.send(request_bytes("POST", "/v1/statement", ctx.hostport, [f"X-Trino-User: {ctx.user}"],
                         chunks=pieces))
    r = c.read_response("POST")
    check(r.status == 200, f"chunked POST: HTTP {r.status} {r.body[:300]!r}")
    q = r.json()
    ctx.run_query(c, q, 7, 3)
    info = ctx.query_info(c, q["id"])
    check(info.get("query") in (None, sql.decode()), f"the coordinator saw the SQL {info.get('query')!r}")
    # The same in separate writes, the last chunk after a pause.
    c.send(request_bytes("POST", "/v1/statement", ctx.hostport,
                         [f"X-Trino-User: {ctx.user}", "Transfer-Encoding: chunked"]))
    c.send(f"{len(pieces[0]):x}\r\n".encode() + pieces[0] + b"\r\n")
    time.sleep(0.3)
    rest = pieces[1] + pieces[2]
    c.send(f"{len(rest):x}\r\n".encode() + rest + b"\r\n0\r\n\r\n")
    r = c.read_response("POST")
    check(r.status == 200, f"chunked POST in pieces: HTTP {r.status} {r.body[:300]!r}")
    ctx.run_query(c, r.json(), 7, 3)
    c.close()
    return f"query {q['id']}: SQL sent in 3 chunks arrived whole (7 rows)"


def case_chunked_response(ctx):
    """A 3 MB page read whole and checked row by row; with --expect-chunked it must come
    chunked (for a server known to chunk large pages)."""
    rows, page_rows, row_bytes = 3000, 3000, 1000
    c = ctx.conn(timeout=30)
    q = ctx.post(c, sim_sql(f"rows={rows} page_rows={page_rows} row_bytes={row_bytes}"))
    framings = []
    page = q
    seen = 0
    for _ in range(POLL_LIMIT):
        if not page.get("nextUri"):
            break
        r = ctx.get(c, page["nextUri"], max_body=64 << 20)
        check(r.status == 200, f"GET: HTTP {r.status} {r.body[:200]!r}")
        page = r.json()
        if page.get("data"):
            framings.append(r.framing)
        for row in page.get("data") or []:
            check(row == [expected_value(seen, row_bytes).decode()], f"row {seen} differs")
            seen += 1
    check(seen == rows, f"{seen} rows, expected {rows}")
    check(page.get("stats", {}).get("state") == "FINISHED", f"ended {page.get('stats')}")
    if ctx.args.expect_chunked:
        check("chunked" in framings, f"the data page came {framings}, not chunked")
    c.close()
    return f"{rows} rows of {row_bytes} bytes, data page framing {framings}"


def case_absolute_delete(ctx):
    """DELETE http://host/v1/statement/... (presto-client's cancel) cancels the query."""
    c = ctx.conn()
    q = ctx.post(c, sim_sql("rows=5 queue_ms=20000", mark="abs_delete"))
    c.send(request_bytes("DELETE", q["nextUri"], ctx.hostport, [f"X-Trino-User: {ctx.user}"]))
    r = c.read_response("DELETE")
    check(r.status == 204, f"DELETE {q['nextUri']} (absolute form): HTTP {r.status} {r.body[:200]!r}")
    info = ctx.query_info(c, q["id"])
    err = json.dumps(info.get("errorCode") or info.get("failureInfo") or info.get("error") or "")
    check(info.get("state") == "CANCELED" or "USER_CANCELED" in err or
          info.get("errorType") == "USER_ERROR" and "CANCEL" in err,
          f"after the DELETE the query is {info.get('state')} {err[:200]}")
    # The next poll of the canceled query ends it for the client.
    r = ctx.get(c, q["nextUri"])
    if r.status == 200:
        page = r.json()
        check(page.get("error") or page.get("stats", {}).get("state") in ("FAILED", "CANCELED"),
              f"a poll after the cancel answers {json.dumps(page)[:200]}")
    else:
        check(r.status in (404, 410), f"a poll after the cancel: HTTP {r.status}")
    c.close()
    return f"query {q['id']} {info.get('state')} after DELETE in absolute form"


def case_header_too_large(ctx):
    """A head over 16 KiB, and one with over 100 fields: 431, then the connection closes."""
    out = []
    for what, headers in (
        ("17 KiB head", [f"X-Big: {'a' * 17 * 1024}"]),
        ("101 fields", [f"X-F{i}: {i}" for i in range(101)]),
    ):
        c = ctx.conn()
        c.send(request_bytes("GET", "/v1/info", ctx.hostport, headers))
        r = c.read_response()
        check(r.status == 431, f"{what}: HTTP {r.status}, expected 431")
        out.append(f"{what}: 431")
        c.close()
    # At the limit: 100 fields including Host, a 15 KiB head, is served.
    c = ctx.conn()
    c.send(request_bytes("GET", "/v1/dispatcher/health", ctx.hostport,
                         [f"X-F{i}: {i}" for i in range(98)] + [f"X-Pad: {'b' * 14 * 1024}"]))
    r = c.read_response()
    check(r.status == 200, f"a 99-field 15 KiB head: HTTP {r.status}, expected 200")
    c.close()
    return ", ".join(out) + ", 99 fields/15 KiB: 200"


def case_slow_header(ctx):
    """Half a head, then nothing: 408 and close within the header timeout."""
    timeout_s = ctx.args.header_timeout_ms / 1000.0
    c = ctx.conn(timeout=timeout_s + 15)
    t0 = time.monotonic()
    c.send(b"GET /v1/info HTTP/1.1\r\nHost: " + ctx.hostport.encode() + b"\r\nX-Slow: ")
    r = c.read_response()
    took = time.monotonic() - t0
    check(r.status == 408, f"HTTP {r.status} after {took:.1f} s, expected 408")
    check(timeout_s * 0.8 <= took <= timeout_s + 5, f"408 after {took:.1f} s, timeout {timeout_s} s")
    c.sock.settimeout(3)
    try:
        more = c.buf or c.sock.recv(1)
    except ConnectionResetError:
        more = b""
    except socket.timeout:
        raise CaseFailed("the connection stays open 3 s after the 408")
    check(more == b"", f"bytes after the 408: {more!r}")
    c.close()
    return f"408 after {took:.1f} s (timeout {timeout_s} s), then closed"


def case_body_too_large(ctx):
    """Content-Length over http.max_body_bytes: 413 before the body is sent; chunked too."""
    limit = ctx.args.max_body_bytes
    c = ctx.conn()
    c.send(b"POST /v1/statement HTTP/1.1\r\nHost: " + ctx.hostport.encode() +
           f"\r\nX-Trino-User: {ctx.user}\r\nContent-Length: {limit + 1}\r\n\r\n".encode())
    r = c.read_response("POST")
    check(r.status == 413, f"Content-Length {limit + 1}: HTTP {r.status}, expected 413")
    c.close()
    c = ctx.conn()
    head = (b"POST /v1/statement HTTP/1.1\r\nHost: " + ctx.hostport.encode() +
            f"\r\nX-Trino-User: {ctx.user}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    c.send(head)
    piece = b"x" * 65536
    sent = 0
    status = None
    try:
        while sent <= limit + len(piece):
            c.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            sent += len(piece)
    except OSError:
        pass  # the server answered and closed, or stopped reading: its answer follows
    try:
        status = c.read_response("POST").status
    except (CaseFailed, ConnectionResetError) as e:
        raise CaseFailed(f"chunked body over {limit} bytes: no answer ({e})")
    check(status == 413, f"chunked body over {limit} bytes: HTTP {status}, expected 413")
    c.close()
    # Exactly at the limit is fine: a valid SQL padded with spaces.
    sql = sim_sql("rows=2", mark="at_limit")
    if limit >= len(sql):
        body = sql + b" " * (limit - len(sql))
        c = ctx.conn()
        q = ctx.post(c, body)
        ctx.run_query(c, q, 2, 1000)
        c.close()
    return f"413 for Content-Length {limit + 1} and a chunked body over {limit}; {limit} bytes accepted"


def case_unknown_id(ctx):
    """Ids no coordinator has: 404 with a Trino-style JSON error."""
    bogus = "20200101_000000_00000_zzzzz"
    out = []
    for method, path in (("GET", f"/v1/statement/executing/{bogus}/y0/1"),
                         ("GET", f"/v1/statement/queued/{bogus}/y0/1"),
                         ("GET", f"/v1/query/{bogus}"),
                         ("DELETE", f"/v1/query/{bogus}")):
        c = ctx.conn()
        c.send(request_bytes(method, path, ctx.hostport, [f"X-Trino-User: {ctx.user}"]))
        r = c.read_response(method)
        check(r.status == 404, f"{method} {path}: HTTP {r.status}, expected 404")
        if ctx.args.json_errors:
            e = r.json().get("error")
            check(isinstance(e, dict) and all(k in e for k in ("message", "errorCode", "errorName", "errorType")),
                  f"{method} {path}: 404 body {r.body[:200]!r} lacks error.message/errorCode/errorName/errorType")
            out.append(f"{method} 404 {e['errorName']}")
        else:
            out.append(f"{method} 404")
        c.close()
    return ", ".join(out)


def read_body_capped(c, headers, cap):
    """The body of a response whose head c has read: bytes, or None once it exceeds cap
    (the rest of it is then left unread on c)."""
    hd = dict(headers)
    if "chunked" in hd.get("transfer-encoding", "").lower():
        parts, total = [], 0
        while True:
            size = int(c._line().split(b";", 1)[0].strip(), 16)
            if size == 0:
                while c._line() != b"":
                    pass
                return b"".join(parts)
            total += size
            if total > cap:
                return None
            parts.append(c._exact(size))
            check(c._exact(2) == b"\r\n", "chunk not followed by CRLF")
    n = int(hd.get("content-length", "0"))
    return None if n > cap else c._exact(n)


def find_big_page(ctx, c, q):
    """Follows query q on c up to its first page over SMALL_BODY_MAX; returns that page's
    URI with its body unread (at most a chunk's start consumed) on c."""
    page = q
    for _ in range(POLL_LIMIT):
        check(page.get("nextUri"), f"query {q['id']} ended before a big page: {str(page)[:200]}")
        uri = page["nextUri"]
        c.send(request_bytes("GET", ctx.path_of(uri), ctx.hostport, []))
        status, _, headers = c.read_head()
        check(status == 200, f"GET {uri}: HTTP {status}")
        body = read_body_capped(c, headers, SMALL_BODY_MAX)
        if body is None:
            return uri, headers
        page = json.loads(body)
    raise CaseFailed(f"no big page within {POLL_LIMIT} pages")


def case_disconnect(ctx):
    """A client that drops a 64 MB page after ~5 MB (RST), and one that closes (FIN)."""
    out = []
    for how in ("reset", "close"):
        c = ctx.conn(timeout=30)
        q = ctx.post(c, sim_sql("rows=1 page_rows=1 row_bytes=67108864", mark=f"drop_{how}"))
        find_big_page(ctx, c, q)
        getattr(c, how)()
        out.append(f"{how} inside the big page of query {q['id']}")
    # The server still serves.
    c = ctx.conn()
    q = ctx.post(c, sim_sql("rows=5 page_rows=2", mark="after_drop"))
    ctx.run_query(c, q, 5, 2)
    c.close()
    return "; ".join(out) + "; a new query then runs"


def case_big_page(ctx):
    """A 128 MB page through the server, read at a limited rate, hashed and its value
    checked; the same page fetched again from the coordinator that owns it must hash the
    same (a re-GET of a token answers the same page)."""
    row_bytes = ctx.args.big_bytes
    rate = ctx.args.big_rate_mb * (1 << 20)
    c = ctx.conn(timeout=60)
    q = ctx.post(c, sim_sql(f"rows=1 page_rows=1 row_bytes={row_bytes}", mark="big_page"))
    try:
        data_uri, _ = find_big_page(ctx, c, q)
    except OSError as e:
        raise CaseFailed(f"following query {q['id']} to its big page: {type(e).__name__} {e}")
    c.close()

    def fetch(host, port, limited):
        d = Conn(host, port, timeout=60)
        d.send(request_bytes("GET", ctx.path_of(data_uri), ctx.hostport, []))
        h = hashlib.sha256()
        value = ValueChecker(row_bytes)
        total = [0]
        t0 = time.monotonic()
        gap = [0.0, 0, t0]  # longest wait for data, at which byte, time of the last data

        def sink(b):
            now = time.monotonic()
            if now - gap[2] > gap[0]:
                gap[0], gap[1] = now - gap[2], total[0]
            h.update(b)
            value.feed(b)
            total[0] += len(b)
            ahead = total[0] / rate - (time.monotonic() - t0)
            if limited and ahead > 0:
                time.sleep(ahead)
            gap[2] = time.monotonic()
        try:
            r = d.read_response(sink=sink)
        except (OSError, CaseFailed) as e:
            raise CaseFailed(f"GET {data_uri} from {host}:{port}: {type(e).__name__} {e} after "
                             f"{total[0]} body bytes in {time.monotonic() - t0:.1f} s (longest "
                             f"wait {gap[0]:.1f} s at byte {gap[1]})")
        d.close()
        took = time.monotonic() - t0
        # At the read rate the page takes size/rate seconds; a stall is a failure.
        limit_s = (total[0] / rate) * 1.5 + 5 if limited else 60
        check(took <= limit_s, f"GET {data_uri} from {host}:{port} took {took:.1f} s for {total[0]} "
              f"bytes (at most {limit_s:.0f} s at {rate / (1 << 20):.0f} MiB/s): the longest wait "
              f"for data was {gap[0]:.1f} s at byte {gap[1]}")
        return r, h.hexdigest(), value.result(), total[0], took

    r, proxied, verr, total, took = fetch(ctx.host, ctx.port, True)
    check(r.status == 200, f"GET {data_uri} again: HTTP {r.status}")
    check(verr is None, f"the page through {ctx.hostport} is wrong: {verr}")
    ref = None
    for coord in ctx.coordinators:
        u = urllib.parse.urlsplit(coord)
        rr, digest, rerr, rtotal, _ = fetch(u.hostname, u.port or 80, False)
        if rr.status == 404:
            continue
        check(rr.status == 200, f"GET {data_uri} from {coord}: HTTP {rr.status}")
        check(rerr is None, f"the page from {coord} itself is wrong: {rerr}")
        ref = (coord, digest, rtotal)
        break
    check(ref is not None, f"no coordinator of {ctx.coordinators} knows {data_uri}")
    check(proxied == ref[1] and total == ref[2],
          f"{total} bytes sha256 {proxied} through {ctx.hostport}, {ref[2]} bytes {ref[1]} from {ref[0]}")
    return (f"{total} bytes ({r.framing}) in {took:.1f} s, value checked, sha256 {proxied[:16]}... "
            f"as from {ref[0]}")


class ValueChecker:
    """Streams a one-row page and checks its value against expected_value(0, row_bytes)."""

    MARK = re.compile(rb'"data"\s*:\s*\[\s*\[\s*"')

    def __init__(self, row_bytes):
        self.row_bytes = row_bytes
        self.state = "before"
        self.tail = b""
        self.expected = expected_value_stream(row_bytes)
        self.exp_buf = b""
        self.left = row_bytes
        self.error = None
        self.after = b""

    def _expect(self, n):
        while len(self.exp_buf) < n:
            self.exp_buf += next(self.expected)
        e, self.exp_buf = self.exp_buf[:n], self.exp_buf[n:]
        return e

    def feed(self, b):
        if self.error:
            return
        if self.state == "before":
            self.tail += b
            m = self.MARK.search(self.tail)
            if m is None:
                check(len(self.tail) < (1 << 20), "no data array in the first MiB of the page")
                return
            b, self.tail = self.tail[m.end():], b""
            self.state = "value"
        if self.state == "value":
            n = min(len(b), self.left)
            if b[:n] != self._expect(n):
                self.error = f"the value differs within bytes {self.row_bytes - self.left}..+{n}"
                return
            self.left -= n
            b = b[n:]
            if self.left == 0:
                self.state = "after"
        if self.state == "after":
            self.after = (self.after + b)[:16]

    def result(self):
        if self.error:
            return self.error
        if self.state != "after":
            return f"the value ended early ({self.state}, {self.left} bytes missing)"
        if not self.after.startswith(b'"]]'):
            return f"the value is followed by {self.after!r}, expected '\"]]'"
        return None


CASES = {
    "health": case_health,
    "keepalive": case_keepalive,
    "pipeline": case_pipeline,
    "chunked-request": case_chunked_request,
    "chunked-response": case_chunked_response,
    "absolute-delete": case_absolute_delete,
    "header-too-large": case_header_too_large,
    "slow-header": case_slow_header,
    "body-too-large": case_body_too_large,
    "unknown-id": case_unknown_id,
    "disconnect": case_disconnect,
    "big-page": case_big_page,
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="cases: " + ", ".join(CASES))
    p.add_argument("--server", required=True, help="http://HOST:PORT under test")
    p.add_argument("--coordinators", help="coordinator base URLs, comma-separated (big-page)")
    p.add_argument("--header-timeout-ms", type=int, default=10000, help="slow-header: the server's timeout")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="body-too-large: the server's limit")
    p.add_argument("--big-bytes", type=int, default=128 << 20, help="big-page: bytes of the one value")
    p.add_argument("--big-rate-mb", type=float, default=32.0, help="big-page: read rate, MiB/s")
    p.add_argument("--expect-chunked", action="store_true", help="chunked-response: the big page must come chunked")
    p.add_argument("--no-json-errors", dest="json_errors", action="store_false",
                   help="unknown-id: do not require the JSON error body")
    p.add_argument("cases", nargs="+", metavar="CASE")
    args = p.parse_args()
    bad = [c for c in args.cases if c not in CASES]
    if bad:
        p.error(f"unknown case {bad}; cases: {', '.join(CASES)}")
    ctx = Ctx(args)
    failed = 0
    for name in args.cases:
        t0 = time.monotonic()
        try:
            msg = CASES[name](ctx)
            print(f"ok {name}: {msg} ({time.monotonic() - t0:.1f} s)", flush=True)
        except (CaseFailed, OSError) as e:
            failed += 1
            print(f"FAIL {name}: {type(e).__name__ + ': ' if isinstance(e, OSError) else ''}{e}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
