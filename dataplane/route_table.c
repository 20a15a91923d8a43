/*
 * Query route table (see route_table.h): rte_hash (lock-free readers) over a
 * fixed entry array, free indexes in an MP/MC ring, reclamation by RCU QSBR.
 */
#include "route_table.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_errno.h>
#include <rte_hash_crc.h>
#include <rte_lcore.h>
#include <rte_malloc.h>

/* Deleted keys wait in the hash's defer queue; reclaim once this many wait, so freed
 * indexes come back quickly without a reclaim attempt on every delete. */
#define ROUTE_RECLAIM_TRIGGER 32
#define ROUTE_TOUCH_US 1000000u /* refresh last_used at most once a second per route */

/* Indexes travel through the ring and the hash as pointers; +1 keeps them non-NULL. */
static inline void *
idx_to_ptr(uint32_t idx)
{
	return (void *)(uintptr_t)(idx + 1);
}

static inline uint32_t
ptr_to_idx(void *p)
{
	return (uint32_t)((uintptr_t)p - 1);
}

static void
free_idx(void *p, void *key_data)
{
	struct qd_route_table *t = p;
	/* Cannot fail: the ring holds every index. */
	int rc = rte_ring_mp_enqueue(t->free_idx, key_data);
	RTE_VERIFY(rc == 0);
}

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

	t->entries = rte_zmalloc_socket("qd_route_entries",
					(size_t)capacity * sizeof(t->entries[0]),
					RTE_CACHE_LINE_SIZE, socket);
	size_t qsz = rte_rcu_qsbr_get_memsize(threads);
	t->qsbr = rte_zmalloc_socket("qd_route_qsbr", qsz, RTE_CACHE_LINE_SIZE, socket);
	snprintf(n, sizeof(n), "%s_free", name);
	t->free_idx = rte_ring_create(n, capacity, socket, RING_F_EXACT_SZ);
	if (t->entries == NULL || t->qsbr == NULL || t->free_idx == NULL)
		goto fail;
	if (rte_rcu_qsbr_init(t->qsbr, threads) != 0) {
		err = EINVAL;
		goto fail;
	}
	for (uint32_t i = 0; i < capacity; i++)
		RTE_VERIFY(rte_ring_enqueue(t->free_idx, idx_to_ptr(i)) == 0);

	snprintf(n, sizeof(n), "%s", name);
	struct rte_hash_parameters hp = {
		.name = n,
		/* Cuckoo hashing without an extension table refuses inserts before it is
		 * full; the slack keeps that from happening below <capacity> routes. */
		.entries = capacity + capacity / 4 + 64,
		.key_len = QD_ROUTE_KEY_LEN,
		.hash_func = rte_hash_crc,
		.hash_func_init_val = 0x51ed270bu,
		.socket_id = socket,
		.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF |
			      RTE_HASH_EXTRA_FLAGS_MULTI_WRITER_ADD,
	};
	t->hash = rte_hash_create(&hp);
	if (t->hash == NULL) {
		err = rte_errno ? rte_errno : ENOMEM;
		goto fail;
	}
	struct rte_hash_rcu_config rc = {
		.v = t->qsbr,
		.mode = RTE_HASH_QSBR_MODE_DQ,
		.trigger_reclaim_limit = ROUTE_RECLAIM_TRIGGER,
		.max_reclaim_size = 0, /* the library's default batch */
		.key_data_ptr = t,
		.free_key_data_func = free_idx,
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
	rte_ring_free(t->free_idx);
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

int
qd_route_insert(struct qd_route_table *t, const char *id, size_t id_len, uint16_t coord,
		uint16_t owner, uint64_t now_us)
{
	char key[QD_ROUTE_KEY_LEN];
	if (!make_key(key, id, id_len))
		return -EINVAL;
	if (rte_hash_lookup(t->hash, key) >= 0)
		return -EEXIST;
	void *p;
	if (rte_ring_mc_dequeue(t->free_idx, &p) != 0)
		return -ENOSPC;
	uint32_t idx = ptr_to_idx(p);
	RTE_ASSERT(idx < t->capacity);
	struct qd_route_entry *e = &t->entries[idx];
	memcpy(e->id, key, sizeof(key));
	e->created_us = now_us;
	__atomic_store_n(&e->last_used_us, now_us, __ATOMIC_RELAXED);
	e->coord = coord;
	e->owner = owner;
	__atomic_store_n(&e->live, 1, __ATOMIC_RELAXED);
	/* The hash publishes the key with release semantics: a reader that finds it sees
	 * the entry written above. */
	int rc = rte_hash_add_key_data(t->hash, key, p);
	if (rc != 0) {
		__atomic_store_n(&e->live, 0, __ATOMIC_RELAXED);
		RTE_VERIFY(rte_ring_mp_enqueue(t->free_idx, p) == 0);
		return rc == -ENOSPC ? -ENOSPC : -EINVAL;
	}
	return 0;
}

int
qd_route_lookup(struct qd_route_table *t, const char *id, size_t id_len, uint64_t now_us)
{
	char key[QD_ROUTE_KEY_LEN];
	if (!make_key(key, id, id_len))
		return -ENOENT;
	void *p;
	if (rte_hash_lookup_data(t->hash, key, &p) < 0)
		return -ENOENT;
	struct qd_route_entry *e = &t->entries[ptr_to_idx(p)];
	uint64_t last = __atomic_load_n(&e->last_used_us, __ATOMIC_RELAXED);
	if (now_us > last + ROUTE_TOUCH_US)
		__atomic_store_n(&e->last_used_us, now_us, __ATOMIC_RELAXED);
	return e->coord;
}

static int
remove_key(struct qd_route_table *t, const char key[QD_ROUTE_KEY_LEN])
{
	void *p;
	if (rte_hash_lookup_data(t->hash, key, &p) < 0)
		return -ENOENT;
	/* Only the caller whose delete succeeds ends the route; the index stays ours
	 * (not reclaimed) until this thread's next quiescent state. */
	if (rte_hash_del_key(t->hash, key) < 0)
		return -ENOENT;
	__atomic_store_n(&t->entries[ptr_to_idx(p)].live, 0, __ATOMIC_RELAXED);
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
	       uint64_t dead_mask, uint32_t *dead_removed)
{
	uint32_t removed = 0;
	if (stripes == 0 || thread >= stripes)
		return 0;
	for (uint32_t n = 0; n < budget; n++) {
		uint32_t idx = *cursor;
		if (idx >= t->capacity || idx % stripes != thread)
			idx = thread;
		*cursor = idx + stripes;
		if (idx >= t->capacity)
			break;
		struct qd_route_entry *e = &t->entries[idx];
		if (__atomic_load_n(&e->live, __ATOMIC_RELAXED) == 0)
			continue;
		uint64_t last = __atomic_load_n(&e->last_used_us, __ATOMIC_RELAXED);
		bool dead = e->coord < 64 && (dead_mask >> e->coord) & 1;
		if (!dead && (now_us < last || now_us - last <= idle_us))
			continue;
		char key[QD_ROUTE_KEY_LEN];
		memcpy(key, e->id, sizeof(key));
		if (remove_key(t, key) == 0) {
			if (dead)
				(*dead_removed)++;
			else
				removed++;
		}
	}
	return removed;
}

uint32_t
qd_route_count(const struct qd_route_table *t)
{
	int32_t n = rte_hash_count(t->hash);
	return n < 0 ? 0 : (uint32_t)n;
}
