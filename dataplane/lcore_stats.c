/*
 * Names and reader-side helpers for the per-lcore counters declared in
 * lcore_stats.h. Kept out of the header so the X-macro tables exist once.
 */
#include "lcore_stats.h"

#include <stddef.h>

static const char *const drop_names[QD_DROP_MAX] = {
#define QD_X(name, help) #name,
	QD_DROP_REASONS(QD_X)
#undef QD_X
};

static const char *const drop_helps[QD_DROP_MAX] = {
#define QD_X(name, help) help,
	QD_DROP_REASONS(QD_X)
#undef QD_X
};

const char *
qd_drop_reason_name(enum qd_drop_reason r)
{
	return (unsigned int)r < QD_DROP_MAX ? drop_names[r] : "?";
}

const char *
qd_drop_reason_help(enum qd_drop_reason r)
{
	return (unsigned int)r < QD_DROP_MAX ? drop_helps[r] : "?";
}

void
qd_lcore_stats_read(struct qd_lcore_stats *dst, const struct qd_lcore_stats *src)
{
#define QD_X(name) dst->name = qd_stat_read(&src->name);
	QD_LCORE_COUNTERS(QD_X)
#undef QD_X
	for (size_t i = 0; i < QD_DROP_MAX; i++)
		dst->drops[i] = qd_stat_read(&src->drops[i]);
}

void
qd_lcore_stats_sum(struct qd_lcore_stats *acc, const struct qd_lcore_stats *s)
{
#define QD_X(name) acc->name += s->name;
	QD_LCORE_COUNTERS(QD_X)
#undef QD_X
	for (size_t i = 0; i < QD_DROP_MAX; i++)
		acc->drops[i] += s->drops[i];
}
