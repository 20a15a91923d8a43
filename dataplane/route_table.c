/*
 * Query route table (see route_table.h): rte_hash (lock-free readers) whose key
 * positions index a fixed entry array; positions are reclaimed by RCU QSBR.
 */
#include "route_table.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_errno.h>
#include <rte_hash_crc.h>
#include <rte_malloc.h>

/* Deleted keys wait in the hash's defer queue; reclaim once this many wait, so freed
 * positions come back quickly without a reclaim attempt on every delete. (An insert that
 * finds no free position reclaims on its own.) */
#define ROUTE_RECLAIM_TRIGGER 32
#define ROUTE_TOUCH_US 1000000u /* refresh last_used at most once a second per route */

struct qd_route_table *
qd_route_table_create(const char *name, uint32_t capacity, uint32_t threads, int socket)
{
	if (capacity == 0 || capacity > (1u << 24) || threads == 0 ||
	    threads > QD_ROUTE_THREADS_MAX) {
		errno = EINVAL;
		return NULL;
	}
	struct qd_route_table *t = rte_zmalloc_socket("qd_routes", sizeof(*t), 0, socket);
	if (t == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	t->capacity = capacity;
	t->threads = threads;
	char n[RTE_HASH_NAMESIZE];
	int err = ENOMEM;

	size_t qsz = rte_rcu_qsbr_get_memsize(threads);
	t->qsbr = rte_zmalloc_socket("qd_route_qsbr", qsz, RTE_CACHE_LINE_SIZE, socket);
	if (t->qsbr == NULL)
		goto fail;
	if (rte_rcu_qsbr_init(t->qsbr, threads) != 0) {
		err = EINVAL;
		goto fail;
	}
	snprintf(n, sizeof(n), "%s", name);
	struct rte_hash_parameters hp = {
		.name = n,
		.entries = capacity,
		.key_len = QD_ROUTE_KEY_LEN,
		.hash_func = rte_hash_crc,
		.hash_func_init_val = 0x51ed270bu,
		.socket_id = socket,
		/* Lock-free readers; writers (one insert and one delete per query) serialise
		 * among themselves inside the hash. With lock-free readers a deleted key's
		 * position is freed only through the RCU defer queue below. */
		.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF |
			      RTE_HASH_EXTRA_FLAGS_MULTI_WRITER_ADD |
			      RTE_HASH_EXTRA_FLAGS_EXT_TABLE,
	};
	t->hash = rte_hash_create(&hp);
	if (t->hash == NULL) {
		err = rte_errno ? rte_errno : ENOMEM;
		goto fail;
	}
	/* Positions (key indexes) name our entries; with per-lcore slot caches they go
	 * beyond <capacity>. */
	int32_t max_id = rte_hash_max_key_id(t->hash);
	if (max_id < 0) {
		err = EINVAL;
		goto fail;
	}
	t->positions = (uint32_t)max_id + 1;
	t->entries = rte_zmalloc_socket("qd_route_entries",
					(size_t)t->positions * sizeof(t->entries[0]),
					RTE_CACHE_LINE_SIZE, socket);
	if (t->entries == NULL)
		goto fail;
	struct rte_hash_rcu_config rc = {
		.v = t->qsbr,
		.mode = RTE_HASH_QSBR_MODE_DQ,
		.trigger_reclaim_limit = ROUTE_RECLAIM_TRIGGER,
	};
	if (rte_hash_rcu_qsbr_add(t->hash, &rc) != 0) {
		err = rte_errno ? rte_errno : EINVAL;
		goto fail;
	}
	return t;
fail:
	qd_route_table_destroy(t);
	errno = err;
	return NULL;
}

void
qd_route_table_destroy(struct qd_route_table *t)
{
	if (t == NULL)
		return;
	rte_hash_free(t->hash);
	rte_free(t->qsbr);
	rte_free(t->entries);
	rte_free(t);
}

int
qd_route_thread_register(struct qd_route_table *t, unsigned int thread)
{
	if (thread >= t->threads)
		return -EINVAL;
	int rc = rte_rcu_qsbr_thread_register(t->qsbr, thread);
	if (rc != 0)
		return -EINVAL;
	rte_rcu_qsbr_thread_online(t->qsbr, thread);
	return 0;
}

void
qd_route_thread_unregister(struct qd_route_table *t, unsigned int thread)
{
	rte_rcu_qsbr_thread_offline(t->qsbr, thread);
	rte_rcu_qsbr_thread_unregister(t->qsbr, thread);
}

void
qd_route_thread_online(struct qd_route_table *t, unsigned int thread)
{
	rte_rcu_qsbr_thread_online(t->qsbr, thread);
}

void
qd_route_thread_offline(struct qd_route_table *t, unsigned int thread)
{
	rte_rcu_qsbr_thread_offline(t->qsbr, thread);
}

static bool
make_key(char key[QD_ROUTE_KEY_LEN], const char *id, size_t id_len)
{
	if (id_len == 0 || id_len > QD_TRINO_ID_MAX)
		return false;
	memset(key, 0, QD_ROUTE_KEY_LEN);
	memcpy(key, id, id_len);
	return true;
}

static int
insert(struct qd_route_table *t, const char *id, size_t id_len, uint16_t coord, uint16_t owner,
       uint64_t now_us, int16_t group, int64_t mem, bool adopted)
{
	char key[QD_ROUTE_KEY_LEN];
	if (!make_key(key, id, id_len))
		return -EINVAL;
	if (__atomic_load_n(&t->live_count, __ATOMIC_RELAXED) >= t->capacity)
		return -ENOSPC; /* the per-lcore slot caches would let the hash go further */
	if (rte_hash_lookup(t->hash, key) >= 0)
		return -EEXIST;
	int32_t pos = rte_hash_add_key(t->hash, key);
	if (pos < 0)
		return pos == -ENOSPC ? -ENOSPC : -EINVAL;
	RTE_VERIFY((uint32_t)pos < t->positions);
	struct qd_route_entry *e = &t->entries[pos];
	/* The position cannot be reused while anyone may still read it (QSBR), but readers
	 * may find the key before the entry below is written: they check <live> (acquire)
	 * and the id, and treat a half-made entry as absent. */
	memcpy(e->id, key, sizeof(key));
	e->created_us = now_us;
	__atomic_store_n(&e->last_used_us, now_us, __ATOMIC_RELAXED);
	e->coord = coord;
	e->owner = owner;
	e->group = group;
	e->mem = mem;
	e->is_alias = 0;
	e->restored = 0;
	e->adopted = adopted;
	__atomic_store_n(&e->verified_us, now_us, __ATOMIC_RELAXED);
	e->alias_pos = QD_ROUTE_NO_ALIAS;
	e->ended_us = 0;
	__atomic_store_n(&e->ended, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&e->live, 1, __ATOMIC_RELEASE);
	__atomic_add_fetch(&t->live_count, 1, __ATOMIC_RELAXED);
	if (adopted)
		__atomic_add_fetch(&t->adopted_count, 1, __ATOMIC_RELAXED);
	return 0;
}

int
qd_route_insert_adm(struct qd_route_table *t, const char *id, size_t id_len, uint16_t coord,
		    uint16_t owner, uint64_t now_us, int16_t group, int64_t mem)
{
	return insert(t, id, id_len, coord, owner, now_us, group, mem, false);
}

int
qd_route_insert_adopted(struct qd_route_table *t, const char *id, size_t id_len,
			uint16_t coord, uint16_t owner, uint64_t now_us, int16_t group, int64_t mem)
{
	return insert(t, id, id_len, coord, owner, now_us, group, mem, true);
}

int
qd_route_insert(struct qd_route_table *t, const char *id, size_t id_len, uint16_t coord,
		uint16_t owner, uint64_t now_us)
{
	return qd_route_insert_adm(t, id, id_len, coord, owner, now_us, -1, 0);
}

static struct qd_route_entry *
entry_of(struct qd_route_table *t, int32_t pos, const char key[QD_ROUTE_KEY_LEN])
{
	if (pos < 0 || (uint32_t)pos >= t->positions)
		return NULL;
	struct qd_route_entry *e = &t->entries[pos];
	if (__atomic_load_n(&e->live, __ATOMIC_ACQUIRE) == 0 ||
	    memcmp(e->id, key, QD_ROUTE_KEY_LEN) != 0)
		return NULL;
	return e;
}

int
qd_route_lookup(struct qd_route_table *t, const char *id, size_t id_len, uint64_t now_us)
{
	char key[QD_ROUTE_KEY_LEN];
	if (!make_key(key, id, id_len))
		return -ENOENT;
	struct qd_route_entry *e = entry_of(t, rte_hash_lookup(t->hash, key), key);
	if (e == NULL)
		return -ENOENT;
	uint64_t last = __atomic_load_n(&e->last_used_us, __ATOMIC_RELAXED);
	if (now_us > last + ROUTE_TOUCH_US)
		__atomic_store_n(&e->last_used_us, now_us, __ATOMIC_RELAXED);
	return e->coord;
}

/* Mark <e> ended; true for the one caller that did. */
static bool
mark_one(struct qd_route_table *t, struct qd_route_entry *e, uint64_t now_us)
{
	uint32_t zero = 0;
	if (!__atomic_compare_exchange_n(&e->ended, &zero, 1, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_RELAXED))
		return false;
	__atomic_store_n(&e->ended_us, now_us, __ATOMIC_RELAXED);
	__atomic_add_fetch(&t->ended_count, 1, __ATOMIC_RELAXED);
	return true;
}

/* The alias of query <e> (at <pos>), if it still names it. */
static struct qd_route_entry *
alias_of(struct qd_route_table *t, const struct qd_route_entry *e, uint32_t pos)
{
	uint32_t ap = __atomic_load_n(&e->alias_pos, __ATOMIC_ACQUIRE);
	if (e->is_alias || ap == QD_ROUTE_NO_ALIAS || ap >= t->positions)
		return NULL;
	struct qd_route_entry *a = &t->entries[ap];
	if (__atomic_load_n(&a->live, __ATOMIC_ACQUIRE) == 0 || !a->is_alias || a->alias_pos != pos)
		return NULL;
	return a;
}

/* Mark query <e> ended (its alias with it); true for the one caller that did. */
static bool
mark_ended(struct qd_route_table *t, struct qd_route_entry *e, uint64_t now_us)
{
	if (!mark_one(t, e, now_us))
		return false;
	struct qd_route_entry *a = alias_of(t, e, (uint32_t)(e - t->entries));
	if (a != NULL)
		mark_one(t, a, now_us);
	return true;
}

int
qd_route_insert_alias(struct qd_route_table *t, const char *alias_id, size_t alias_len,
		      const char *real_id, size_t real_len, uint64_t now_us)
{
	char key[QD_ROUTE_KEY_LEN], rkey[QD_ROUTE_KEY_LEN];
	if (!make_key(key, alias_id, alias_len) || !make_key(rkey, real_id, real_len))
		return -EINVAL;
	int32_t rpos = rte_hash_lookup(t->hash, rkey);
	struct qd_route_entry *r = entry_of(t, rpos, rkey);
	if (r == NULL || r->is_alias || __atomic_load_n(&r->ended, __ATOMIC_ACQUIRE) != 0)
		return -ENOENT;
	int rc = qd_route_insert_adm(t, alias_id, alias_len, r->coord, r->owner, now_us, -1, 0);
	if (rc != 0)
		return rc;
	int32_t apos = rte_hash_lookup(t->hash, key);
	if (apos < 0 || (uint32_t)apos >= t->positions)
		return -ENOENT;
	struct qd_route_entry *a = &t->entries[apos];
	a->is_alias = 1;
	__atomic_store_n(&a->alias_pos, (uint32_t)rpos, __ATOMIC_RELEASE);
	__atomic_store_n(&r->alias_pos, (uint32_t)apos, __ATOMIC_RELEASE);
	return 0;
}

int
qd_route_resolve(struct qd_route_table *t, const char *id, size_t id_len, uint64_t now_us,
		 char *real, size_t *real_len)
{
	char key[QD_ROUTE_KEY_LEN];
	*real_len = 0;
	if (!make_key(key, id, id_len))
		return -ENOENT;
	int32_t pos = rte_hash_lookup(t->hash, key);
	struct qd_route_entry *e = entry_of(t, pos, key);
	if (e == NULL)
		return -ENOENT;
	if (e->is_alias) {
		uint32_t rp = __atomic_load_n(&e->alias_pos, __ATOMIC_ACQUIRE);
		if (rp >= t->positions)
			return -ENOENT;
		struct qd_route_entry *r = &t->entries[rp];
		if (__atomic_load_n(&r->live, __ATOMIC_ACQUIRE) == 0 || r->is_alias ||
		    __atomic_load_n(&r->alias_pos, __ATOMIC_ACQUIRE) != (uint32_t)pos)
			return -ENOENT;
		memcpy(real, r->id, QD_ROUTE_KEY_LEN);
		real[QD_ROUTE_KEY_LEN - 1] = '\0';
		*real_len = strlen(real);
		e = r;
	}
	uint64_t last = __atomic_load_n(&e->last_used_us, __ATOMIC_RELAXED);
	if (now_us > last + ROUTE_TOUCH_US)
		__atomic_store_n(&e->last_used_us, now_us, __ATOMIC_RELAXED);
	return e->coord;
}

int
qd_route_end(struct qd_route_table *t, const char *id, size_t id_len, uint64_t now_us)
{
	char key[QD_ROUTE_KEY_LEN];
	if (!make_key(key, id, id_len))
		return -ENOENT;
	struct qd_route_entry *e = entry_of(t, rte_hash_lookup(t->hash, key), key);
	if (e == NULL)
		return -ENOENT;
	return mark_ended(t, e, now_us) ? 0 : -EALREADY;
}

int
qd_route_end_take(struct qd_route_table *t, const char *id, size_t id_len, uint64_t now_us,
		  struct qd_route_entry *out)
{
	char key[QD_ROUTE_KEY_LEN];
	if (!make_key(key, id, id_len))
		return -ENOENT;
	struct qd_route_entry *e = entry_of(t, rte_hash_lookup(t->hash, key), key);
	if (e == NULL)
		return -ENOENT;
	if (!mark_ended(t, e, now_us))
		return -EALREADY;
	/* the winner reads an entry that cannot be reused before its next quiescent state */
	out->coord = e->coord;
	out->group = e->group;
	out->mem = e->mem;
	out->owner = e->owner;
	return 0;
}

static int
remove_key(struct qd_route_table *t, const char key[QD_ROUTE_KEY_LEN])
{
	/* Only the caller whose delete succeeds ends the route; the position stays
	 * unused until every reader passed a quiescent state, this caller included. */
	int32_t pos = rte_hash_del_key(t->hash, key);
	if (pos < 0)
		return -ENOENT;
	RTE_VERIFY((uint32_t)pos < t->positions);
	struct qd_route_entry *e = &t->entries[pos];
	__atomic_store_n(&e->live, 0, __ATOMIC_RELEASE);
	__atomic_sub_fetch(&t->live_count, 1, __ATOMIC_RELAXED);
	if (e->adopted)
		__atomic_sub_fetch(&t->adopted_count, 1, __ATOMIC_RELAXED);
	if (__atomic_exchange_n(&e->ended, 0, __ATOMIC_ACQ_REL) != 0)
		__atomic_sub_fetch(&t->ended_count, 1, __ATOMIC_RELAXED);
	return 0;
}

int
qd_route_remove(struct qd_route_table *t, const char *id, size_t id_len)
{
	char key[QD_ROUTE_KEY_LEN];
	if (!make_key(key, id, id_len))
		return -ENOENT;
	return remove_key(t, key);
}

uint32_t
qd_route_sweep(struct qd_route_table *t, unsigned int thread, unsigned int stripes,
	       uint32_t *cursor, uint32_t budget, uint64_t now_us, uint64_t idle_us,
	       uint64_t linger_us, uint64_t dead_mask, uint32_t *dead_removed,
	       qd_route_ended_fn fn, void *ctx)
{
	uint32_t removed = 0;
	if (stripes == 0 || thread >= stripes)
		return 0;
	for (uint32_t n = 0; n < budget; n++) {
		uint32_t idx = *cursor;
		if (idx >= t->positions || idx % stripes != thread)
			idx = thread;
		*cursor = idx + stripes;
		if (idx >= t->positions)
			break;
		struct qd_route_entry *e = &t->entries[idx];
		if (__atomic_load_n(&e->live, __ATOMIC_RELAXED) == 0)
			continue;
		char key[QD_ROUTE_KEY_LEN];
		memcpy(key, e->id, sizeof(key));
		if (__atomic_load_n(&e->ended, __ATOMIC_ACQUIRE) != 0) {
			uint64_t at = __atomic_load_n(&e->ended_us, __ATOMIC_RELAXED);
			if (now_us >= at && now_us - at > linger_us)
				remove_key(t, key);
			continue;
		}
		if (e->is_alias) {
			/* An alias ends with its query; alone (its query was removed) it goes
			 * once unused, uncounted. */
			uint32_t rp = __atomic_load_n(&e->alias_pos, __ATOMIC_ACQUIRE);
			if (rp < t->positions &&
			    __atomic_load_n(&t->entries[rp].live, __ATOMIC_ACQUIRE) != 0 &&
			    __atomic_load_n(&t->entries[rp].alias_pos, __ATOMIC_ACQUIRE) == idx)
				continue; /* its query is there: it ends with it */
			uint64_t used = __atomic_load_n(&e->last_used_us, __ATOMIC_RELAXED);
			if (now_us >= used && now_us - used > idle_us) {
				mark_one(t, e, now_us);
				remove_key(t, key);
			}
			continue;
		}
		uint64_t last = __atomic_load_n(&e->last_used_us, __ATOMIC_RELAXED);
		bool dead = e->coord < 64 && (dead_mask >> e->coord) & 1;
		if (!dead && (now_us < last || now_us - last <= idle_us))
			continue;
		/* Ended here (counted by whoever marks it). Idle: nobody polls it, gone now.
		 * Dead coordinator: its clients still poll and get a FAILED result; the
		 * route lingers like any other ended one. */
		if (mark_ended(t, e, now_us)) {
			if (dead)
				(*dead_removed)++;
			else
				removed++;
			if (fn != NULL)
				fn(ctx, e, dead);
		}
		if (!dead)
			remove_key(t, key);
	}
	return removed;
}

uint32_t
qd_route_foreach(struct qd_route_table *t, qd_route_visit_fn fn, void *ctx)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < t->positions; i++) {
		const struct qd_route_entry *e = &t->entries[i];
		if (__atomic_load_n(&e->live, __ATOMIC_ACQUIRE) == 0 ||
		    __atomic_load_n(&e->ended, __ATOMIC_ACQUIRE) != 0)
			continue;
		n++;
		if (!fn(ctx, e))
			break;
	}
	return n;
}

uint32_t
qd_route_count(const struct qd_route_table *t)
{
	return __atomic_load_n(&t->live_count, __ATOMIC_RELAXED);
}

uint32_t
qd_route_ended_count(const struct qd_route_table *t)
{
	return __atomic_load_n(&t->ended_count, __ATOMIC_RELAXED);
}

int
qd_route_clear_restored(struct qd_route_table *t, const char *id, size_t id_len)
{
	char key[QD_ROUTE_KEY_LEN];
	if (!make_key(key, id, id_len))
		return -ENOENT;
	struct qd_route_entry *e = entry_of(t, rte_hash_lookup(t->hash, key), key);
	if (e == NULL)
		return -ENOENT;
	/* an ended route is the sweep's now: not ours to write */
	if (__atomic_load_n(&e->ended, __ATOMIC_ACQUIRE) != 0)
		return -EALREADY;
	__atomic_store_n(&e->restored, 0, __ATOMIC_RELEASE);
	return 0;
}

int
qd_route_mark_verified(struct qd_route_table *t, const char *id, size_t id_len, uint64_t now_us)
{
	char key[QD_ROUTE_KEY_LEN];
	if (!make_key(key, id, id_len))
		return -ENOENT;
	struct qd_route_entry *e = entry_of(t, rte_hash_lookup(t->hash, key), key);
	if (e == NULL)
		return -ENOENT;
	if (__atomic_load_n(&e->ended, __ATOMIC_ACQUIRE) != 0)
		return -EALREADY;
	__atomic_store_n(&e->verified_us, now_us, __ATOMIC_RELAXED);
	return 0;
}

uint32_t
qd_route_adopted_count(const struct qd_route_table *t)
{
	return __atomic_load_n(&t->adopted_count, __ATOMIC_RELAXED);
}
