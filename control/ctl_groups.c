/*
 * Admission control commands (see ctl_groups.h).
 *
 * Numbers are relaxed snapshots summed over the workers' columns while the
 * workers run, so a reply can be off by the queries admitted during the read;
 * at rest (nothing running) every sum is exact and "running" and "queued"
 * return to 0, which is what the tests check.
 *
 * A reload parses the whole file first; only a file that loads completely is
 * applied, under the admission lock, in one step. The replaced configuration
 * is freed after every worker has passed a quiescent state (the route table's
 * RCU), because a worker may be in the middle of a selection on it.
 */
#include "ctl_groups.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_rcu_qsbr.h>

#include "admission.h"
#include "daemon.h"
#include "resource_groups.h"
#include "route_table.h"
#include "peer_sync.h"
#include "seed_log.h"

static json_t *
group_json(const struct qd_admission *a, unsigned int g)
{
	const struct qd_rg_group *info = &a->info[g];
	const struct qd_adm_group *sg = &a->g[g];
	struct qd_adm_group_stats s;
	qd_admission_group_stats(a, (int)g, &s);
	json_t *o = json_pack(
		"{s:s, s:o, s:b, s:b, s:I, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "name",
		info->name, "parent",
		info->parent >= 0 ? json_string(a->info[info->parent].name) : json_null(), "leaf",
		a->first_child[g] < 0, "retired", sg->retired, "hard_concurrency_limit",
		(json_int_t)info->hard_concurrency_limit, "max_queued",
		(json_int_t)info->max_queued, "scheduling_policy",
		qd_rg_policy_name(info->scheduling_policy), "scheduling_weight",
		(json_int_t)info->scheduling_weight, "running", (json_int_t)s.running, "queued",
		(json_int_t)s.queued, "queued_subtree", (json_int_t)s.subtree_queued, "reserved",
		(json_int_t)s.reserved, "pool", (json_int_t)s.pool, "memory_in_use",
		(json_int_t)s.mem_in_use);
	if (o == NULL)
		return NULL;
	/* with peers, what this dispatcher may hold of the cluster-wide limit */
	json_object_set_new(o, "local_limit",
			    json_integer((json_int_t)__atomic_load_n(&sg->limit, __ATOMIC_RELAXED)));
	/* over the limit: adopted or restored queries, a lowered limit */
	json_object_set_new(o, "debt", json_integer((json_int_t)s.debt));
	json_object_set_new(o, "adopted",
			    json_integer((json_int_t)__atomic_load_n(&sg->forced, __ATOMIC_RELAXED)));
	json_object_set_new(o, "soft_memory_limit",
			    info->soft_memory_limit_bytes == UINT64_MAX
				    ? json_null()
				    : json_integer((json_int_t)info->soft_memory_limit_bytes));
	json_object_set_new(
		o, "counters",
		json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "admitted",
			  (json_int_t)__atomic_load_n(&sg->admitted, __ATOMIC_RELAXED),
			  "admitted_after_queue",
			  (json_int_t)__atomic_load_n(&sg->admitted_queued, __ATOMIC_RELAXED),
			  "queue_full", (json_int_t)__atomic_load_n(&sg->queue_full, __ATOMIC_RELAXED),
			  "canceled_queued",
			  (json_int_t)__atomic_load_n(&sg->canceled_queued, __ATOMIC_RELAXED),
			  "timed_out", (json_int_t)__atomic_load_n(&sg->timed_out, __ATOMIC_RELAXED),
			  "abandoned", (json_int_t)__atomic_load_n(&sg->abandoned, __ATOMIC_RELAXED)));
	return o;
}

json_t *
qd_ctl_groups_json(const void *daemon)
{
	const struct qd_daemon *d = daemon;
	const struct qd_admission *a = d->admission;
	if (a == NULL)
		return json_null();
	json_t *groups = json_array();
	for (unsigned int g = 0; g < a->groups; g++)
		json_array_append_new(groups, group_json(a, g));
	uint64_t fast = 0, slow = 0, refills = 0, returns = 0;
	for (unsigned int c = 0; c < QD_ADM_COLUMNS; c++) {
		fast += __atomic_load_n(&a->col[c].fast_admits, __ATOMIC_RELAXED);
		slow += __atomic_load_n(&a->col[c].slow_path, __ATOMIC_RELAXED);
		refills += __atomic_load_n(&a->col[c].refills, __ATOMIC_RELAXED);
		returns += __atomic_load_n(&a->col[c].returns, __ATOMIC_RELAXED);
	}
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "file",
			 d->cfg.admission_resource_groups, "queued_max",
			 (json_int_t)a->conf.queued_max, "entries_used",
			 (json_int_t)__atomic_load_n(&a->entries_used, __ATOMIC_RELAXED),
			 "waiting", (json_int_t)__atomic_load_n(&a->waiting_total, __ATOMIC_RELAXED),
			 "entries_full", (json_int_t)__atomic_load_n(&a->entries_full, __ATOMIC_RELAXED),
			 "reloads", (json_int_t)__atomic_load_n(&a->reloads, __ATOMIC_RELAXED),
			 "fast_admits", (json_int_t)fast, "slow_path", (json_int_t)slow, "refills",
			 (json_int_t)refills, "returns", (json_int_t)returns, "groups", groups);
}

int
qd_ctl_groups(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len)
{
	(void)args;
	const struct qd_daemon *d = ctx;
	if (d->admission == NULL) {
		snprintf(err, err_len,
			 "admission control is off (set admission.resource_groups in the config)");
		return -ENOENT;
	}
	*data = qd_ctl_groups_json(d);
	return *data != NULL ? 0 : -ENOMEM;
}

int
qd_ctl_reload_groups(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len)
{
	struct qd_daemon *d = ctx;
	if (d->admission == NULL) {
		snprintf(err, err_len, "admission control is off (admission.resource_groups is not "
				       "set at start-up; restart with it to turn it on)");
		return -ENOENT;
	}
	/* Another file may be named (it becomes the configured one on success). */
	const char *path = d->cfg.admission_resource_groups;
	const json_t *p = json_object_get(args, "path");
	if (p != NULL) {
		if (!json_is_string(p) || json_string_length(p) == 0 ||
		    json_string_length(p) >= sizeof(d->cfg.admission_resource_groups)) {
			snprintf(err, err_len, "path: must be a file name of 1..%zu characters",
				 sizeof(d->cfg.admission_resource_groups) - 1);
			return -EINVAL;
		}
		path = json_string_value(p);
	}
	struct qd_rg_config *rg = NULL;
	char msg[QD_RG_ERR_MAX];
	int rc = qd_rg_load_file(path, &rg, msg, sizeof(msg));
	if (rc != 0) {
		snprintf(err, err_len, "%s (nothing changed)", msg);
		return rc;
	}
	unsigned int groups = rg->groups_count;
	struct qd_adm_view *old = qd_admission_reload(d->admission, rg);
	if (old == NULL) {
		rc = -errno;
		qd_rg_free(rg);
		snprintf(err, err_len, "%s: more than %d groups over the life of the process "
			 "(retired ones count; restart to start over) (nothing changed)",
			 path, QD_RG_GROUPS_MAX);
		return rc;
	}
	qd_peer_sync_groups_changed(d); /* the cluster's caps, not the file's limits */
	/* Workers may still be selecting on the old view: free it after a grace period. */
	if (d->routes != NULL)
		rte_rcu_qsbr_synchronize(d->routes->qsbr, RTE_QSBR_THRID_INVALID);
	qd_admission_view_free(old);
	if (path != d->cfg.admission_resource_groups)
		snprintf(d->cfg.admission_resource_groups, sizeof(d->cfg.admission_resource_groups),
			 "%s", path);
	/* The seed log keeps the file (and its content hash) for the next start. */
	char why[384];
	rc = qd_seed_record_groups(d, d->cfg.admission_resource_groups, why, sizeof(why));
	if (rc != 0) {
		snprintf(err, err_len, "%s: reloaded and applied in memory, but not recorded: %s "
			 "(a restart loads the file recorded before)", d->cfg.admission_resource_groups,
			 why);
		return rc;
	}
	*data = json_pack("{s:s, s:I, s:I, s:b}", "file", d->cfg.admission_resource_groups,
			  "groups", (json_int_t)groups, "reloads",
			  (json_int_t)__atomic_load_n(&d->admission->reloads, __ATOMIC_RELAXED),
			  "durable", qd_seed_durable(d));
	return *data != NULL ? 0 : -ENOMEM;
}
