/* Control socket server: envelope validation, limits, permissions, stale sockets, timeouts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ctl_server.h"

static char dir[64];
static char path[128];

static int
cmd_echo(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len)
{
	(*(int *)ctx)++;
	if (json_object_get(args, "fail") != NULL) {
		snprintf(err, err_len, "asked to fail");
		return -EINVAL;
	}
	*data = json_deep_copy(args);
	return 0;
}

static const struct qd_ctl_command commands[] = {
	{"echo", cmd_echo, "return the arguments"},
};

static int calls;

static void
open_server(struct qd_ctl_server *s, uint32_t clients_max)
{
	struct qd_ctl_server_conf conf = {
		.path = path, .mode = 0600, .group = "", .clients_max = clients_max,
		.commands = commands, .commands_count = 1, .ctx = &calls,
	};
	char err[256];
	int rc = qd_ctl_server_open(s, &conf, err, sizeof(err));
	if (rc != 0)
		fail_msg("open: %s", err);
}

static int
connect_client(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static uint64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Send <req> (raw bytes), serve, and return the parsed reply (NULL if the server closed). */
static json_t *
roundtrip(struct qd_ctl_server *s, const char *req, size_t len)
{
	int fd = connect_client();
	assert_int_equal(send(fd, req, len, 0), (ssize_t)len);
	for (int i = 0; i < 5; i++)
		qd_ctl_server_poll(s, 20, now_ms());
	char buf[8192];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	assert_non_null(strchr(buf, '\n'));
	json_error_t e;
	json_t *r = json_loads(buf, JSON_DISABLE_EOF_CHECK, &e);
	assert_non_null(r);
	return r;
}

static void
expect_error(struct qd_ctl_server *s, const char *req, const char *needle)
{
	json_t *r = roundtrip(s, req, strlen(req));
	assert_non_null(r);
	assert_true(json_is_false(json_object_get(r, "ok")));
	const char *e = json_string_value(json_object_get(r, "error"));
	if (e == NULL || strstr(e, needle) == NULL)
		fail_msg("error '%s' lacks '%s'", e ? e : "(none)", needle);
	json_decref(r);
}

static void
test_requests(void **state)
{
	(void)state;
	struct qd_ctl_server s;
	open_server(&s, 4);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	const char *ok = "{\"v\":1,\"cmd\":\"echo\",\"args\":{\"x\":5}}\n";
	json_t *r = roundtrip(&s, ok, strlen(ok));
	assert_true(json_is_true(json_object_get(r, "ok")));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "data"), "x")), 5);
	json_decref(r);
	assert_int_equal(calls, 1);

	expect_error(&s, "not json\n", "not JSON");
	expect_error(&s, "[1]\n", "JSON object");
	expect_error(&s, "{\"cmd\":\"echo\"}\n", "protocol version");
	expect_error(&s, "{\"v\":2,\"cmd\":\"echo\"}\n", "protocol version");
	expect_error(&s, "{\"v\":1}\n", "\"cmd\"");
	expect_error(&s, "{\"v\":1,\"cmd\":\"\"}\n", "\"cmd\"");
	expect_error(&s, "{\"v\":1,\"cmd\":\"nope\"}\n", "unknown command 'nope'");
	expect_error(&s, "{\"v\":1,\"cmd\":\"echo\",\"args\":3}\n", "\"args\"");
	expect_error(&s, "{\"v\":1,\"cmd\":\"echo\",\"v\":1}\n", "not JSON");
	expect_error(&s, "{\"v\":1,\"cmd\":\"echo\",\"args\":{\"fail\":1}}\n", "asked to fail");

	r = roundtrip(&s, "{\"v\":1,\"cmd\":\"help\"}\n", 21);
	json_t *cmds = json_object_get(json_object_get(r, "data"), "commands");
	assert_int_equal(json_array_size(cmds), 1);
	json_decref(r);

	/* One byte over the limit without a newline: refused with a message. */
	char *big = malloc(QD_CTL_REQUEST_MAX + 1);
	memset(big, ' ', QD_CTL_REQUEST_MAX + 1);
	r = roundtrip(&s, big, QD_CTL_REQUEST_MAX + 1);
	free(big);
	assert_non_null(r);
	assert_non_null(strstr(json_string_value(json_object_get(r, "error")), "larger"));
	json_decref(r);
	assert_int_equal(s.counters.too_large, 1);
	assert_true(s.counters.errors >= 10);
	qd_ctl_server_close(&s);
	assert_int_not_equal(access(path, F_OK), 0);
}

static void
test_stale_and_live_socket(void **state)
{
	(void)state;
	/* A stale socket file (nobody listening) is replaced. */
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	struct qd_ctl_server s, s2;
	open_server(&s, 2);
	/* A live one is not stolen. */
	struct qd_ctl_server_conf conf = {
		.path = path, .mode = 0600, .clients_max = 2, .commands = commands,
		.commands_count = 1, .ctx = &calls,
	};
	char err[256];
	assert_int_equal(qd_ctl_server_open(&s2, &conf, err, sizeof(err)), -EADDRINUSE);
	assert_non_null(strstr(err, "in use"));
	qd_ctl_server_close(&s);

	/* A regular file in the way is an error, not something to delete. */
	FILE *f = fopen(path, "w");
	fclose(f);
	assert_int_equal(qd_ctl_server_open(&s2, &conf, err, sizeof(err)), -EEXIST);
	unlink(path);
	conf.group = "no-such-group-qd";
	assert_int_equal(qd_ctl_server_open(&s2, &conf, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no such group"));
}

static void
test_client_limits(void **state)
{
	(void)state;
	struct qd_ctl_server s;
	open_server(&s, 2);
	/* Two silent clients fill the table; a third is turned away. */
	int a = connect_client(), b = connect_client(), c = connect_client();
	qd_ctl_server_poll(&s, 20, now_ms());
	qd_ctl_server_poll(&s, 20, now_ms());
	assert_int_equal(s.counters.refused_busy, 1);
	char buf[16];
	assert_int_equal(recv(c, buf, sizeof(buf), 0), 0);
	/* Past the deadline, silent clients are dropped. */
	qd_ctl_server_poll(&s, 0, now_ms() + QD_CTL_TIMEOUT_MS + 1);
	assert_int_equal(s.counters.timeouts, 2);
	assert_int_equal(recv(a, buf, sizeof(buf), 0), 0);
	close(a);
	close(b);
	close(c);
	qd_ctl_server_close(&s);
}

int
main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/qd_ctl_test_XXXXXX");
	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(path, sizeof(path), "%s/sub/ctl.sock", dir);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_requests),
		cmocka_unit_test(test_stale_and_live_socket),
		cmocka_unit_test(test_client_limits),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	char sub[160];
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	rmdir(sub);
	rmdir(dir);
	return rc;
}
