#!/usr/bin/env python3
"""admission_cases.py: the dispatcher-side queue of qdispatchd, case by case.

Talks the Trino client protocol with plain HTTP to $QD_URL (the lab's VIP), with
the lab's groups file tests/lab/admission_groups.json loaded, and reads the
admission state with `qdctl --json status` (.admission). Each case prints one
line "ok <name>: <detail>" or raises; the exit code is 0 only if every case
passed.

Cases (the first run, default timeouts):
  fifo         global.tiny (limit 1, maxQueued 2): one runs, two queue with
               placeholder ids; they are dispatched one at a time, in order,
               and each finishes with its rows
  queue_full   a third queued query of global.tiny gets QUERY_QUEUE_FULL
  cancel       DELETE of a queued query's nextUri: 204, then FAILED
               USER_CANCELED; the group counts it
  rejected     a query no selector matches: FAILED QUERY_REJECTED
  alias        a query dispatched from the queue can be cancelled by the
               placeholder id it was first given (DELETE /v1/query/<id>)
  reload       qdctl reload-groups with global.tiny raised to 2: two tiny queries
               run at once; a broken file is refused and changes nothing; the
               original file comes back
The second run (--timeouts, with admission.queue_timeout_ms=2500,
admission.client_timeout_ms=1000, admission.poll_wait_ms=300 and
admission.max_statement_bytes=2048):
  timeout      a queued query polled past the queue timeout: EXCEEDED_TIME_LIMIT
  abandoned    a queued query nobody polls is dropped: counted abandoned
  too_big      a statement over admission.max_statement_bytes: 413
--vanish N submits N queries nobody polls; --settle-only only waits for rest.
Both runs end by checking that every group is back to 0 running and 0 queued
and that slots are conserved (running + reserved + pool == limit).
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

URL = os.environ.get("QD_URL", "http://127.0.0.1:8080")


def request(method, url, body=None, headers=None, timeout=30):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = r.read()
            return r.status, (json.loads(data) if data else None)
    except urllib.error.HTTPError as e:
        data = e.read()
        try:
            return e.code, json.loads(data) if data else None
        except ValueError:
            return e.code, data


def submit(sql, user="case", source="", timeout=30):
    headers = {"X-Trino-User": user}
    if source:
        headers["X-Trino-Source"] = source
    status, doc = request("POST", URL + "/v1/statement", sql.encode(), headers, timeout)
    if status != 200:
        raise AssertionError(f"POST: status {status}: {doc}")
    return doc


def follow(doc, until_real=False, deadline_s=30):
    """Poll nextUri until the query ends (or, with until_real, until its id is no
    longer a placeholder). Returns (last document, rows, ids seen)."""
    rows, ids = 0, [doc["id"]]
    end = time.monotonic() + deadline_s
    while doc.get("nextUri"):
        if until_real and not doc["id"].startswith("qdq_"):
            break
        if time.monotonic() > end:
            raise AssertionError(f"query {ids[0]} did not end in {deadline_s}s")
        status, doc = request("GET", doc["nextUri"])
        if status != 200:
            raise AssertionError(f"GET nextUri: status {status}: {doc}")
        if doc["id"] != ids[-1]:
            ids.append(doc["id"])
        rows += len(doc.get("data") or [])
    return doc, rows, ids


def admission():
    out = subprocess.run(["qdctl", "--json", "status"], check=True, capture_output=True,
                         text=True).stdout
    adm = json.loads(out)["admission"]
    if adm is None:
        raise AssertionError("qdctl: admission control is off")
    return adm


def group(name):
    for g in admission()["groups"]:
        if g["name"] == name:
            return g
    raise AssertionError(f"no group {name}")


def error_name(doc):
    return (doc.get("error") or {}).get("errorName")


def state(doc):
    return (doc.get("stats") or {}).get("state")


def sim(run_ms, rows=2, tag=""):
    return f"/* sim: rows={rows} page_rows=1 run_ms={run_ms} */ SELECT '{tag}'"


def ok(name, detail):
    print(f"ok {name}: {detail}", flush=True)


def case_fifo_and_full():
    running = submit(sim(1200, tag="r0"), source="tiny")
    if running["id"].startswith("qdq_"):
        raise AssertionError(f"the first query of an idle group was queued: {running['id']}")
    q1 = submit(sim(1200, tag="q1"), source="tiny")
    q2 = submit(sim(600, tag="q2"), source="tiny")
    for q in (q1, q2):
        if not q["id"].startswith("qdq_") or state(q) != "QUEUED":
            raise AssertionError(f"expected a placeholder QUEUED answer, got {q}")
    full = submit(sim(100, tag="q3"), source="tiny")
    if state(full) != "FAILED" or error_name(full) != "QUERY_QUEUE_FULL":
        raise AssertionError(f"a third queued query: expected QUERY_QUEUE_FULL, got {full}")
    g = group("global.tiny")
    if g["queued"] != 2 or g["running"] != 1:
        raise AssertionError(f"global.tiny: expected 1 running 2 queued, got {g}")
    ok("queue_full", f"{full['id']} QUERY_QUEUE_FULL with 1 running and 2 queued")
    # Poll all three at once; note when each queued one got its coordinator's id.
    got = {}

    def run(name, doc):
        t0 = time.monotonic()
        last, rows, ids = follow(doc)
        got[name] = (last, rows, ids, t0)

    def run_queued(name, doc):
        first, _, _ = follow(doc, until_real=True)
        got[name + "_at"] = time.monotonic()
        last, rows, ids = follow(first)
        got[name] = (last, rows, [doc["id"]] + ids, 0)

    threads = [threading.Thread(target=run, args=("r0", running)),
               threading.Thread(target=run_queued, args=("q1", q1)),
               threading.Thread(target=run_queued, args=("q2", q2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for name in ("r0", "q1", "q2"):
        if name not in got:
            raise AssertionError(f"{name} did not end")
        last, rows, ids, _ = got[name]
        if state(last) != "FINISHED" or rows != 2:
            raise AssertionError(f"{name}: {state(last)} with {rows} rows ({ids}): {last.get('error')}")
    if not got["q1_at"] < got["q2_at"]:
        raise AssertionError("q2 was dispatched before q1: not FIFO")
    # limit 1: q2 could start only after q1 (1.2 s of running) ended
    gap = got["q2_at"] - got["q1_at"]
    if gap < 0.8:
        raise AssertionError(f"q2 dispatched {gap:.2f}s after q1: two ran at once in a group of 1")
    ok("fifo", f"q1 then q2, {gap:.2f}s apart; ids {got['q1'][2]} and {got['q2'][2]}")


def case_cancel():
    running = submit(sim(1500, tag="c0"), source="tiny")
    queued = submit(sim(100, tag="c1"), source="tiny")
    if not queued["id"].startswith("qdq_"):
        raise AssertionError(f"expected a placeholder, got {queued['id']}")
    before = group("global.tiny")["counters"]["canceled_queued"]
    status, _ = request("DELETE", queued["nextUri"])
    if status != 204:
        raise AssertionError(f"DELETE of a queued query: status {status}")
    status, doc = request("GET", queued["nextUri"])
    if status != 200 or state(doc) != "FAILED" or error_name(doc) != "USER_CANCELED":
        raise AssertionError(f"after DELETE: expected FAILED USER_CANCELED, got {status} {doc}")
    after = group("global.tiny")["counters"]["canceled_queued"]
    if after != before + 1:
        raise AssertionError(f"canceled_queued {before} -> {after}")
    last, rows, _ = follow(running)
    if state(last) != "FINISHED":
        raise AssertionError(f"the running query: {state(last)}")
    ok("cancel", f"{queued['id']} canceled while queued, USER_CANCELED")


def case_alias():
    running = submit(sim(800, tag="a0"), source="tiny")
    queued = submit(sim(5000, rows=3, tag="a1"), source="tiny")
    pid = queued["id"]
    # the running query must be polled to its end to free the group's slot
    poller = threading.Thread(target=follow, args=(running,))
    poller.start()
    first, _, _ = follow(queued, until_real=True)
    if first["id"].startswith("qdq_"):
        raise AssertionError("never dispatched")
    status, _ = request("DELETE", f"{URL}/v1/query/{pid}")
    if status // 100 != 2:
        raise AssertionError(f"DELETE /v1/query/{pid} after dispatch: status {status}")
    last, _, _ = follow(first)
    if state(last) != "FAILED" or error_name(last) != "USER_CANCELED":
        raise AssertionError(f"cancel by placeholder id: got {state(last)} {last.get('error')}")
    poller.join(30)
    ok("alias", f"{pid} (now {first['id']}) canceled by its placeholder id")


def qdctl(*args):
    return subprocess.run(["qdctl", *args], capture_output=True, text=True)


def case_reload(groups_file):
    with open(groups_file) as f:
        cfg = json.load(f)
    for g in cfg["rootGroups"][0]["subGroups"]:
        if g["name"] == "tiny":
            g["hardConcurrencyLimit"] = 2
    raised = "/tmp/qd-admission-cases-raised.json"
    with open(raised, "w") as f:
        json.dump(cfg, f)
    r = qdctl("reload-groups", raised)
    if r.returncode != 0:
        raise AssertionError(f"reload-groups {raised}: {r.stderr}")
    if group("global.tiny")["hard_concurrency_limit"] != 2:
        raise AssertionError("reload did not raise global.tiny to 2")
    a = submit(sim(300, tag="r1"), source="tiny")
    b = submit(sim(300, tag="r2"), source="tiny")
    if a["id"].startswith("qdq_") or b["id"].startswith("qdq_"):
        raise AssertionError(f"after the reload two tiny queries should run: {a['id']} {b['id']}")
    for q in (a, b):
        follow(q)
    broken = "/tmp/qd-admission-cases-broken.json"
    with open(broken, "w") as f:
        f.write('{"rootGroups": [{"name": "global", "hardConcurrencyLimit": -1}]')
    r = qdctl("reload-groups", broken)
    if r.returncode != 1 or "nothing changed" not in r.stderr:
        raise AssertionError(f"a broken file: exit {r.returncode}, stderr {r.stderr!r}")
    if group("global.tiny")["hard_concurrency_limit"] != 2:
        raise AssertionError("a refused reload changed the limits")
    r = qdctl("reload-groups", groups_file)
    if r.returncode != 0 or group("global.tiny")["hard_concurrency_limit"] != 1:
        raise AssertionError(f"reloading the original file: {r.stderr}")
    ok("reload", "limit raised and lowered at run time; a broken file refused: " +
       r.stderr.strip()[:0] + "nothing changed")


def case_rejected():
    doc = submit("SELECT 1", user="nobody", source="nowhere")
    if state(doc) != "FAILED" or error_name(doc) != "QUERY_REJECTED":
        raise AssertionError(f"expected QUERY_REJECTED, got {doc}")
    ok("rejected", doc["error"]["message"])


def case_timeouts():
    running = submit(sim(4000, tag="t0"), source="tiny")
    timed = submit(sim(100, tag="t1"), source="tiny")
    left = submit(sim(100, tag="t2"), source="tiny")  # never polled
    last, _, _ = follow(timed, deadline_s=10)
    if state(last) != "FAILED" or error_name(last) != "EXCEEDED_TIME_LIMIT":
        raise AssertionError(f"queue timeout: expected EXCEEDED_TIME_LIMIT, got {last}")
    ok("timeout", f"{timed['id']}: {last['error']['message']}")
    deadline = time.monotonic() + 10
    while group("global.tiny")["counters"]["abandoned"] < 1:
        if time.monotonic() > deadline:
            raise AssertionError(f"{left['id']} was never dropped as abandoned")
        time.sleep(0.2)
    ok("abandoned", f"{left['id']} dropped after admission.client_timeout_ms")
    status, doc = request("POST", URL + "/v1/statement", b"SELECT '" + b"x" * 4096 + b"'",
                          {"X-Trino-User": "case", "X-Trino-Source": "tiny"})
    if status != 413:
        raise AssertionError(f"a statement over the limit: status {status}")
    ok("too_big", "413 for a 4 KiB statement")
    follow(running, deadline_s=15)


def vanish(n):
    """Submit n queries and never look at them again (clients that went away)."""
    for i in range(n):
        doc = submit(sim(500, tag=f"v{i}"), user="adhoc", source="others")
        if state(doc) == "FAILED":
            raise AssertionError(f"vanishing query {i}: {doc.get('error')}")
    ok("vanish", f"{n} queries submitted and left")


def settle():
    """Every group back to 0 running / 0 queued, slots conserved."""
    deadline = time.monotonic() + 30
    while True:
        adm = admission()
        bad = [g for g in adm["groups"] if g["running"] != 0 or g["queued"] != 0 or
               g["running"] + g["reserved"] + g["pool"] != g["local_limit"]]
        if not bad and adm["waiting"] == 0:
            ok("settled", f"{len(adm['groups'])} groups at rest, slots conserved")
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not at rest: {bad} waiting={adm['waiting']} "
                                 f"entries_used={adm['entries_used']}")
        time.sleep(0.2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--timeouts", action="store_true",
                    help="the second run's cases (short queue and client timeouts)")
    ap.add_argument("--groups", default=os.path.join(os.path.dirname(__file__), "..", "lab",
                                                     "admission_groups.json"),
                    help="the groups file the lab runs with (the reload case edits a copy)")
    ap.add_argument("--settle-only", action="store_true",
                    help="only wait until every group is at rest with its slots conserved")
    ap.add_argument("--vanish", type=int, metavar="N",
                    help="only submit N queries that nobody polls (for the fault run)")
    args = ap.parse_args()
    if args.settle_only:
        settle()
        return
    if args.vanish:
        vanish(args.vanish)
        return
    if args.timeouts:
        case_timeouts()
    else:
        case_fifo_and_full()
        case_cancel()
        case_alias()
        case_rejected()
        case_reload(args.groups)
    settle()


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
