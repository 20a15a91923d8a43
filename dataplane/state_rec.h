/*
 * The records of the state log: what a worker tells the main lcore about a query's
 * route, one fixed-size record per event, through its own single-producer ring
 * (rte_ring of 128-byte elements). The main lcore appends them to the state log
 * (control/state_log.c) as they are; replay after a restart rebuilds the route table
 * and the admission counters from them. Fixed size: no allocation on the data plane,
 * one copy into the ring.
 *
 * Coordinators are named by address (not by table index) and resource groups by a
 * hash of their full name, so a restart with a changed config still finds them, or
 * knows it cannot.
 */
#ifndef QD_STATE_REC_H
#define QD_STATE_REC_H

#include <stdint.h>

#define QD_SLOG_VERSION 1
#define QD_SLOG_REC_BYTES 128
#define QD_SLOG_ID_MAX 48 /* as the route table's key */

enum qd_slog_type {
	QD_SLOG_ROUTE = 1, /* a query got its coordinator (and holds slots of its group) */
	QD_SLOG_END = 2,   /* the query ended (whatever ended it) */
	QD_SLOG_ALIAS = 3, /* id is another name of the query id2 (a dispatcher placeholder) */
};

struct qd_slog_rec {
	uint16_t type;
	uint8_t version;
	uint8_t pad0;
	uint16_t coord_port;
	uint16_t pad1;
	uint32_t coord_ip_be;
	uint32_t group_hash;   /* qd_admission_name_hash of its group; 0 = none */
	int64_t mem;           /* its PEAK_MEMORY estimate held in the group */
	uint64_t logged_ms;    /* wall clock when the main lcore appended it */
	char id[QD_SLOG_ID_MAX];
	char id2[QD_SLOG_ID_MAX];
};

_Static_assert(sizeof(struct qd_slog_rec) == QD_SLOG_REC_BYTES, "state record size");

#endif /* QD_STATE_REC_H */
