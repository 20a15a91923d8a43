/*
 * Control commands of admission control: `groups` (every resource group with
 * its limit, running, queued, reserves and counters) and `reload_groups`
 * (read resource-groups.json again and apply it as a whole, or not at all).
 */
#ifndef QD_CTL_GROUPS_H
#define QD_CTL_GROUPS_H

#include <stddef.h>

#include <jansson.h>

/* ctx: struct qd_daemon * */
int qd_ctl_groups(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len);
int qd_ctl_reload_groups(void *ctx, const json_t *args, json_t **data, char *err,
			 size_t err_len);
/* The "admission" object of `status`: null when admission control is off. */
json_t *qd_ctl_groups_json(const void *daemon);

#endif /* QD_CTL_GROUPS_H */
