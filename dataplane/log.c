/*
 * Registration of qdispatchd's log types (see log.h). RTE_LOG_REGISTER runs
 * before main(), which is why these ids are the only file-scope variables the
 * daemon has outside main.c: DPDK's log registry is itself global.
 */
#include "log.h"

RTE_LOG_REGISTER(qd_logtype_main, qd.main, INFO);
RTE_LOG_REGISTER(qd_logtype_dp, qd.dp, INFO);
RTE_LOG_REGISTER(qd_logtype_ctl, qd.ctl, INFO);
