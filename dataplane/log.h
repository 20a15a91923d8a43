/*
 * Log types of qdispatchd, registered with rte_log so that one level knob
 * (log.level, or EAL's --log-level=qd.*:debug) controls DPDK and qdispatch
 * alike. Messages go where EAL sends them: stderr, and syslog when asked.
 */
#ifndef QD_LOG_H
#define QD_LOG_H

#include <rte_log.h>

extern int qd_logtype_main;
extern int qd_logtype_dp;
extern int qd_logtype_ctl;

#define QD_LOG(level, type, fmt, ...)                                                     \
	rte_log(RTE_LOG_##level, qd_logtype_##type, "qd.%s: " fmt "\n", #type, ##__VA_ARGS__)

#endif /* QD_LOG_H */
