/*
 * Control commands of the run-time VIP table (dataplane/vip_table.h): vips
 * (every address with its state, live client connections and since when),
 * vip_take and vip_release. The status reply carries the same array as "vips".
 *
 * These change only this process: they are not written to the seed log, since
 * who holds a VIP is the cluster's decision of the moment (control/peer.c),
 * not configuration; a restart starts from the config (vip,
 * vip.claim_at_start).
 */
#ifndef QD_CTL_VIPS_H
#define QD_CTL_VIPS_H

#include <jansson.h>

struct qd_daemon;

/* Every slot as a JSON array of objects. */
json_t *qd_ctl_vips_json(const struct qd_daemon *d);

int qd_ctl_vips(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len);
/* args address "a.b.c.d" */
int qd_ctl_vip_take(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len);
/* args address "a.b.c.d", drain_ms 0..QD_VIP_DRAIN_MAX_MS (default 0) */
int qd_ctl_vip_release(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len);

#endif /* QD_CTL_VIPS_H */
