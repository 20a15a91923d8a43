/*
 * Messages between the main lcore and the workers.
 *
 * Lcores never share writable state: the main lcore sends commands to a
 * worker's mailbox (single producer, single consumer) and workers report
 * events on one multi-producer ring the main lcore drains. Messages are
 * fixed-size values copied into rte_ring slots (the _elem API), so nothing
 * is allocated per message.
 */
#ifndef QD_MSG_H
#define QD_MSG_H

#include <stdint.h>

#define QD_MAILBOX_SIZE 1024  /* per worker, main -> worker */
#define QD_EVENTS_SIZE 4096   /* shared, workers -> main */
#define QD_MAILBOX_BURST 32   /* messages a worker handles per loop */
#define QD_EVENTS_BURST 256   /* events the main lcore handles per wake-up */

enum qd_msg_type {
	/* worker -> main */
	QD_MSG_NEIGH_LEARN = 1,   /* ip, mac; arg: 1 = addressed to us (may create) */
	/* main -> worker */
	QD_MSG_NEIGH_SET,         /* ip, mac, state: replica update */
	QD_MSG_TX_ARP_REQUEST,    /* ip: who-has ip, from port.ip */
	QD_MSG_TX_GARP,           /* ip: announce ip (one of ours) */
	QD_MSG_TCP_PROBE,         /* ip, arg: port | conns << 16 | id << 32, arg2: bytes each */
};

struct qd_msg {
	uint16_t type;
	uint8_t state;
	uint8_t pad;
	uint32_t ip_be;
	uint8_t mac[6];
	uint16_t lcore;   /* sender */
	uint64_t arg;
	uint64_t arg2;
};

_Static_assert(sizeof(struct qd_msg) == 32, "qd_msg must stay a multiple of 4 bytes");

#endif /* QD_MSG_H */
