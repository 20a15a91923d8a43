/*
 * Control commands of the coordinator table: coordinators (health, drain and
 * removed flags, load and check counters of each), drain and undrain (stop or
 * resume sending new queries to one coordinator), coordinator_add and
 * coordinator_remove (change the set at run time). Changes are durable in the
 * seed log (control/seed_log.h) before they apply. The status reply carries the
 * same array as "coordinator_table".
 */
#ifndef QD_CTL_COORDS_H
#define QD_CTL_COORDS_H

#include <jansson.h>

struct qd_daemon;

/* The table as a JSON array (an empty one without coordinators). */
json_t *qd_ctl_coords_json(const struct qd_daemon *d);

int qd_ctl_coordinators(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len);
int qd_ctl_drain(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len);
int qd_ctl_undrain(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len);
/* args coordinator "a.b.c.d:port", weight 1..1000 (default 1) */
int qd_ctl_coordinator_add(void *ctx, const json_t *args, json_t **data, char *err,
			   size_t err_len);
/* args coordinator "a.b.c.d:port" */
int qd_ctl_coordinator_remove(void *ctx, const json_t *args, json_t **data, char *err,
			      size_t err_len);

#endif /* QD_CTL_COORDS_H */
