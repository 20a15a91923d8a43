/*
 * Control socket server (see ctl_server.h).
 *
 * Single-threaded and non-blocking: the main lcore calls qd_ctl_server_poll()
 * with a short timeout between its other duties. A client gets QD_CTL_TIMEOUT_MS
 * to send one request line of at most QD_CTL_REQUEST_MAX bytes; the reply is
 * written with a bounded blocking send (SO_SNDTIMEO) because replies are
 * produced in one piece and clients are local and trusted once admitted.
 */
#include "ctl_server.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define EPOLL_BATCH 32

static int
set_path(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, path);
	return 0;
}

/* A socket file left by a crashed daemon is removed; one that still answers is not. */
static int
claim_path(const char *path, char *err, size_t err_len)
{
	struct sockaddr_un sa;
	struct stat st;
	if (lstat(path, &st) != 0)
		return 0;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, err_len, "control.socket %s exists and is not a socket", path);
		return -EEXIST;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || set_path(&sa, path) != 0) {
		if (fd >= 0)
			close(fd);
		snprintf(err, err_len, "control.socket %s: %s", path, strerror(errno));
		return -errno;
	}
	int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	if (rc == 0) {
		snprintf(err, err_len, "control.socket %s is in use by a running qdispatchd", path);
		return -EADDRINUSE;
	}
	unlink(path);
	return 0;
}

static int
make_parent(const char *path)
{
	char dir[108];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return 0;
	*slash = '\0';
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int
apply_owner(struct qd_ctl_server *s, char *err, size_t err_len)
{
	const char *group = s->conf.group;
	if (group != NULL && group[0] != '\0') {
		struct group *g = getgrnam(group);
		if (g == NULL) {
			snprintf(err, err_len, "control.group '%s': no such group", group);
			return -ENOENT;
		}
		s->group_gid = g->gr_gid;
		s->group_set = true;
		if (chown(s->path, (uid_t)-1, g->gr_gid) != 0) {
			snprintf(err, err_len, "control.socket %s: chown: %s", s->path,
				 strerror(errno));
			return -errno;
		}
	}
	if (chmod(s->path, (mode_t)s->conf.mode) != 0) {
		snprintf(err, err_len, "control.socket %s: chmod: %s", s->path, strerror(errno));
		return -errno;
	}
	return 0;
}

int
qd_ctl_server_open(struct qd_ctl_server *s, const struct qd_ctl_server_conf *conf, char *err,
		   size_t err_len)
{
	assert(conf->clients_max > 0 && conf->clients_max <= QD_CTL_CLIENTS_MAX);
	memset(s, 0, sizeof(*s));
	s->conf = *conf;
	s->listen_fd = -1;
	s->epoll_fd = -1;
	struct sockaddr_un sa;
	if (set_path(&sa, conf->path) != 0) {
		snprintf(err, err_len, "control.socket %s: path too long", conf->path);
		return -ENAMETOOLONG;
	}
	snprintf(s->path, sizeof(s->path), "%s", conf->path);
	int rc = make_parent(conf->path);
	if (rc != 0) {
		snprintf(err, err_len, "control.socket %s: cannot create its directory: %s",
			 conf->path, strerror(-rc));
		return rc;
	}
	rc = claim_path(conf->path, err, err_len);
	if (rc != 0)
		return rc;
	s->clients = calloc(conf->clients_max, sizeof(s->clients[0]));
	if (s->clients == NULL) {
		snprintf(err, err_len, "control: out of memory");
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < conf->clients_max; i++)
		s->clients[i].fd = -1;

	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	/* Created with no permissions at all, so nobody connects before chmod. */
	mode_t old = umask(0777);
	rc = (s->listen_fd < 0) ? -1 : bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc != 0 || listen(s->listen_fd, 64) != 0) {
		rc = -errno;
		snprintf(err, err_len, "control.socket %s: %s", conf->path, strerror(errno));
		qd_ctl_server_close(s);
		return rc;
	}
	rc = apply_owner(s, err, err_len);
	if (rc != 0) {
		qd_ctl_server_close(s);
		return rc;
	}
	s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
	if (s->epoll_fd < 0 || epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->listen_fd, &ev) != 0) {
		rc = -errno;
		snprintf(err, err_len, "control: epoll: %s", strerror(errno));
		qd_ctl_server_close(s);
		return rc;
	}
	return 0;
}

static void
client_close(struct qd_ctl_server *s, struct qd_ctl_client *c)
{
	if (c->fd < 0)
		return;
	epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->len = 0;
}

void
qd_ctl_server_close(struct qd_ctl_server *s)
{
	if (s->clients != NULL) {
		for (uint32_t i = 0; i < s->conf.clients_max; i++)
			client_close(s, &s->clients[i]);
		free(s->clients);
		s->clients = NULL;
	}
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		unlink(s->path);
		s->listen_fd = -1;
	}
	if (s->epoll_fd >= 0) {
		close(s->epoll_fd);
		s->epoll_fd = -1;
	}
}

static char *
reply_error(const char *msg)
{
	json_t *r = json_pack("{s:i, s:b, s:s}", "v", QD_CTL_PROTO_VERSION, "ok", 0, "error", msg);
	char *out = json_dumps(r, JSON_COMPACT);
	json_decref(r);
	return out;
}

static char *
reply_help(const struct qd_ctl_server *s)
{
	json_t *cmds = json_array();
	for (unsigned int i = 0; i < s->conf.commands_count; i++)
		json_array_append_new(cmds, json_pack("{s:s, s:s}", "name",
						      s->conf.commands[i].name, "help",
						      s->conf.commands[i].help));
	json_t *r = json_pack("{s:i, s:b, s:{s:o}}", "v", QD_CTL_PROTO_VERSION, "ok", 1, "data",
			      "commands", cmds);
	char *out = json_dumps(r, JSON_COMPACT);
	json_decref(r);
	return out;
}

char *
qd_ctl_server_dispatch(struct qd_ctl_server *s, const char *line, size_t len)
{
	char msg[256];
	json_error_t jerr;
	s->counters.requests++;
	json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (req == NULL) {
		s->counters.errors++;
		snprintf(msg, sizeof(msg), "request is not JSON: %s (column %d)", jerr.text,
			 jerr.column);
		return reply_error(msg);
	}
	json_t *v = json_object_get(req, "v");
	json_t *cmd = json_object_get(req, "cmd");
	json_t *args = json_object_get(req, "args");
	const char *problem = NULL;
	if (!json_is_object(req))
		problem = "request must be a JSON object";
	else if (!json_is_integer(v) || json_integer_value(v) != QD_CTL_PROTO_VERSION)
		problem = "unsupported protocol version (want \"v\": 1)";
	else if (!json_is_string(cmd) || json_string_length(cmd) == 0 ||
		 json_string_length(cmd) >= QD_CTL_CMD_MAX)
		problem = "\"cmd\" must be a non-empty string";
	else if (args != NULL && !json_is_object(args))
		problem = "\"args\" must be an object";
	if (problem != NULL) {
		json_decref(req);
		s->counters.errors++;
		return reply_error(problem);
	}
	const char *name = json_string_value(cmd);
	if (strcmp(name, "help") == 0) {
		json_decref(req);
		return reply_help(s);
	}
	const struct qd_ctl_command *c = NULL;
	for (unsigned int i = 0; i < s->conf.commands_count; i++) {
		if (strcmp(s->conf.commands[i].name, name) == 0)
			c = &s->conf.commands[i];
	}
	if (c == NULL) {
		snprintf(msg, sizeof(msg), "unknown command '%s' (try 'help')", name);
		json_decref(req);
		s->counters.errors++;
		return reply_error(msg);
	}
	json_t *empty = json_object();
	json_t *data = NULL;
	msg[0] = '\0';
	int rc = c->fn(s->conf.ctx, args != NULL ? args : empty, &data, msg, sizeof(msg));
	json_decref(empty);
	json_decref(req);
	if (rc != 0 || data == NULL) {
		json_decref(data);
		s->counters.errors++;
		return reply_error(msg[0] != '\0' ? msg : strerror(rc < 0 ? -rc : EIO));
	}
	json_t *r = json_pack("{s:i, s:b, s:o}", "v", QD_CTL_PROTO_VERSION, "ok", 1, "data", data);
	char *out = json_dumps(r, JSON_COMPACT);
	json_decref(r);
	return out;
}

static bool
peer_allowed(struct qd_ctl_server *s, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
		return false;
	if (cred.uid == 0 || cred.uid == geteuid())
		return true;
	return s->group_set && cred.gid == s->group_gid;
}

static void
accept_clients(struct qd_ctl_server *s, uint64_t now_ms)
{
	/* Bounded: at most clients_max accepts per wake-up. */
	for (uint32_t n = 0; n < s->conf.clients_max; n++) {
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		s->counters.accepted++;
		if (!peer_allowed(s, fd)) {
			s->counters.refused_credentials++;
			close(fd);
			continue;
		}
		struct qd_ctl_client *c = NULL;
		for (uint32_t i = 0; i < s->conf.clients_max && c == NULL; i++) {
			if (s->clients[i].fd < 0)
				c = &s->clients[i];
		}
		if (c == NULL) {
			s->counters.refused_busy++;
			close(fd);
			continue;
		}
		c->fd = fd;
		c->len = 0;
		c->deadline_ms = now_ms + QD_CTL_TIMEOUT_MS;
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)(c - s->clients)};
		if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0)
			client_close(s, c);
	}
}

static void
send_reply(int fd, const char *reply)
{
	/* The reply goes out with a bounded blocking write: clients read it at once. */
	int flags = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
	struct timeval tv = {.tv_sec = QD_CTL_TIMEOUT_MS / 1000, .tv_usec = 0};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	size_t len = strlen(reply), off = 0;
	while (off < len) {
		ssize_t n = send(fd, reply + off, len - off, MSG_NOSIGNAL);
		if (n <= 0)
			return;
		off += (size_t)n;
	}
	(void)!send(fd, "\n", 1, MSG_NOSIGNAL);
}

/* Returns 1 when a request was answered. */
static int
client_read(struct qd_ctl_server *s, struct qd_ctl_client *c)
{
	ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0) {
		client_close(s, c);
		return 0;
	}
	uint32_t scanned = c->len;
	c->len += (uint32_t)n;
	char *nl = memchr(c->buf + scanned, '\n', c->len - scanned);
	if (nl == NULL) {
		if (c->len == sizeof(c->buf)) {
			s->counters.too_large++;
			char *r = reply_error("request larger than 4096 bytes");
			send_reply(c->fd, r);
			free(r);
			client_close(s, c);
		}
		return 0;
	}
	char *reply = qd_ctl_server_dispatch(s, c->buf, (size_t)(nl - c->buf));
	if (reply != NULL) {
		if (strlen(reply) > QD_CTL_REPLY_MAX) {
			free(reply);
			reply = reply_error("reply larger than the protocol allows");
		}
		send_reply(c->fd, reply);
		free(reply);
	}
	client_close(s, c);
	return 1;
}

int
qd_ctl_server_watch(struct qd_ctl_server *s, int fd)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX - 1};
	return epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

int
qd_ctl_server_poll(struct qd_ctl_server *s, int timeout_ms, uint64_t now_ms)
{
	struct epoll_event evs[EPOLL_BATCH];
	int n = epoll_wait(s->epoll_fd, evs, EPOLL_BATCH, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	int answered = 0;
	for (int i = 0; i < n; i++) {
		if (evs[i].data.u64 == UINT64_MAX) {
			accept_clients(s, now_ms);
			continue;
		}
		if (evs[i].data.u64 == UINT64_MAX - 1)
			continue; /* a watched descriptor: its owner reads it after the poll */
		struct qd_ctl_client *c = &s->clients[evs[i].data.u64];
		if (c->fd >= 0)
			answered += client_read(s, c);
	}
	for (uint32_t i = 0; i < s->conf.clients_max; i++) {
		struct qd_ctl_client *c = &s->clients[i];
		if (c->fd >= 0 && now_ms > c->deadline_ms) {
			s->counters.timeouts++;
			client_close(s, c);
		}
	}
	return answered;
}
