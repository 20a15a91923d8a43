#!/usr/bin/env python3
"""Instructions per packet and per call from one callgrind run of one benchmark.

bench/run callgrind runs a single benchmark under
`valgrind --tool=callgrind --collect-atstart=no --toggle-collect='bm_*'`, so the
profile holds only what the benchmark body (and everything it calls) executed.
This script divides that by the iterations (packets) the Google Benchmark JSON
reports, and, for every function whose name matches --functions, divides its
inclusive cost by its number of calls.

Usage: callgrind_summary.py CALLGRIND_OUT BENCH_JSON [--functions REGEX]
Prints one line per benchmark and one indented line per matching function.
"""
import argparse
import collections
import json
import re
import sys

NAME_RE = re.compile(r"\((\d+)\)(?:\s+(.*))?$")


def parse(path):
    """Returns (total Ir, {function: calls}, {function: inclusive Ir})."""
    names = {}
    calls = collections.Counter()
    incl = collections.Counter()
    total = None
    pending = None  # callee of the calls= line just read: the next cost line is its cost

    def resolve(value):
        m = NAME_RE.match(value)
        if m is None:
            return value
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), value)

    cfn = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("summary:") or line.startswith("totals:"):
                total = int(line.split()[1])
            elif line.startswith("fn="):
                resolve(line[3:])
            elif line.startswith("cfn="):
                cfn = resolve(line[4:])
            elif line.startswith("calls="):
                calls[cfn] += int(line[6:].split()[0])
                pending = cfn
            elif line and (line[0].isdigit() or line[0] in "+-*"):
                if pending is not None:
                    fields = line.split()
                    incl[pending] += int(fields[1]) if len(fields) > 1 else 0
                    pending = None
    if total is None:
        sys.exit(f"{path}: no summary line: not a callgrind profile?")
    return total, calls, incl


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("json")
    ap.add_argument("--functions", default=r"^qd_(?!bench_)",
                    help="regex of the functions to report per call (default: qd_*)")
    args = ap.parse_args()

    with open(args.json, encoding="utf-8") as f:
        runs = [b for b in json.load(f)["benchmarks"] if b.get("run_type") == "iteration"]
    if len(runs) != 1:
        sys.exit(f"{args.json}: expected one benchmark run, found {len(runs)}")
    run = runs[0]
    if run.get("error_occurred"):
        sys.exit(f"{run['name']}: {run.get('error_message', 'failed')}")
    iterations = int(run["iterations"])
    name = re.sub(r"/iterations:\d+$", "", run["name"])

    total, calls, incl = parse(args.profile)
    print(f"{name:40s} {total / iterations:10.1f} instr/packet  ({iterations} packets)")
    wanted = re.compile(args.functions)
    for fn in sorted(calls, key=lambda k: -incl[k]):
        if not wanted.search(fn) or calls[fn] == 0:
            continue
        print(f"    {fn:36s} {incl[fn] / calls[fn]:10.1f} instr/call   "
              f"{calls[fn] / iterations:6.3f} calls/packet")


if __name__ == "__main__":
    main()
