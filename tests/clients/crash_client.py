#!/usr/bin/env python3
"""crash_client.py: queries that must survive a crash of the dispatcher in their middle.

Submits N queries through $QD_URL (in parallel threads) whose data pages come slowly
(the simulator's page_ms), then polls each nextUri like the Trino CLI and JDBC driver do:
a poll that fails on the connection (refused, reset, timed out: the dispatcher is
restarting) is retried after a pause, with the same URI, until --retry-s runs out. A
query passes when it ends FINISHED with every row of the simulator's promise; the run
passes when every query does.

While the queries run it writes "running N" to stdout once every query has its first
answer, so the caller knows when to crash the dispatcher; at the end one JSON line:
{"queries": N, "finished": N, "canceled": C, "failed": [...], "retried_polls": R}. Exit 0
when every query finished with all its rows (or, for the ids of --expect-canceled-file,
ended FAILED with USER_CANCELED), 1 otherwise.

For tests that change queries behind the dispatcher's back: --ids-file writes the
coordinators' query ids (one a line) before "running N"; while the --hold-file exists no
poll is sent (the dispatcher then sees no client at all); --expect-canceled-file names a
file, read at the end, of the ids that were cancelled on the coordinators.
"""
import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

URL = os.environ.get("QD_URL", "http://127.0.0.1:8080")


def call(method, url, body=None, headers=None, timeout=10):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, json.loads(r.read() or b"null")


def held(args):
    """Wait while the hold file exists; returns the seconds waited."""
    waited = 0.0
    while args.hold_file and os.path.exists(args.hold_file):
        time.sleep(0.05)
        waited += 0.05
    return waited


def run_query(i, args, started, results, lock):
    sql = (f"/* sim: rows={args.rows} page_rows=1 page_ms={args.page_ms} */ "
           f"SELECT 'crash-{i}'")
    headers = {"X-Trino-User": args.user, "X-Trino-Source": args.source}
    res = results[i]
    try:
        _, doc = call("POST", URL + "/v1/statement", sql.encode(), headers)
        res["id"] = doc.get("id")
        with lock:
            started[0] += 1
        deadline = time.monotonic() + args.retry_s
        while doc.get("nextUri"):
            uri = doc["nextUri"]
            deadline += held(args)
            try:
                status, new = call("GET", uri, timeout=args.request_timeout)
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
                if isinstance(e, urllib.error.HTTPError) and e.code not in (502, 503, 504):
                    raise
                if time.monotonic() > deadline:
                    raise
                res["retries"] += 1
                time.sleep(0.3)
                continue
            doc = new
            res["id"] = doc.get("id") or res["id"]  # the coordinator's, once dispatched
            res["rows"] += len(doc.get("data") or [])
        res["state"] = (doc.get("stats") or {}).get("state")
        if doc.get("error"):
            res["error"] = doc["error"].get("errorName")
    except Exception as e:  # noqa: BLE001 - reported per query
        res["error"] = f"{type(e).__name__}: {e}"
    res["done"] = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queries", type=int, default=12)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--page-ms", type=int, default=700)
    ap.add_argument("--user", default="adhoc")
    ap.add_argument("--source", default="others")
    ap.add_argument("--retry-s", type=float, default=60, help="give up retrying after this")
    ap.add_argument("--request-timeout", type=float, default=10,
                    help="a poll with no answer this long is retried (a request in flight "
                         "when its dispatcher died gets no answer and no reset: only this "
                         "timeout tells the client, as the Trino CLI's read timeout does)")
    ap.add_argument("--ids-file", help="write the coordinators' query ids here")
    ap.add_argument("--hold-file", help="send no poll while this file exists")
    ap.add_argument("--expect-canceled-file",
                    help="file (read at the end) of the ids expected to end USER_CANCELED")
    args = ap.parse_args()
    started, lock = [0], threading.Lock()
    results = [{"index": i, "id": None, "state": None, "rows": 0, "retries": 0, "error": None,
                "done": False} for i in range(args.queries)]
    threads = [threading.Thread(target=run_query, args=(i, args, started, results, lock))
               for i in range(args.queries)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while started[0] < args.queries and time.monotonic() < deadline and \
            any(t.is_alive() for t in threads):
        time.sleep(0.05)
    if args.ids_file:
        # the coordinators' ids: a query queued at the dispatcher has a placeholder first
        while time.monotonic() < deadline and \
                any((r["id"] or "qdq_").startswith("qdq_") and not r["done"] for r in results):
            time.sleep(0.05)
        with open(args.ids_file + ".tmp", "w", encoding="utf-8") as f:
            f.write("".join(f"{r['id']}\n" for r in results if r["id"]))
        os.replace(args.ids_file + ".tmp", args.ids_file)
    print(f"running {started[0]}", flush=True)
    for t in threads:
        t.join(args.retry_s + 60)
    canceled = set()
    if args.expect_canceled_file:
        with open(args.expect_canceled_file, encoding="utf-8") as f:
            canceled = {line.strip() for line in f if line.strip()}

    def ok(r):
        if r["id"] in canceled:
            return r["state"] == "FAILED" and r["error"] == "USER_CANCELED"
        return r["state"] == "FINISHED" and r["rows"] == args.rows

    bad = [r for r in results if not r["done"] or not ok(r)]
    print(json.dumps({"queries": args.queries,
                      "finished": sum(1 for r in results if r["state"] == "FINISHED"),
                      "canceled": sum(1 for r in results if r["id"] in canceled and ok(r)),
                      "retried_polls": sum(r["retries"] for r in results), "failed": bad}),
          flush=True)
    sys.exit(0 if not bad else 1)


if __name__ == "__main__":
    main()
