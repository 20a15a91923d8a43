#!/usr/bin/env python3
"""A coordinator stand-in that answers in every HTTP/1.1 response framing.

tests/lab/proxy_framing.sh runs it on a coordinator address (after the
simulator's kill endpoint freed it) to check how qdispatchd forwards responses
the simulator never sends. Paths (GET unless said):

  /frame/chunked?n=N&size=S   N chunks of S bytes, Transfer-Encoding: chunked,
                              with chunk extensions and a trailer
  /frame/eof?bytes=B          no Content-Length, no chunking: the body ends when
                              the server closes (Connection: close)
  /frame/interim              a 103 Early Hints, then 200 with Content-Length
  /frame/length?bytes=B       plain Content-Length (also answers HEAD)
  /frame/nocontent            204

Bodies are deterministic (byte i is "0123456789abcdef"[i % 16]) so the client
can check every byte. Each request is answered on a new thread; one request
per connection unless keep-alive framing allows more.
"""
import argparse
import socketserver
import urllib.parse

PATTERN = b"0123456789abcdef"


def body(n):
    return (PATTERN * (n // 16 + 1))[:n]


class Handler(socketserver.StreamRequestHandler):
    def read_head(self):
        lines = []
        while True:
            line = self.rfile.readline(65537)
            if not line:
                return None
            if line in (b"\r\n", b"\n"):
                break
            lines.append(line.decode("latin-1").rstrip("\r\n"))
        if not lines:
            return None
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for h in lines[1:]:
            k, _, v = h.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0") or 0)
        if n:
            self.rfile.read(n)
        return method, target, headers

    def handle(self):
        while True:
            req = self.read_head()
            if req is None:
                return
            method, target, headers = req
            u = urllib.parse.urlsplit(target)
            q = dict(urllib.parse.parse_qsl(u.query))
            w = self.wfile.write
            if u.path == "/frame/chunked":
                n, size = int(q.get("n", 10)), int(q.get("size", 1000))
                w(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                  b"Transfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n")
                data = body(n * size)
                for i in range(n):
                    w(b"%x;ext=%d\r\n" % (size, i) + data[i * size:(i + 1) * size] + b"\r\n")
                w(b"0\r\nX-Sum: ignored\r\n\r\n")
            elif u.path == "/frame/eof":
                b = int(q.get("bytes", 100000))
                w(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
                w(body(b))
                self.wfile.flush()
                return
            elif u.path == "/frame/interim":
                b = body(int(q.get("bytes", 5000)))
                w(b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n")
                w(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(b) + b)
            elif u.path == "/frame/length":
                b = body(int(q.get("bytes", 5000)))
                w(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(b))
                if method != "HEAD":
                    w(b)
            elif u.path == "/frame/nocontent":
                w(b"HTTP/1.1 204 No Content\r\n\r\n")
            else:
                w(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            self.wfile.flush()


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, help="ADDR:PORT")
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    with Server((host, int(port)), Handler) as s:
        s.serve_forever()


if __name__ == "__main__":
    main()
