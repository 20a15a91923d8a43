#!/usr/bin/env bash
# tests/fuzz/run.sh: build a libFuzzer target with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer, straight from the sources it exercises, and run it for
# a while on its seed corpus. Targets: tcp_input (fuzz_tcp_input.c, the TCP segment
# input path; seeds in corpus/) and peer_msg (fuzz_peer_msg.c, the peers' message
# decoding and cluster logic; seeds in corpus_peer/). New inputs go to
# $QD_BUILD/tests/fuzz/<target>/corpus (kept between runs), crash reproducers to
# $QD_BUILD/tests/fuzz/<target>/crashes.
#
# usage: tests/fuzz/run.sh [--target NAME] [SECONDS]
#                                         (default tcp_input; SECONDS default
#                                          $QD_FUZZ_SECONDS, else 30; 0 = build only)
#   env: QD_SOURCE, QD_BUILD (meson's test_env), QD_FUZZ_CC (default clang),
#        QD_FUZZ_FLAGS (extra compiler flags)
#   replay one input: tests/fuzz/run.sh [--target NAME] --replay FILE
# exit: 0 no crash, 1 a crash or a build failure, 77 no clang or no libFuzzer here.
set -euo pipefail

QD_SOURCE=${QD_SOURCE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
QD_BUILD=${QD_BUILD:-$QD_SOURCE/build}
CC=${QD_FUZZ_CC:-clang}
target=tcp_input
if [[ ${1:-} == --target ]]; then
	target=${2:?usage: run.sh --target tcp_input|peer_msg [SECONDS]}
	shift 2
fi
[[ $target == tcp_input || $target == peer_msg ]] || { echo "run.sh: unknown target '$target'" >&2; exit 1; }
replay=
if [[ ${1:-} == --replay ]]; then
	replay=${2:?usage: run.sh --replay FILE}
	secs=0
else
	secs=${1:-${QD_FUZZ_SECONDS:-30}}
fi
[[ $secs =~ ^[0-9]+$ ]] || { echo "run.sh: SECONDS must be a number" >&2; exit 1; }

if ! command -v "$CC" >/dev/null; then
	echo "run.sh: $CC not found (apt-get install clang); skipping"
	exit 77
fi
work=$QD_BUILD/tests/fuzz
[[ $target == tcp_input ]] || work=$work/$target
mkdir -p "$work/corpus" "$work/crashes"

# A compiler without the libFuzzer runtime (libclang-rt-NN-dev) cannot link -fsanitize=fuzzer.
probe=$work/probe
printf '%s\n' 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)' \
	'{ (void)d; (void)n; return 0; }' >"$probe.c"
if ! "$CC" -fsanitize=fuzzer "$probe.c" -o "$probe" 2>"$probe.log"; then
	echo "run.sh: $CC cannot link -fsanitize=fuzzer (needs libclang-rt-dev); skipping"
	exit 77
fi

# The code under test and what it calls, nothing that wants a port, a worker or the
# control plane: the TCP input path (the sources of dataplane/meson.build the stack
# needs), or the peers' wire format and cluster logic (no DPDK at all).
read -r -a extra <<<"${QD_FUZZ_FLAGS:-}"
bin=$work/fuzz_$target
flags=(-std=gnu17 -g -O1 -fno-omit-frame-pointer
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
	-Wall -Wextra -Wshadow -Wmissing-prototypes -Wno-missing-field-initializers
	-D_GNU_SOURCE -DALLOW_EXPERIMENTAL_API)
if [[ $target == tcp_input ]]; then
	seeds=$QD_SOURCE/tests/fuzz/corpus
	srcs=(
		"$QD_SOURCE/dataplane/ipv4.c"
		"$QD_SOURCE/dataplane/tcp_conn.c"
		"$QD_SOURCE/dataplane/tcp_input.c"
		"$QD_SOURCE/dataplane/tcp_output.c"
		"$QD_SOURCE/lib/siphash.c"
		"$QD_SOURCE/tests/fuzz/fuzz_tcp_input.c"
	)
	# No alignment checks: DPDK's inline rte_hash_crc() reads 8 bytes at a time from the
	# 4-byte-aligned 4-tuple key, on purpose (x86 loads need no alignment).
	# shellcheck disable=SC2046 # pkg-config's output is a list of flags
	"$CC" "${flags[@]}" -fno-sanitize=alignment "${extra[@]}" \
		-I"$QD_SOURCE/dataplane" -I"$QD_SOURCE/lib" \
		$(pkg-config --cflags libdpdk) "${srcs[@]}" $(pkg-config --libs libdpdk) \
		-o "$bin"
else
	seeds=$QD_SOURCE/tests/fuzz/corpus_peer
	srcs=(
		"$QD_SOURCE/lib/peer_proto.c"
		"$QD_SOURCE/lib/cluster.c"
		"$QD_SOURCE/tests/fuzz/fuzz_peer_msg.c"
	)
	# shellcheck disable=SC2046 # pkg-config's output is a list of flags
	"$CC" "${flags[@]}" "${extra[@]}" -I"$QD_SOURCE/lib" \
		$(pkg-config --cflags libcrypto) "${srcs[@]}" $(pkg-config --libs libcrypto) \
		-o "$bin"
fi

# libFuzzer exits 77 on a crash by default, which meson would read as a skip.
args=(-error_exitcode=1 -timeout=20 -rss_limit_mb=4096 -max_len=4096
	-artifact_prefix="$work/crashes/" -print_final_stats=1)
if [[ -n $replay ]]; then
	exec "$bin" "${args[@]}" "$replay"
fi
if [[ $secs -eq 0 ]]; then
	echo "run.sh: built $bin"
	exit 0
fi
log=$work/fuzz.log
rc=0
"$bin" "${args[@]}" -max_total_time="$secs" "$work/corpus" "$seeds" \
	>"$log" 2>&1 || rc=$?
# The last status line (execs, coverage, corpus) and the final statistics.
grep -E '^#[0-9]+' "$log" | tail -n 1 || true
grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' \
	"$log" || true
if [[ $rc -ne 0 ]]; then
	echo "run.sh: the fuzzer failed (exit $rc); the end of $log:"
	tail -n 60 "$log"
	ls -l "$work/crashes" || true
	exit 1
fi
echo "run.sh: no crash in ${secs}s"
