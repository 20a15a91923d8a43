/*
 * qdbench-delayd: a tiny Trino-like server that answers every request after
 * exactly --delay-ms milliseconds, for the tests of qdbench's latency
 * recording (tests/qdbench.sh). Loopback use only.
 *
 * Protocol, kept minimal: POST /v1/statement starts query qN and answers a
 * QUEUED page whose nextUri is http://<Host>/v1/statement/executing/qN/s/1;
 * GET .../qN/s/T answers a RUNNING page with --rows rows and the nextUri of
 * T+1, until T = --pages, which is FINISHED with no nextUri; DELETE answers
 * 204. The fields come in an unusual order (nextUri after data, stats last)
 * so the client's scanner is tested for it. GET /stats answers the counts.
 * With --stall-after N --stall-ms M the (N+1)-th request is held M ms instead:
 * the test of coordinated omission. One thread, epoll, at most --max-conns
 * connections, one request answered at a time per connection.
 *
 * usage: qdbench-delayd --delay-ms D [--pages K] [--rows R] [--stall-after N
 *        --stall-ms M] [--max-conns C]
 * It listens on 127.0.0.1 on a free port and prints "127.0.0.1:PORT" on stdout.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define IN_MAX 16384
#define OUT_MAX 65536
#define NS_PER_MS 1000000ull

struct conn {
	int fd;
	char in[IN_MAX];
	size_t in_len;
	char out[OUT_MAX];
	size_t out_len, out_off;
	bool pending; /* a request is waiting for its due time */
	uint64_t due;
	size_t req_len; /* bytes of the pending request in in[] */
};

static uint64_t delay_ns, stall_ns, stall_after = UINT64_MAX;
static unsigned int pages = 2, rows = 1, max_conns = 256;
static uint64_t n_requests, n_posts, n_gets, n_deletes, n_queries;
static volatile sig_atomic_t stop;

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void
on_signal(int sig)
{
	stop = sig;
}

static void
close_conn(int ep, struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->in_len = c->out_len = c->out_off = 0;
	c->pending = false;
}

/* Length of the first whole request in c->in, or 0. */
static size_t
request_length(const struct conn *c)
{
	const char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);

	if (end == NULL)
		return 0;
	size_t head = (size_t)(end - c->in) + 4, body = 0;
	const char *cl = memmem(c->in, head, "Content-Length:", 15);

	if (cl != NULL)
		body = strtoul(cl + 15, NULL, 10);
	return head + body <= c->in_len ? head + body : 0;
}

static void
respond(struct conn *c)
{
	char host[256] = "localhost", method[16] = "", path[1024] = "", body[OUT_MAX / 2];
	const char *h = memmem(c->in, c->req_len, "\r\nHost: ", 8);
	int blen = 0, status = 200;

	sscanf(c->in, "%15s %1023s", method, path);
	if (h != NULL)
		sscanf(h + 8, "%255[^\r]", host);
	if (strcmp(method, "POST") == 0 && strcmp(path, "/v1/statement") == 0) {
		n_posts++;
		uint64_t q = ++n_queries;

		blen = snprintf(body, sizeof(body),
				"{\"id\":\"q%" PRIu64 "\",\"nextUri\":\"http://%s/v1/statement/executing/q%"
				PRIu64 "/s/1\",\"stats\":{\"state\":\"QUEUED\",\"nodes\":0},\"warnings\":[]}",
				q, host, q);
	} else if (strcmp(method, "GET") == 0 && strncmp(path, "/v1/statement/executing/", 24) == 0) {
		n_gets++;
		char id[64] = "";
		unsigned int t = 0;

		sscanf(path + 24, "%63[^/]/s/%u", id, &t);
		blen = snprintf(body, sizeof(body), "{\"id\":\"%s\",\"columns\":[{\"name\":\"c0\"}],\"data\":[", id);
		for (unsigned int r = 0; r < rows && blen < (int)sizeof(body) - 64; r++)
			blen += snprintf(body + blen, sizeof(body) - (size_t)blen, "%s[\"v%u\"]", r ? "," : "", r);
		blen += snprintf(body + blen, sizeof(body) - (size_t)blen, "]");
		if (t < pages)
			blen += snprintf(body + blen, sizeof(body) - (size_t)blen,
					 ",\"nextUri\":\"http:\\/\\/%s\\/v1\\/statement\\/executing\\/%s\\/s\\/%u\","
					 "\"stats\":{\"queued\":false,\"state\":\"RUNNING\"}}",
					 host, id, t + 1);
		else
			blen += snprintf(body + blen, sizeof(body) - (size_t)blen,
					 ",\"stats\":{\"state\":\"FINISHED\"}}");
	} else if (strcmp(method, "DELETE") == 0) {
		n_deletes++;
		status = 204;
	} else if (strcmp(method, "GET") == 0 && strcmp(path, "/stats") == 0) {
		blen = snprintf(body, sizeof(body),
				"{\"requests\":%" PRIu64 ",\"posts\":%" PRIu64 ",\"gets\":%" PRIu64
				",\"deletes\":%" PRIu64 "}",
				n_requests, n_posts, n_gets, n_deletes);
	} else {
		status = 404;
	}
	if (status == 204)
		c->out_len = (size_t)snprintf(c->out, sizeof(c->out), "HTTP/1.1 204 No Content\r\n\r\n");
	else
		c->out_len = (size_t)snprintf(c->out, sizeof(c->out),
					      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
					      "Content-Length: %d\r\n\r\n%.*s",
					      status, status == 200 ? "OK" : "Not Found", blen, blen, body);
	c->out_off = 0;
	memmove(c->in, c->in + c->req_len, c->in_len - c->req_len);
	c->in_len -= c->req_len;
	c->pending = false;
}

static void
try_schedule(struct conn *c, uint64_t now)
{
	if (c->pending || c->out_off < c->out_len)
		return;
	c->req_len = request_length(c);
	if (c->req_len == 0)
		return;
	c->pending = true;
	c->due = now + (n_requests == stall_after ? stall_ns : delay_ns);
	n_requests++;
}

static bool
flush(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

		if (n < 0)
			return errno == EAGAIN; /* a slow reader: the loop retries */
		c->out_off += (size_t)n;
	}
	c->out_len = c->out_off = 0;
	return true;
}

static int
arg_u64(const char *opt, const char *v, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0') {
		fprintf(stderr, "qdbench-delayd: %s '%s': expected a number\n", opt, v);
		return -1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	uint64_t v;

	for (int i = 1; i < argc; i += 2) {
		if (i + 1 >= argc || arg_u64(argv[i], argv[i + 1], &v) != 0) {
			fprintf(stderr, "usage: qdbench-delayd --delay-ms D [--pages K] [--rows R] "
					"[--stall-after N --stall-ms M] [--max-conns C]\n");
			return 2;
		}
		if (strcmp(argv[i], "--delay-ms") == 0)
			delay_ns = v * NS_PER_MS;
		else if (strcmp(argv[i], "--pages") == 0)
			pages = (unsigned int)v;
		else if (strcmp(argv[i], "--rows") == 0 && v <= 1000)
			rows = (unsigned int)v;
		else if (strcmp(argv[i], "--stall-after") == 0)
			stall_after = v;
		else if (strcmp(argv[i], "--stall-ms") == 0)
			stall_ns = v * NS_PER_MS;
		else if (strcmp(argv[i], "--max-conns") == 0 && v >= 1 && v <= 4096)
			max_conns = (unsigned int)v;
		else {
			fprintf(stderr, "qdbench-delayd: unknown or out-of-range option %s\n", argv[i]);
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);

	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t slen = sizeof(sa);

	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 1024) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &slen) != 0) {
		perror("qdbench-delayd: listen");
		return 1;
	}
	printf("127.0.0.1:%u\n", ntohs(sa.sin_port));
	fflush(stdout);

	struct conn *conns = calloc(max_conns, sizeof(*conns));
	int ep = epoll_create1(0);

	if (conns == NULL || ep < 0) {
		perror("qdbench-delayd");
		return 1;
	}
	for (unsigned int i = 0; i < max_conns; i++)
		conns[i].fd = -1;
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};

	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	while (!stop) {
		uint64_t now = now_ns(), wake = now + 100 * NS_PER_MS;

		for (unsigned int i = 0; i < max_conns; i++) {
			struct conn *c = &conns[i];

			if (c->fd < 0)
				continue;
			if (c->pending && c->due <= now) {
				respond(c);
				if (!flush(c))
					close_conn(ep, c);
				else
					try_schedule(c, now);
			}
			if (c->fd >= 0 && c->pending && c->due < wake)
				wake = c->due;
			if (c->fd >= 0 && c->out_off < c->out_len && !flush(c))
				close_conn(ep, c);
		}
		struct epoll_event evs[64];
		struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(wake > now ? wake - now : 0)};
		int n = epoll_pwait2(ep, evs, 64, &ts, NULL);

		for (int e = 0; e < n; e++) {
			if (evs[e].data.u32 == UINT32_MAX) {
				int fd;

				while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					unsigned int i = 0;

					while (i < max_conns && conns[i].fd >= 0)
						i++;
					if (i == max_conns) {
						close(fd);
						continue;
					}
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					conns[i].fd = fd;
					struct epoll_event cev = {.events = EPOLLIN, .data.u32 = i};

					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
				}
				continue;
			}
			struct conn *c = &conns[evs[e].data.u32];

			if (c->fd < 0)
				continue;
			if (c->in_len == sizeof(c->in)) {
				close_conn(ep, c); /* a request larger than we hold */
				continue;
			}
			ssize_t r = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);

			if (r == 0 || (r < 0 && errno != EAGAIN)) {
				close_conn(ep, c);
				continue;
			}
			if (r > 0)
				c->in_len += (size_t)r;
			try_schedule(c, now_ns());
		}
	}
	return 0;
}
