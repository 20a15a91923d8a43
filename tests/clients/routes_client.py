#!/usr/bin/env python3
"""routes_client.py: routes everywhere, with two qdispatchd peers that share no state.

Run inside the lab (scripts/lab exec) with two peers: VIP 1 is peer 1, VIP 2 is peer 2
($QD_VIPS, $QD_CTL_SOCKETS in the same order), resource groups from
tests/lab/admission_groups.json, and route.verify_after_s short on both. Queries are
submitted through VIP 1 and everything after that goes through VIP 2, as after a VIP
failover. Each step prints "ok <name>: <detail>" or raises; exit 0 only if all passed.

  discover     N queries (global.etl: user etl-u, source etl, a client tag) submitted via
               VIP 1; half are first seen by peer 2 through their nextUri, half through
               GET /v1/query/{id}. Peer 2 finds all N (discovery found = N), adopts the
               routes, and counts them in global.etl's running queries while they run
  latency      the first request of a query on peer 2 (discovered) against the next ones
               (known route), GET /v1/query/{id} both, same connection: printed
  complete     every query polled to its end through VIP 2 returns all its rows; peer 2's
               group goes back to 0 running, no debt, slots conserved
  cancel       DELETE of a nextUri through VIP 2 (the id unknown to peer 2; global.adhoc.others):
               204, and the coordinator has the query FAILED USER_CANCELED; peer 2's slots
               come back
  unknown      an id no coordinator knows, through VIP 2: 404 after asking (not found +1)
  verify       peer 1 got no request for its queries after the submission: its verification
               of quiet routes sees them running, then ended, and every group on peer 1 goes
               back to 0 running long before route.idle_timeout_s
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.parse

VIPS = os.environ["QD_VIPS"].split(",")
SOCKETS = os.environ["QD_CTL_SOCKETS"].split(",")
COORDS = os.environ["QD_COORDINATORS"].split(",")
PORT = urllib.parse.urlsplit(os.environ["QD_URL"]).port or 80
HEADERS = {"X-Trino-User": "etl-u", "X-Trino-Source": "etl", "X-Trino-Client-Tags": "routes"}
ROWS = 8


def ok(name, detail):
    print(f"ok   {name}: {detail}", flush=True)


def status(peer):
    out = subprocess.run(["qdctl", "--socket", SOCKETS[peer], "--json", "status"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def group(st, name):
    for g in st["admission"]["groups"]:
        if g["name"] == name:
            return g
    raise AssertionError(f"no group {name}")


class Conn:
    """One keep-alive connection to host:port; request() returns (status, body, seconds)."""

    def __init__(self, host, port=PORT):
        self.host, self.port, self.c = host, port, None

    def request(self, method, path, body=None, headers=None):
        for attempt in range(2):
            if self.c is None:
                self.c = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                t0 = time.perf_counter()
                self.c.request(method, path, body=body, headers={**HEADERS, **(headers or {})})
                r = self.c.getresponse()
                data = r.read()
                return r.status, data, time.perf_counter() - t0
            except (http.client.HTTPException, ConnectionError):
                self.c.close()
                self.c = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")


def path_of(uri):
    u = urllib.parse.urlsplit(uri)
    return u.path + (("?" + u.query) if u.query else "")


OTHERS = {"X-Trino-User": "adhoc", "X-Trino-Source": "others"}  # global.adhoc.others


def submit(c1, sql, headers=None):
    st, body, _ = c1.request("POST", "/v1/statement", body=sql.encode(), headers=headers)
    assert st == 200, f"submit: {st} {body[:200]!r}"
    doc = json.loads(body)
    assert not doc["id"].startswith("qdq_"), f"queued at peer 1 ({doc['id']}): limits too low"
    return doc


def follow(c2, doc, deadline_s=60):
    """Poll nextUri through <c2> to the end; returns (rows, last document)."""
    rows = len(doc.get("data") or [])
    end = time.time() + deadline_s
    while doc.get("nextUri"):
        assert time.time() < end, f"{doc['id']}: not finished in {deadline_s} s"
        st, body, _ = c2.request("GET", path_of(doc["nextUri"]))
        assert st == 200, f"{doc['id']}: poll {st} {body[:200]!r}"
        doc = json.loads(body)
        rows += len(doc.get("data") or [])
    return rows, doc


def wait_for(what, pred, timeout_s):
    end = time.time() + timeout_s
    while True:
        v = pred()
        if v:
            return v
        if time.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--run-ms", type=int, default=6000)
    args = ap.parse_args()
    n = args.queries
    assert len(VIPS) >= 2 and len(SOCKETS) >= 2, "two peers needed"
    c1, c2 = Conn(VIPS[0]), Conn(VIPS[1])
    base1, base2 = status(0), status(1)
    d0 = base2["totals"]["reconcile"]["discovery"]

    # ---- discover -------------------------------------------------------------------
    sql = f"SELECT c0 FROM t /* sim: rows={ROWS} page_rows=2 run_ms={args.run_ms} */"
    docs = [submit(c1, sql) for _ in range(n)]
    first_lat, known_lat = [], []
    firsts = []
    for i, doc in enumerate(docs):
        if i < n // 2:
            # the nextUri (its host is VIP 1's: the path goes to VIP 2, as after a failover)
            st, body, _ = c2.request("GET", path_of(doc["nextUri"]))
            assert st == 200, f"{doc['id']}: first poll via VIP 2: {st} {body[:200]!r}"
            firsts.append(json.loads(body))
        else:
            st, body, t = c2.request("GET", f"/v1/query/{doc['id']}")
            assert st == 200, f"{doc['id']}: /v1/query via VIP 2: {st} {body[:200]!r}"
            assert json.loads(body)["queryId"] == doc["id"]
            first_lat.append(t)
            for _ in range(5):
                st, _, t = c2.request("GET", f"/v1/query/{doc['id']}")
                assert st == 200
                known_lat.append(t)
            firsts.append(doc)
    st2 = status(1)
    d = st2["totals"]["reconcile"]["discovery"]
    found = d["found"] - d0["found"]
    assert found == n, f"peer 2 found {found} of {n}: {d}"
    adopted = st2["routes"]["adopted"]
    assert adopted["now"] >= n, f"adopted routes on peer 2: {adopted}"
    g = group(st2, "global.etl")
    assert g["running"] >= n and g["adopted"] >= n, f"peer 2 global.etl while they run: {g}"
    ok("discover", f"peer 2 found {found}/{n} (mean {d['latency_us_sum'] // max(d['found'] + d['not_found'] + d['timed_out'], 1)} us), "
       f"adopted {adopted['now']} routes, global.etl running {g['running']} "
       f"(limit {g['hard_concurrency_limit']}, debt {g['debt']})")
    ms = lambda xs: 1000.0 * sum(xs) / len(xs)
    ok("latency", f"GET /v1/query/{{id}} via peer 2: discovered {ms(first_lat):.2f} ms "
       f"(mean of {len(first_lat)}), known route {ms(known_lat):.2f} ms (mean of {len(known_lat)}), "
       f"added {ms(first_lat) - ms(known_lat):.2f} ms")

    # ---- complete -------------------------------------------------------------------
    for i, doc in enumerate(firsts):
        rows, last = follow(c2, doc)
        rows += 0 if i >= n // 2 else len(docs[i].get("data") or [])
        assert rows == ROWS, f"{doc['id']}: {rows} rows, not {ROWS}"
        assert last["stats"]["state"] == "FINISHED", f"{doc['id']}: {last['stats']}"

    def at_rest(s):
        for gg in s["admission"]["groups"]:
            if gg["running"] != 0 or gg["debt"] != 0 or \
                    gg["running"] + gg["reserved"] + gg["pool"] != \
                    gg.get("local_limit", gg["hard_concurrency_limit"]) + gg["debt"]:
                return False
        return True

    def settled():
        s = status(1)
        return s if at_rest(s) else None
    s = wait_for("peer 2's groups back to 0", settled, 10)
    fin = s["routes"]["ended"]["finished"] - base2["routes"]["ended"]["finished"]
    assert fin >= n, f"peer 2 ended {fin} routes finished"
    ok("complete", f"{n} queries, {ROWS} rows each, through VIP 2; peer 2 back to 0 running, "
       f"{fin} routes ended finished")

    # ---- cancel ---------------------------------------------------------------------
    long_sql = "SELECT c0 FROM t /* sim: rows=4 page_rows=2 run_ms=60000 */"
    # another group: peer 1 holds global.etl's slots until it verifies its quiet routes
    victims = [submit(c1, long_sql, OTHERS) for _ in range(2)]
    for v in victims:
        st, body, _ = c2.request("DELETE", path_of(v["nextUri"]), headers=OTHERS)
        assert st == 204, f"{v['id']}: DELETE via VIP 2: {st} {body[:200]!r}"
    for v in victims:
        states = []
        for co in COORDS:
            u = urllib.parse.urlsplit(co)
            cc = Conn(u.hostname, u.port)
            st, body, _ = cc.request("GET", f"/v1/query/{v['id']}")
            if st == 200:
                info = json.loads(body)
                states.append((info["state"], info.get("errorCode", {}).get("name")))
        assert states == [("FAILED", "USER_CANCELED")], f"{v['id']} on the coordinators: {states}"
    s = wait_for("peer 2's groups back to 0 after the cancels", settled, 10)
    canc = s["routes"]["ended"]["canceled"] - base2["routes"]["ended"]["canceled"]
    assert canc >= 2, f"peer 2 ended {canc} routes canceled"
    ok("cancel", "DELETE of 2 nextUris via VIP 2: 204, FAILED USER_CANCELED on the coordinator")

    # ---- unknown ----------------------------------------------------------------------
    nf0 = status(1)["totals"]["reconcile"]["discovery"]["not_found"]
    st, body, t = c2.request("GET", "/v1/statement/executing/20200101_000000_00000_zzzzz/y/1")
    assert st == 404, f"unknown id: {st} {body[:200]!r}"
    nf = status(1)["totals"]["reconcile"]["discovery"]["not_found"] - nf0
    assert nf == 1, f"not found +{nf}"
    st, body, _ = c2.request("GET", "/v1/statement/queued/qdq_1_2/y/1")
    assert st == 404, f"a placeholder id: {st}"
    assert status(1)["totals"]["reconcile"]["discovery"]["not_found"] - nf0 == 1, \
        "a placeholder id was looked up"
    ok("unknown", f"404 after asking every coordinator ({1000 * t:.1f} ms); placeholders not asked")

    # ---- verify (peer 1) ----------------------------------------------------------------
    def peer1_settled():
        s = status(0)
        return s if at_rest(s) else None
    s1 = wait_for("peer 1's groups back to 0 (verification of quiet routes)",
                  peer1_settled, 30)
    v = s1["totals"]["reconcile"]["verify"]
    v0 = base1["totals"]["reconcile"]["verify"]
    ended = v["ended"] - v0["ended"]
    assert ended >= n + 2, f"peer 1 verification ended {ended} routes: {v}"
    # checked while they ran (quiet after 2 s, they run 6 s): kept, checked again later
    assert v["running"] - v0["running"] >= 1, f"peer 1 never saw a quiet route running: {v}"
    idle = s1["routes"]["ended"]["idle"] - base1["routes"]["ended"]["idle"]
    assert idle == 0, f"{idle} routes of peer 1 ended idle"
    ok("verify", f"peer 1: {v['checked'] - v0['checked']} quiet routes checked, "
       f"{v['running'] - v0['running']} still running, {ended} ended; every group back to 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
