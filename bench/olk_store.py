#!/usr/bin/env python3
"""olk_store.py: the state store of the openLooKeng (pre-1.3) HA re-creation.

A re-creation, not openLooKeng's code: a tiny stand-in for the Hazelcast
cluster that openLooKeng coordinators before 1.3 shared in HA mode. There,
every query submission took one global distributed lock
("submit-query-lock", tryLock with a 10 s wait), pulled the state of every
running query from the store to decide admission against its resource group,
added its own record and unlocked; a query's end removed its record. This
program offers exactly those operations to qdcoordsim
(`--admission-store ADDR:PORT`, tests/coordsim/sim_store.c) over kernel TCP
sockets, one text line per request:

  LOCK <wait_ms>     -> "OK" once the lock is ours (FIFO among waiters), or
                        "TIMEOUT" after wait_ms (the tryLock failed)
  VALUES             -> "RECORDS <n> <size>" and then n records of size bytes:
                        every running query's record, as a map's values()
                        ships them (bytes grow with the running count)
  PUT <id> <group>   -> "OK": add the record of an admitted query
  REMOVE <id>        -> "OK" or "MISSING": a query ended
  UNLOCK             -> "OK", or "ERR ..." when the caller is not the holder
  PRELOAD <n> <grp>  -> "OK": add n records of other running queries (to show
                        the cost of a large running set)
  RESET              -> "OK": forget every record and zero the counters
  STATS              -> one JSON line of counters

A record is "<id> <group> RUNNING " padded with '.' to --record-bytes, ended
by a newline. One thread, one selector loop, non-blocking sockets, bounded:
at most --max-clients connections and --max-records records; a client that
disconnects while holding the lock releases it.

usage: olk_store.py --listen ADDR:PORT [--record-bytes N] [--max-records N]
                    [--max-clients N]
"""
import argparse
import collections
import json
import selectors
import socket
import sys
import time

LINE_MAX = 512


class Client:
    def __init__(self, sock):
        self.sock = sock
        self.inbuf = b""
        self.out = collections.deque()
        self.waiting_since = None  # monotonic seconds while waiting for the lock
        self.wait_deadline = None


class Store:
    def __init__(self, args):
        self.args = args
        self.sel = selectors.DefaultSelector()
        self.records = {}  # id -> (group, bytes)
        self.holder = None
        self.waiters = collections.deque()
        self.clients = set()
        self.reset_counters()

    def reset_counters(self):
        self.c = dict(locks=0, lock_waits=0, lock_wait_ms_total=0.0, lock_wait_ms_max=0.0,
                      timeouts=0, values=0, records_shipped=0, bytes_shipped=0, puts=0,
                      removes=0, missing=0, max_records=len(self.records))

    def record(self, qid, group):
        head = f"{qid} {group} RUNNING ".encode()
        size = self.args.record_bytes
        return head[: size - 1].ljust(size - 1, b".") + b"\n"

    def send(self, cl, data):
        cl.out.append(data)
        self.flush(cl)

    def flush(self, cl):
        while cl.out:
            try:
                n = cl.sock.send(cl.out[0])
            except BlockingIOError:
                break
            except OSError:
                self.drop(cl)
                return
            if n < len(cl.out[0]):
                cl.out[0] = cl.out[0][n:]
                break
            cl.out.popleft()
        if cl in self.clients:
            ev = selectors.EVENT_READ | (selectors.EVENT_WRITE if cl.out else 0)
            self.sel.modify(cl.sock, ev, cl)

    def grant(self, cl):
        assert self.holder is None
        self.holder = cl
        self.c["locks"] += 1
        if cl.waiting_since is not None:
            ms = (time.monotonic() - cl.waiting_since) * 1000.0
            self.c["lock_wait_ms_total"] += ms
            self.c["lock_wait_ms_max"] = max(self.c["lock_wait_ms_max"], ms)
        cl.waiting_since = cl.wait_deadline = None
        self.send(cl, b"OK\n")

    def release(self):
        self.holder = None
        while self.waiters and self.holder is None:
            nxt = self.waiters.popleft()
            if nxt in self.clients:
                self.grant(nxt)

    def drop(self, cl):
        if cl not in self.clients:
            return
        self.clients.discard(cl)
        try:
            self.sel.unregister(cl.sock)
        except (KeyError, ValueError):
            pass
        cl.sock.close()
        if cl in self.waiters:
            self.waiters.remove(cl)
        if self.holder is cl:
            self.release()

    def command(self, cl, line):
        parts = line.split()
        if not parts:
            self.send(cl, b"ERR empty\n")
            return
        op = parts[0].upper()
        if op == "LOCK" and len(parts) == 2 and parts[1].isdigit():
            if self.holder is cl:
                self.send(cl, b"ERR already held\n")
            elif self.holder is None:
                self.grant(cl)
            else:
                self.c["lock_waits"] += 1
                cl.waiting_since = time.monotonic()
                cl.wait_deadline = cl.waiting_since + int(parts[1]) / 1000.0
                self.waiters.append(cl)
        elif op == "UNLOCK" and len(parts) == 1:
            if self.holder is not cl:
                self.send(cl, b"ERR not the holder\n")
            else:
                self.send(cl, b"OK\n")
                self.release()
        elif op == "VALUES" and len(parts) == 1:
            n = len(self.records)
            size = self.args.record_bytes
            self.c["values"] += 1
            self.c["records_shipped"] += n
            self.c["bytes_shipped"] += n * size
            body = b"".join(r for _, r in self.records.values())
            self.send(cl, f"RECORDS {n} {size}\n".encode() + body)
        elif op == "PUT" and len(parts) == 3:
            if len(self.records) >= self.args.max_records and parts[1] not in self.records:
                self.send(cl, b"ERR full\n")
                return
            self.records[parts[1]] = (parts[2], self.record(parts[1], parts[2]))
            self.c["puts"] += 1
            self.c["max_records"] = max(self.c["max_records"], len(self.records))
            self.send(cl, b"OK\n")
        elif op == "REMOVE" and len(parts) == 2:
            if self.records.pop(parts[1], None) is None:
                self.c["missing"] += 1
                self.send(cl, b"MISSING\n")
            else:
                self.c["removes"] += 1
                self.send(cl, b"OK\n")
        elif op == "PRELOAD" and len(parts) == 3 and parts[1].isdigit():
            n = min(int(parts[1]), self.args.max_records - len(self.records))
            for i in range(n):
                qid = f"preload_{len(self.records)}_{i}"
                self.records[qid] = (parts[2], self.record(qid, parts[2]))
            self.c["max_records"] = max(self.c["max_records"], len(self.records))
            self.send(cl, b"OK\n")
        elif op == "RESET" and len(parts) == 1:
            self.records.clear()
            self.reset_counters()
            self.send(cl, b"OK\n")
        elif op == "STATS" and len(parts) == 1:
            st = dict(self.c, records_now=len(self.records), record_bytes=self.args.record_bytes,
                      clients=len(self.clients), waiters=len(self.waiters),
                      held=self.holder is not None)
            self.send(cl, (json.dumps(st, sort_keys=True) + "\n").encode())
        else:
            self.send(cl, b"ERR bad request\n")

    def readable(self, cl):
        try:
            data = cl.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.drop(cl)
            return
        cl.inbuf += data
        while cl in self.clients:
            nl = cl.inbuf.find(b"\n")
            if nl < 0:
                if len(cl.inbuf) > LINE_MAX:
                    self.drop(cl)
                return
            line, cl.inbuf = cl.inbuf[:nl], cl.inbuf[nl + 1:]
            self.command(cl, line.decode("ascii", "replace"))

    def expire_waiters(self):
        now = time.monotonic()
        for cl in list(self.waiters):
            if cl.wait_deadline is not None and now >= cl.wait_deadline:
                self.waiters.remove(cl)
                cl.waiting_since = cl.wait_deadline = None
                self.c["timeouts"] += 1
                self.send(cl, b"TIMEOUT\n")

    def run(self, lsock):
        lsock.setblocking(False)
        self.sel.register(lsock, selectors.EVENT_READ, None)
        while True:
            timeout = None
            if self.waiters:
                soonest = min(w.wait_deadline for w in self.waiters)
                timeout = max(0.0, soonest - time.monotonic())
            for key, ev in self.sel.select(timeout):
                if key.data is None:
                    try:
                        s, _ = lsock.accept()
                    except BlockingIOError:
                        continue
                    if len(self.clients) >= self.args.max_clients:
                        s.close()
                        continue
                    s.setblocking(False)
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    cl = Client(s)
                    self.clients.add(cl)
                    self.sel.register(s, selectors.EVENT_READ, cl)
                    continue
                cl = key.data
                if ev & selectors.EVENT_READ:
                    self.readable(cl)
                if cl in self.clients and ev & selectors.EVENT_WRITE:
                    self.flush(cl)
            self.expire_waiters()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", required=True, help="ADDR:PORT")
    ap.add_argument("--record-bytes", type=int, default=1024,
                    help="bytes of one running query's record (default 1024)")
    ap.add_argument("--max-records", type=int, default=1000000)
    ap.add_argument("--max-clients", type=int, default=256)
    args = ap.parse_args()
    if not 64 <= args.record_bytes <= 65536:
        ap.error("--record-bytes must be 64..65536")
    host, _, port = args.listen.rpartition(":")
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        lsock.bind((host, int(port)))
    except (OSError, ValueError) as e:
        print(f"olk_store: cannot listen on {args.listen}: {e}", file=sys.stderr)
        return 1
    lsock.listen(256)
    print(f"olk_store: listening on {args.listen}, records of {args.record_bytes} bytes",
          file=sys.stderr, flush=True)
    try:
        Store(args).run(lsock)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
