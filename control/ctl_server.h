/*
 * The control endpoint of qdispatchd: a UNIX stream socket served by the main
 * lcore (data-plane lcores never make syscalls).
 *
 * The server only does transport and validation: bounded request size, a
 * deadline per client, peer credentials (root, or the configured group),
 * JSON syntax and the protocol envelope. Commands are a table of handlers
 * the daemon registers; each receives the parsed arguments and fills a reply.
 */
#ifndef QD_CTL_SERVER_H
#define QD_CTL_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "ctl_proto.h"

#define QD_CTL_CLIENTS_MAX 1024

/* Fill <*data> (a new JSON value) from <args> (an object, maybe empty). On failure return
 * a negative errno and write a message into <err>. */
typedef int (*qd_ctl_handler_fn)(void *ctx, const json_t *args, json_t **data, char *err,
				 size_t err_len);

struct qd_ctl_command {
	const char *name;
	qd_ctl_handler_fn fn;
	const char *help;
};

struct qd_ctl_server_conf {
	const char *path;
	uint32_t mode;         /* permission bits of the socket file */
	const char *group;     /* "" or NULL: root only */
	uint32_t clients_max;
	const struct qd_ctl_command *commands;
	unsigned int commands_count;
	void *ctx;
};

struct qd_ctl_client {
	int fd;
	uint32_t len;
	uint64_t deadline_ms;
	char buf[QD_CTL_REQUEST_MAX];
};

struct qd_ctl_counters {
	uint64_t accepted;
	uint64_t requests;
	uint64_t errors;
	uint64_t refused_credentials;
	uint64_t refused_busy;
	uint64_t too_large;
	uint64_t timeouts;
};

struct qd_ctl_server {
	struct qd_ctl_server_conf conf;
	char path[108];
	int listen_fd;
	int epoll_fd;
	gid_t group_gid;
	bool group_set;
	struct qd_ctl_client *clients; /* conf.clients_max slots, fd -1 when free */
	struct qd_ctl_counters counters;
};

/* Create the socket at conf->path (replacing a stale one, refusing a live one), set its
 * owner and mode, and start listening. Returns 0 or a negative errno with <err> set. */
int qd_ctl_server_open(struct qd_ctl_server *s, const struct qd_ctl_server_conf *conf, char *err,
		       size_t err_len);

/* Wait up to <timeout_ms> for activity and serve what is ready. Returns the number of
 * requests answered, or a negative errno on a fatal error. EINTR counts as no activity. */
/* Wake the poll when <fd> is readable too (the peers' UDP socket); the caller reads it
 * after each poll. Negative errno on failure. */
int qd_ctl_server_watch(struct qd_ctl_server *s, int fd);

int qd_ctl_server_poll(struct qd_ctl_server *s, int timeout_ms, uint64_t now_ms);

/* Close every client and the socket, and remove the socket file. */
void qd_ctl_server_close(struct qd_ctl_server *s);

/* Handle one request line (no newline) as if a client had sent it, returning the reply
 * (a new string the caller frees). Used by the server and by the unit tests. */
char *qd_ctl_server_dispatch(struct qd_ctl_server *s, const char *line, size_t len);

#endif /* QD_CTL_SERVER_H */
