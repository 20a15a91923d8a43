/*
 * libFuzzer target of the peers' message path (lib/peer_proto.c, lib/cluster.c): what a
 * dispatcher does with a datagram from its control socket.
 *
 * A MAC stands in front of everything, and the fuzzer cannot forge one, so each input is
 * used twice: once as it is (the decoder must reject it cleanly whatever its bytes), and
 * once signed with the shared key, so that the decoder's field parsing and then the
 * cluster logic (membership, replay rules, grants, requests, VIP claims) see arbitrary
 * authenticated content: a peer with the key that misbehaves. After each message the
 * cluster ticks and emits its messages; the sanitizers judge, and the escrow's local
 * invariant is checked: what we grant never exceeds our base plus what we may use.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cluster.h"
#include "peer_proto.h"

static const uint8_t KEY[32] = "fuzz-key-fuzz-key-fuzz-key-fuzz!";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct qd_peer_msg m;
	static uint8_t buf[QD_PEER_MSG_MAX + 64];
	if (size > QD_PEER_MSG_MAX)
		return 0;
	/* as received */
	(void)qd_peer_decode(data, size, KEY, sizeof(KEY), &m);

	/* signed: the body is the input, the MAC is right */
	if (size < QD_PEER_HEADER_BYTES)
		return 0;
	memcpy(buf, data, size);
	unsigned int olen = 0;
	if (HMAC(EVP_sha256(), KEY, sizeof(KEY), buf, size, buf + size, &olen) == NULL)
		return 0;
	if (qd_peer_decode(buf, size + olen, KEY, sizeof(KEY), &m) != QD_PEER_OK)
		return 0;

	struct qd_cluster_conf conf = {
		.self = 1, .ids = {1, 2, 3}, .ids_count = 3, .boot = 42, .heartbeat_ms = 100,
		.min_gap_ms = 5, .dead_after_ms = 500, .orphan_hold_ms = 10000,
		.max_skew_ms = UINT32_MAX, /* any send time passes: reach the logic */
		.vip_ip_be = {0x6500000a, 0x6600000a}, .vip_home = {1, 2}, .vips_count = 2,
	};
	struct qd_cluster *c = qd_cluster_create(&conf, 1000);
	if (c == NULL)
		abort();
	uint32_t hashes[3] = {m.groups_count > 0 ? m.groups[0].name_hash : 7, 11, 13};
	uint32_t limits[3] = {8, 3, 0};
	if (qd_cluster_set_groups(c, hashes, limits, 3) != 0)
		abort();
	qd_cluster_set_local(c, 0, 2, 5, 0);
	uint64_t now = 2000;
	/* the message, then a copy from the other peer id, then a replay */
	for (int k = 0; k < 3; k++) {
		m.to = 1;
		if (k == 1) {
			m.from = (uint16_t)(m.from == 2 ? 3 : 2);
			m.seq++;
		}
		(void)qd_cluster_receive(c, &m, now, m.sent_ms);
		qd_cluster_tick(c, now);
		for (unsigned int v = 0; v < c->conf.vips_count; v++)
			(void)qd_cluster_vip_decide(c, v, now);
		static struct qd_peer_msg out;
		while (qd_cluster_next_message(c, now, m.sent_ms, &out)) {
			size_t n = qd_peer_encode(&out, KEY, sizeof(KEY), buf, sizeof(buf));
			if (n == 0)
				abort();
		}
		for (unsigned int g = 0; g < c->groups_count; g++) {
			uint64_t out_sum = 0, in_sum = 0;
			for (unsigned int p = 0; p < c->peers_count; p++) {
				out_sum += c->peers[p].link[g].grant_out;
				in_sum += c->peers[p].link[g].usable_in;
			}
			/* a grant beyond base + usable can only come from honouring a peer's
			 * reported use; spare-based grants never exceed it */
			if (c->groups[g].cap > c->groups[g].base + in_sum)
				abort();
			(void)out_sum;
		}
		now += 300000;
	}
	qd_cluster_destroy(c);
	return 0;
}
