/*
 * Per-lcore counters of the data plane.
 *
 * Each worker lcore owns one block and is its only writer; the main lcore
 * reads all of them to answer `qdctl`. Counters are bumped with relaxed
 * atomic stores so the concurrent read is well defined, which on x86 costs
 * the same as a plain add. The lists are X-macros so that the JSON names,
 * the human table and the struct never drift apart.
 */
#ifndef QD_LCORE_STATS_H
#define QD_LCORE_STATS_H

#include <stdint.h>

#define QD_LCORE_COUNTERS(X)                                                              \
	X(rx_packets)                                                                     \
	X(rx_bytes)                                                                       \
	X(tx_packets)                                                                     \
	X(tx_bytes)                                                                       \
	X(tx_dropped)                                                                     \
	X(arp_requests_in)                                                                \
	X(arp_replies_in)                                                                 \
	X(arp_replies_out)                                                                \
	X(arp_requests_out)                                                               \
	X(garp_out)                                                                       \
	X(icmp_echo_in)                                                                   \
	X(icmp_echo_out)                                                                  \
	X(mailbox_in)                                                                     \
	X(events_out)                                                                     \
	X(events_full)                                                                    \
	X(steered_out)                                                                    \
	X(steered_in)                                                                     \
	X(loops)                                                                          \
	X(busy_loops)                                                                     \
	X(busy_cycles)                                                                    \
	X(slow_loops)                                                                     \
	X(idle_sleeps)                                                                    \
	X(idle_sleep_us)

/* Every reason a packet is dropped; the second field is the help text. */
#define QD_DROP_REASONS(X)                                                                \
	X(runt, "frame shorter than its headers")                                         \
	X(multiseg, "chained mbuf (jumbo frame) on a path that expects one segment")      \
	X(other_mac, "destination MAC neither ours nor broadcast")                        \
	X(ethertype, "ethertype not handled (not IPv4 or ARP)")                           \
	X(arp_malformed, "ARP not Ethernet/IPv4 or truncated")                            \
	X(arp_not_ours, "ARP for an address we do not own")                               \
	X(ip_header, "IPv4 version, header length or total length invalid")               \
	X(ip_checksum, "IPv4 header checksum wrong")                                      \
	X(ip_fragment, "IPv4 fragment (not reassembled)")                                 \
	X(ip_options, "IPv4 options present")                                             \
	X(ip_not_ours, "IPv4 destination we do not own")                                  \
	X(vip_absent, "IPv4 to a VIP of ours that is released now (another peer's)")      \
	X(ip_proto, "IPv4 protocol not handled yet")                                      \
	X(icmp_malformed, "ICMP truncated or checksum wrong")                             \
	X(icmp_type, "ICMP type other than echo request")                                 \
	X(steer_full, "steering ring to the owning lcore full")                           \
	X(no_mbuf, "mbuf pool empty")

enum qd_drop_reason {
#define QD_X(name, help) QD_DROP_##name,
	QD_DROP_REASONS(QD_X)
#undef QD_X
	QD_DROP_MAX
};

struct qd_lcore_stats {
#define QD_X(name) uint64_t name;
	QD_LCORE_COUNTERS(QD_X)
#undef QD_X
	uint64_t drops[QD_DROP_MAX];
};

static inline void
qd_stat_add(uint64_t *counter, uint64_t n)
{
	/* Single writer: load+store, no locked instruction. */
	__atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + n,
			 __ATOMIC_RELAXED);
}

static inline uint64_t
qd_stat_read(const uint64_t *counter)
{
	return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

/* Name of drop reason <r> as it appears in JSON. */
const char *qd_drop_reason_name(enum qd_drop_reason r);
const char *qd_drop_reason_help(enum qd_drop_reason r);

/* Snapshot <src> into <dst> with relaxed loads (the reader side). */
void qd_lcore_stats_read(struct qd_lcore_stats *dst, const struct qd_lcore_stats *src);

/* <acc> += <s>, field by field. */
void qd_lcore_stats_sum(struct qd_lcore_stats *acc, const struct qd_lcore_stats *s);

#endif /* QD_LCORE_STATS_H */
