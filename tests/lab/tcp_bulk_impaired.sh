#!/usr/bin/env bash
# tcp_bulk_impaired: 100 MB each way through qdispatchd's echo service on one
# connection from the client namespace (the Linux kernel is the peer), under 2%
# loss in both directions (nftables, or iptables, in the lab) and qdispatchd's
# own fault layer: 5% reordering, 1% duplication and 10 ms of delay in both
# directions, seeded. The SHA-256 of what was sent equals that of what came
# back, every byte was compared at its offset, both loss rules dropped frames
# and the client retransmitted; afterwards qdispatchd holds no connection. Root
# only (exit 77 otherwise). It is tcp_bulk.sh --impaired: the environment
# (QD_TCP_SEED, QD_TCP_BULK_BYTES, QD_TCP_PEER, ...) is described there.
set -euo pipefail

exec "$(dirname "${BASH_SOURCE[0]}")/tcp_bulk.sh" --impaired "$@"
