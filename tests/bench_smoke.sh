#!/usr/bin/env bash
# Smoke test of the micro-benchmark binary: every benchmark runs briefly and
# passes its own checks, the JSON it writes is valid and names them all, and a
# filter that matches nothing is an error. Exit 0 pass, 1 fail, 77 skip.
set -uo pipefail

bin=${1:?usage: bench_smoke.sh PATH/TO/qd-microbench}
command -v python3 >/dev/null || { echo "SKIP: python3 needed to read the JSON"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
	echo "FAIL: $*"
	exit 1
}

# Google Benchmark 1.7 takes --benchmark_min_time in plain seconds ("0.01", not "0.01s").
if ! "$bin" --benchmark_min_time=0.01 --benchmark_filter='^(packet|neigh|admission)/' \
	--benchmark_out="$tmp/all.json" --benchmark_out_format=json >"$tmp/all.log" 2>&1; then
	cat "$tmp/all.log"
	fail "the benchmarks did not all pass"
fi

python3 - "$tmp/all.json" <<'EOF' || fail "bad JSON"
import json, sys
doc = json.load(open(sys.argv[1]))
runs = {b["name"]: b for b in doc["benchmarks"]}
want = ["packet/arp_reply", "packet/icmp_echo/64", "packet/icmp_echo/1400",
        "packet/worker_input_answer_mix", "packet/worker_input_drop_mix",
        "neigh/lookup_hit/1024", "neigh/lookup_miss/1024",
        "admission/reserves/real_time/threads:1", "admission/reserves/real_time/threads:2",
        "admission/olk_scan/1000/real_time/threads:1"]
missing = [n for n in want if n not in runs]
if missing:
    sys.exit(f"missing from the JSON: {missing}")
for name, b in runs.items():
    if b.get("error_occurred"):
        sys.exit(f"{name}: {b.get('error_message')}")
    if not b["items_per_second"] > 0 or not b["real_time"] > 0:
        sys.exit(f"{name}: no rate")
print(f"{len(runs)} benchmarks in the JSON, context: {doc['context']['executable']}")
EOF

# A filter selects; a filter that selects nothing fails rather than passing quietly.
"$bin" --benchmark_min_time=0.01 --benchmark_filter='^neigh/lookup_hit/768$' \
	--benchmark_out="$tmp/one.json" >/dev/null 2>&1 || fail "filtered run failed"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["benchmarks"]; sys.exit(len(r) != 1)' \
	"$tmp/one.json" || fail "the filter did not select exactly one benchmark"
if "$bin" --benchmark_filter='^no-such-benchmark$' >/dev/null 2>&1; then
	fail "an empty selection exited 0"
fi
echo "PASS"
