/*
 * qdsynflood: a bounded SYN flood from a raw socket, for the lab only.
 *
 * It is the attacker of the lab's SYN cookie test (issue 3): from the client
 * namespace it sends TCP SYNs with forged source addresses, random source
 * ports and random ISNs to one HOST:PORT, paced at --rate packets per second
 * and bounded both in count (--count) and in time (--duration): it stops at
 * whichever limit comes first. The IPv4 header and the TCP segment are built
 * here (IP_HDRINCL) with correct checksums and an MSS option, so the target's
 * stack takes every SYN for a real one. Nothing is received: the SYN-ACKs go
 * to addresses nobody in the lab owns (by default 10.213.0.150-199).
 *
 * Network safety: it sends only inside the lab. The target and every source
 * must lie in the lab's network LAB_NET (10.213.0.0/24), which is hard-wired
 * and cannot be overridden, and the socket is bound (SO_BINDTODEVICE) to the
 * local interface whose own address and subnet are in LAB_NET and cover the
 * target: outside the lab's client namespace there is no such interface and
 * qdsynflood refuses to start.
 *
 * What it sent is printed as one JSON object on stdout. One thread, no
 * allocation after start-up.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "tool_common.h"

#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull

/* The lab's network (scripts/lab: NET_PREFIX 10.213.0, /24). Fixed on purpose. */
#define LAB_NET_TEXT "10.213.0.0/24"
#define LAB_NET 0x0ad50000u  /* 10.213.0.0, host order */
#define LAB_MASK 0xffffff00u /* /24 */
#define LAB_PREFIX_LEN 24

#define DEFAULT_SOURCES "10.213.0.150-10.213.0.199"
#define COUNT_MAX 100000000ull  /* --count */
#define RATE_MAX 1000000ull     /* --rate, SYNs per second */
#define DURATION_MAX_S 3600.0   /* --duration */
#define SOURCES_MAX 256u        /* every address of LAB_NET at most */
#define BATCH_MAX 64u           /* SYNs per sendmmsg() */
#define CATCH_UP_NS (100 * NS_PER_MS) /* behind schedule by more: no burst to catch up */
#define BLOCKED_WAIT_MS 1       /* wait after ENOBUFS/EAGAIN before trying again */
#define PORT_MIN 1024u          /* random source ports: PORT_MIN..65535 */
#define MSS_DEFAULT 1460u
#define WINDOW_DEFAULT 64240u
#define TTL 64
#define OPT_BYTES 4             /* the MSS option */
#define SYN_BYTES (sizeof(struct iphdr) + sizeof(struct tcphdr) + OPT_BYTES)
#define LIST_TEXT_MAX 4096
#define SNDBUF_BYTES (4u << 20)

_Static_assert(SYN_BYTES == 44, "IPv4 20 + TCP 20 + MSS option 4");
_Static_assert((OPT_BYTES % 4) == 0, "TCP options fill whole words");
/* The pacing product (elapsed ns * rate) fits in 64 bits. */
_Static_assert((uint64_t)(DURATION_MAX_S + 1) * NS_PER_S < UINT64_MAX / RATE_MAX,
	       "pacing arithmetic overflows");

/* Why sending stopped. */
enum stop {
	STOP_COUNT = 0, /* --count SYNs sent */
	STOP_DURATION,	/* --duration ran out first */
	STOP_SIGNAL,	/* SIGINT or SIGTERM */
	STOP_ERROR,	/* sendmmsg() failed other than ENOBUFS/EAGAIN/EINTR */
};

static const char *const stop_names[] = {
	[STOP_COUNT] = "count",
	[STOP_DURATION] = "duration",
	[STOP_SIGNAL] = "signal",
	[STOP_ERROR] = "error",
};

struct opts {
	uint32_t target_ip;   /* host order */
	uint16_t target_port; /* host order */
	uint32_t sources[SOURCES_MAX]; /* host order */
	unsigned int sources_n;
	bool sources_set;
	char ifname[IF_NAMESIZE];
	uint64_t count;
	uint64_t rate;
	uint64_t duration_ns;
	uint64_t seed;
	bool seed_set;
	uint16_t mss;	 /* 0: no MSS option */
	uint16_t window;
	bool progress;
};

/* The interface the SYNs leave by. */
struct egress {
	char ifname[IF_NAMESIZE];
	uint32_t addr; /* its address in LAB_NET, host order */
	uint32_t mask;
};

struct result {
	uint64_t sent;
	uint64_t blocked; /* sendmmsg() calls refused with ENOBUFS or EAGAIN */
	uint64_t elapsed_ns;
	enum stop stop;
	int err; /* errno of STOP_ERROR */
};

const char qd_tool_prog[] = "qdsynflood";

/* splitmix64: the state advances by GOLDEN64, the output is mixed. */
static uint64_t
rand64(uint64_t *state)
{
	uint64_t x = (*state += QD_TOOL_GOLDEN64);

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static bool
in_lab(uint32_t ip)
{
	return (ip & LAB_MASK) == LAB_NET;
}

/* An address of LAB_NET a host may have: not its network or broadcast address. */
static bool
lab_host(uint32_t ip)
{
	return in_lab(ip) && ip != LAB_NET && ip != (LAB_NET | ~LAB_MASK);
}

static const char *
ip_text(uint32_t ip, char *buf, size_t len)
{
	struct in_addr a = { .s_addr = htonl(ip) };

	return inet_ntop(AF_INET, &a, buf, (socklen_t)len);
}

/* ---- checksums ------------------------------------------------------------- */

/* Adds <len> bytes at <p> (network order, 16-bit words) to the one's complement
 * sum <sum>. */
static uint32_t
csum_add(uint32_t sum, const void *p, size_t len)
{
	const uint8_t *b = p;

	assert(len % 2 == 0);
	for (size_t i = 0; i < len; i += 2)
		sum += (uint32_t)b[i] << 8 | b[i + 1];
	return sum;
}

static uint16_t
csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

/* ---- the SYN ----------------------------------------------------------------- */

struct syn {
	struct iphdr ip;
	struct tcphdr tcp;
	uint8_t opt[OPT_BYTES];
} __attribute__((packed));

_Static_assert(sizeof(struct syn) == SYN_BYTES, "no padding in the SYN");

/* Writes into <s> a SYN from <src>:<sport> with ISN <isn> and IP id <id> to the
 * target of <o>, both checksums computed. */
static void
syn_build(struct syn *s, const struct opts *o, uint32_t src, uint16_t sport, uint32_t isn,
	  uint16_t id)
{
	size_t tcp_len = sizeof(s->tcp) + (o->mss != 0 ? OPT_BYTES : 0);

	memset(s, 0, sizeof(*s));
	s->ip.version = 4;
	s->ip.ihl = sizeof(s->ip) / 4;
	s->ip.tot_len = htons((uint16_t)(sizeof(s->ip) + tcp_len));
	s->ip.id = htons(id);
	s->ip.frag_off = htons(IP_DF);
	s->ip.ttl = TTL;
	s->ip.protocol = IPPROTO_TCP;
	s->ip.saddr = htonl(src);
	s->ip.daddr = htonl(o->target_ip);
	s->ip.check = csum_fold(csum_add(0, &s->ip, sizeof(s->ip)));

	s->tcp.source = htons(sport);
	s->tcp.dest = htons(o->target_port);
	s->tcp.seq = htonl(isn);
	s->tcp.doff = (uint16_t)(tcp_len / 4);
	s->tcp.syn = 1;
	s->tcp.window = htons(o->window);
	if (o->mss != 0) {
		s->opt[0] = TCPOPT_MAXSEG;
		s->opt[1] = TCPOLEN_MAXSEG;
		s->opt[2] = (uint8_t)(o->mss >> 8);
		s->opt[3] = (uint8_t)o->mss;
	}
	/* Pseudo-header: source, destination, zero, protocol, TCP length. */
	uint8_t pseudo[12];

	memcpy(pseudo, &s->ip.saddr, 4);
	memcpy(pseudo + 4, &s->ip.daddr, 4);
	pseudo[8] = 0;
	pseudo[9] = IPPROTO_TCP;
	pseudo[10] = (uint8_t)(tcp_len >> 8);
	pseudo[11] = (uint8_t)tcp_len;
	s->tcp.check = csum_fold(csum_add(csum_add(0, pseudo, sizeof(pseudo)), &s->tcp, tcp_len));
	assert(csum_fold(csum_add(0, &s->ip, sizeof(s->ip))) == 0);
}

/* ---- argument parsing ------------------------------------------------------ */

static void
usage(FILE *f)
{
	fprintf(f,
"NAME\n"
"    qdsynflood - a bounded SYN flood inside the qdispatch lab\n"
"\n"
"SYNOPSIS\n"
"    qdsynflood --target HOST:PORT [--count N] [--rate R] [--duration S]\n"
"               [--source LIST | --source-prefix ADDR/LEN] [OPTIONS]\n"
"\n"
"DESCRIPTION\n"
"    Sends TCP SYNs to HOST:PORT from a raw IPv4 socket (IP_HDRINCL), with\n"
"    source addresses taken at random from a list or a prefix, random source\n"
"    ports (%u..65535), random ISNs and random IP ids, an MSS option, and\n"
"    correct IPv4 and TCP checksums. The SYNs are paced at R per second and\n"
"    sending stops at whichever limit comes first: N SYNs sent or S seconds\n"
"    elapsed. Nothing is received or answered: the target's SYN-ACKs go to\n"
"    the forged sources. qdsynflood is the attacker of the lab's SYN cookie\n"
"    test (tests/lab/tcp_synflood.sh), run in the client namespace with\n"
"    'scripts/lab exec'.\n"
"\n"
"    Pick sources nobody in the lab owns (the default:\n"
"    %s): the target then keeps its half-open\n"
"    connections until its SYN-ACK retries run out, which is what fills a\n"
"    SYN backlog.\n"
"    A source the client owns answers the SYN-ACK with a RST, which frees\n"
"    the target's slot at once.\n"
"\n"
"NETWORK SAFETY\n"
"    Only the lab's network %s is ever addressed. qdsynflood\n"
"    refuses, before sending anything:\n"
"      - a target or a source outside %s, or its network or\n"
"        broadcast address, or a source equal to the target;\n"
"      - to run where no local interface has an address and a subnet\n"
"        (prefix length >= %d) inside %s that covers the target,\n"
"        i.e. anywhere but a lab namespace;\n"
"      - a source outside that interface's subnet.\n"
"    The socket is bound to that interface (SO_BINDTODEVICE), so the SYNs\n"
"    leave by it or not at all. The lab network is compiled in; there is no\n"
"    option to change it.\n"
"\n"
"OPTIONS\n"
"    --target HOST:PORT\n"
"        IPv4 address (numeric) and TCP port to flood. Required.\n"
"    --count N\n"
"        Send at most N SYNs, 1..%llu (default 1000).\n"
"    --rate R\n"
"        Send at most R SYNs per second, 1..%llu (default 1000). Sending\n"
"        that falls behind (a full socket buffer) never bursts more than\n"
"        100 ms worth of SYNs to catch up.\n"
"    --duration S\n"
"        Stop after S seconds, fractions allowed, 0.001..%.0f (default 10).\n"
"    --source LIST\n"
"        Source addresses: comma-separated addresses or ranges A-B (both\n"
"        ends full addresses, A <= B), at most %u in all; every SYN takes\n"
"        one at random. Default %s.\n"
"    --source-prefix ADDR/LEN\n"
"        Every host address of this prefix (LEN %d..32) instead of --source,\n"
"        less the lab network's network and broadcast addresses and the\n"
"        target.\n"
"    --interface IF\n"
"        Leave by IF. Default: the interface whose address is in\n"
"        %s and whose subnet covers the target. IF is checked\n"
"        the same way.\n"
"    --seed X\n"
"        Seed of the sources, ports, ISNs and ids (default: from the clock;\n"
"        printed, and the same seed sends the same SYNs again).\n"
"    --mss M\n"
"        MSS option of the SYNs, 0..65535; 0 sends no option (default %u).\n"
"    --window W\n"
"        TCP window of the SYNs, 0..65535 (default %u).\n"
"    --progress\n"
"        Print SYNs sent so far on stderr every second.\n"
"    -h, --help\n"
"        This help.\n"
"\n"
"OUTPUT\n"
"    One JSON object on stdout: tool, target, interface, local_address,\n"
"    sources (how many), source_first and source_last (lowest and highest),\n"
"    seed, mss, window, the limits (count, rate_pps, duration_s), then what\n"
"    happened: sent (SYNs the kernel took), bytes (IPv4 bytes sent, %zu per\n"
"    SYN), elapsed_s, rate_achieved_pps, blocked (sendmmsg() calls refused\n"
"    with ENOBUFS or EAGAIN and retried after %d ms), stopped_by (count,\n"
"    duration, signal or error), error (the errno name, or null) and ok.\n"
"\n"
"EXIT STATUS\n"
"    0   sending stopped at --count or --duration (ok: true)\n"
"    1   interrupted by SIGINT or SIGTERM, or a send error (ok: false)\n"
"    2   usage error, or the network safety checks refused; nothing sent\n"
"\n"
"PRIVILEGES\n"
"    CAP_NET_RAW (a raw socket) and CAP_NET_ADMIN or root (SO_BINDTODEVICE\n"
"    on older kernels).\n"
"\n"
"EXAMPLE\n"
"    200,000 SYNs over ~10 s against the lab's echo service:\n"
"        scripts/lab exec build/tests/tcp/qdsynflood \\\n"
"            --target 10.213.0.101:7007 --count 200000 --rate 20000 \\\n"
"            --duration 15\n",
		PORT_MIN, DEFAULT_SOURCES, LAB_NET_TEXT, LAB_NET_TEXT, LAB_PREFIX_LEN,
		LAB_NET_TEXT, (unsigned long long)COUNT_MAX, (unsigned long long)RATE_MAX,
		DURATION_MAX_S, SOURCES_MAX, DEFAULT_SOURCES, LAB_PREFIX_LEN, LAB_NET_TEXT,
		MSS_DEFAULT, WINDOW_DEFAULT, SYN_BYTES, BLOCKED_WAIT_MS);
}

/* Parses a decimal unsigned integer in [<min>, <max>] into <out>. */
static int
parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;

	if (s == NULL || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	uint64_t v = strtoull(s, &end, 10);

	if (errno != 0 || *end != '\0')
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

/* Parses a numeric IPv4 address into <out> (host order). */
static int
parse_ip(const char *s, uint32_t *out)
{
	struct in_addr a;

	if (inet_pton(AF_INET, s, &a) != 1)
		return -EINVAL;
	*out = ntohl(a.s_addr);
	return 0;
}

/* Refuses <ip> unless it is a host address of the lab network; <what> names it. */
static int
check_lab(const char *what, uint32_t ip)
{
	char buf[INET_ADDRSTRLEN];

	if (lab_host(ip))
		return 0;
	fprintf(stderr,
		"qdsynflood: %s %s is %s the lab network %s: refused (qdsynflood sends only "
		"inside the namespaces scripts/lab creates)\n", what, ip_text(ip, buf, sizeof(buf)),
		in_lab(ip) ? "the network or broadcast address of" : "outside", LAB_NET_TEXT);
	return -EPERM;
}

static int
parse_target(struct opts *o, const char *arg)
{
	char host[INET_ADDRSTRLEN];
	const char *colon = strrchr(arg, ':');
	uint64_t port;

	if (colon == NULL || (size_t)(colon - arg) >= sizeof(host))
		return -EINVAL;
	memcpy(host, arg, (size_t)(colon - arg));
	host[colon - arg] = '\0';
	if (parse_ip(host, &o->target_ip) != 0 || parse_u64(colon + 1, 1, 65535, &port) != 0)
		return -EINVAL;
	o->target_port = (uint16_t)port;
	return check_lab("target", o->target_ip);
}

/* Appends the addresses <lo>..<hi> to the sources of <o>, each checked. */
static int
add_range(struct opts *o, uint32_t lo, uint32_t hi)
{
	int err;

	if ((err = check_lab("source", lo)) != 0 || (err = check_lab("source", hi)) != 0)
		return err;
	if (lo > hi) {
		fprintf(stderr, "qdsynflood: --source: a range runs from low to high\n");
		return -EINVAL;
	}
	if (hi - lo + 1 > SOURCES_MAX - o->sources_n) {
		fprintf(stderr, "qdsynflood: --source: more than %u addresses\n", SOURCES_MAX);
		return -E2BIG;
	}
	for (uint32_t ip = lo;; ip++) {
		o->sources[o->sources_n++] = ip;
		if (ip == hi)
			break;
	}
	return 0;
}

/* Parses "A,B-C,..." into the sources of <o>. */
static int
parse_sources(struct opts *o, const char *list)
{
	char buf[LIST_TEXT_MAX];
	char *save = NULL, *tok;
	int err;

	if (strlen(list) >= sizeof(buf))
		return -E2BIG;
	strcpy(buf, list);
	o->sources_n = 0;
	for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		char *dash = strchr(tok, '-');
		uint32_t lo, hi;

		if (dash != NULL)
			*dash = '\0';
		if (parse_ip(tok, &lo) != 0 || parse_ip(dash != NULL ? dash + 1 : tok, &hi) != 0) {
			fprintf(stderr, "qdsynflood: --source: '%s%s%s' is not an IPv4 address or "
				"range A-B\n", tok, dash != NULL ? "-" : "", dash != NULL ? dash + 1 : "");
			return -EINVAL;
		}
		if ((err = add_range(o, lo, hi)) != 0)
			return err;
	}
	return o->sources_n == 0 ? -EINVAL : 0;
}

/* Parses "ADDR/LEN" into the sources of <o>: its host addresses of the lab. */
static int
parse_prefix(struct opts *o, const char *arg)
{
	char host[INET_ADDRSTRLEN];
	const char *slash = strchr(arg, '/');
	uint64_t len;
	uint32_t base;

	if (slash == NULL || (size_t)(slash - arg) >= sizeof(host))
		return -EINVAL;
	memcpy(host, arg, (size_t)(slash - arg));
	host[slash - arg] = '\0';
	if (parse_ip(host, &base) != 0 || parse_u64(slash + 1, 0, 32, &len) != 0)
		return -EINVAL;
	uint32_t mask = len == 0 ? 0 : ~0u << (32 - len);

	if (len < LAB_PREFIX_LEN || !in_lab(base)) {
		fprintf(stderr, "qdsynflood: --source-prefix %s is not inside the lab network %s: "
			"refused (qdsynflood sends only inside the namespaces scripts/lab "
			"creates)\n", arg, LAB_NET_TEXT);
		return -EPERM;
	}
	base &= mask;
	o->sources_n = 0;
	for (uint32_t ip = base;; ip++) {
		if (lab_host(ip))
			o->sources[o->sources_n++] = ip;
		if (ip == (base | ~mask))
			break;
	}
	if (o->sources_n == 0) {
		fprintf(stderr, "qdsynflood: --source-prefix %s holds no host address\n", arg);
		return -EINVAL;
	}
	return 0;
}

enum {
	OPT_TARGET = 256,
	OPT_COUNT,
	OPT_RATE,
	OPT_DURATION,
	OPT_SOURCE,
	OPT_SOURCE_PREFIX,
	OPT_INTERFACE,
	OPT_SEED,
	OPT_MSS,
	OPT_WINDOW,
	OPT_PROGRESS,
};

static const struct option long_opts[] = {
	{ "target", required_argument, NULL, OPT_TARGET },
	{ "count", required_argument, NULL, OPT_COUNT },
	{ "rate", required_argument, NULL, OPT_RATE },
	{ "duration", required_argument, NULL, OPT_DURATION },
	{ "source", required_argument, NULL, OPT_SOURCE },
	{ "source-prefix", required_argument, NULL, OPT_SOURCE_PREFIX },
	{ "interface", required_argument, NULL, OPT_INTERFACE },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "mss", required_argument, NULL, OPT_MSS },
	{ "window", required_argument, NULL, OPT_WINDOW },
	{ "progress", no_argument, NULL, OPT_PROGRESS },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Applies option <c> with argument <arg>. -EINVAL or -EPERM after printing why. */
static int
apply_opt(struct opts *o, int c, const char *arg)
{
	uint64_t v;
	int err;

	switch (c) {
	case OPT_TARGET:
		if ((err = parse_target(o, arg)) == -EPERM)
			return err;
		return err == 0 ? 0 : qd_tool_bad_value("target", arg, "A.B.C.D:PORT, port 1..65535");
	case OPT_COUNT:
		if (parse_u64(arg, 1, COUNT_MAX, &o->count) != 0)
			return qd_tool_bad_value("count", arg, "1..100000000");
		return 0;
	case OPT_RATE:
		if (parse_u64(arg, 1, RATE_MAX, &o->rate) != 0)
			return qd_tool_bad_value("rate", arg, "SYNs per second, 1..1000000");
		return 0;
	case OPT_DURATION: {
		char *end;
		double s = strtod(arg, &end);

		if (end == arg || *end != '\0' || !(s >= 0.001) || s > DURATION_MAX_S)
			return qd_tool_bad_value("duration", arg, "seconds, 0.001..3600");
		o->duration_ns = (uint64_t)(s * (double)NS_PER_S);
		return 0;
	}
	case OPT_SOURCE:
	case OPT_SOURCE_PREFIX:
		if (o->sources_set) {
			fprintf(stderr, "qdsynflood: give --source or --source-prefix once\n");
			return -EINVAL;
		}
		o->sources_set = true;
		err = c == OPT_SOURCE ? parse_sources(o, arg) : parse_prefix(o, arg);
		if (err == -EPERM)
			return err;
		return err == 0 ? 0 : qd_tool_bad_value(c == OPT_SOURCE ? "source" : "source-prefix", arg,
						c == OPT_SOURCE ? "addresses or ranges A-B of the lab"
								: "ADDR/LEN inside the lab");
	case OPT_INTERFACE:
		if (strlen(arg) == 0 || strlen(arg) >= sizeof(o->ifname))
			return qd_tool_bad_value("interface", arg, "an interface name");
		strcpy(o->ifname, arg);
		return 0;
	case OPT_SEED:
		if (parse_u64(arg, 0, UINT64_MAX, &o->seed) != 0)
			return qd_tool_bad_value("seed", arg, "an unsigned 64-bit integer");
		o->seed_set = true;
		return 0;
	case OPT_MSS:
	case OPT_WINDOW:
		if (parse_u64(arg, 0, 65535, &v) != 0)
			return qd_tool_bad_value(c == OPT_MSS ? "mss" : "window", arg, "0..65535");
		*(c == OPT_MSS ? &o->mss : &o->window) = (uint16_t)v;
		return 0;
	case OPT_PROGRESS:
		o->progress = true;
		return 0;
	default:
		return -EINVAL;
	}
}

/* Fills <o> from the command line. Returns 0, 1 after --help, or a negative errno. */
static int
parse_args(struct opts *o, int argc, char **argv)
{
	int c, err;

	*o = (struct opts){
		.count = 1000,
		.rate = 1000,
		.duration_ns = 10 * NS_PER_S,
		.mss = MSS_DEFAULT,
		.window = WINDOW_DEFAULT,
	};
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			return 1;
		}
		if (c == '?') {
			fprintf(stderr, "qdsynflood: see qdsynflood --help\n");
			return -EINVAL;
		}
		if ((err = apply_opt(o, c, optarg)) != 0)
			return err;
	}
	if (optind < argc) {
		fprintf(stderr, "qdsynflood: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (o->target_ip == 0) {
		fprintf(stderr, "qdsynflood: --target HOST:PORT is required\n");
		return -EINVAL;
	}
	if (!o->sources_set && (err = parse_sources(o, DEFAULT_SOURCES)) != 0)
		return err;
	for (unsigned int i = 0; i < o->sources_n; i++) {
		if (o->sources[i] == o->target_ip) {
			fprintf(stderr, "qdsynflood: a source equals the target: refused\n");
			return -EINVAL;
		}
	}
	if (!o->seed_set)
		o->seed = qd_tool_now_ns() ^ ((uint64_t)getpid() << 32);
	return 0;
}

/* ---- set-up ----------------------------------------------------------------- */

/* Finds in <eg> the interface the SYNs may leave by: an IPv4 address and subnet
 * inside the lab network, covering the target (and named --interface if given).
 * -ENETUNREACH after printing why when there is none. */
static int
find_egress(const struct opts *o, struct egress *eg)
{
	struct ifaddrs *list, *ifa;
	char buf[INET_ADDRSTRLEN];
	bool found = false;

	if (getifaddrs(&list) != 0) {
		perror("qdsynflood: getifaddrs");
		return -errno;
	}
	for (ifa = list; ifa != NULL && !found; ifa = ifa->ifa_next) {
		if (ifa->ifa_addr == NULL || ifa->ifa_addr->sa_family != AF_INET ||
		    ifa->ifa_netmask == NULL || (ifa->ifa_flags & IFF_UP) == 0)
			continue;
		if (o->ifname[0] != '\0' && strcmp(o->ifname, ifa->ifa_name) != 0)
			continue;
		uint32_t addr = ntohl(((struct sockaddr_in *)ifa->ifa_addr)->sin_addr.s_addr);
		uint32_t mask = ntohl(((struct sockaddr_in *)ifa->ifa_netmask)->sin_addr.s_addr);

		/* The subnet lies inside the lab network and holds the target. */
		if (!lab_host(addr) || (mask & LAB_MASK) != LAB_MASK ||
		    (addr & mask) != (o->target_ip & mask))
			continue;
		snprintf(eg->ifname, sizeof(eg->ifname), "%s", ifa->ifa_name);
		eg->addr = addr;
		eg->mask = mask;
		found = true;
	}
	freeifaddrs(list);
	if (!found) {
		fprintf(stderr,
			"qdsynflood: no interface%s%s has an address in the lab network %s on the "
			"subnet of the target %s: refused (run it in the lab's client namespace: "
			"scripts/lab exec qdsynflood ...)\n", o->ifname[0] != '\0' ? " " : "",
			o->ifname, LAB_NET_TEXT, ip_text(o->target_ip, buf, sizeof(buf)));
		return -ENETUNREACH;
	}
	for (unsigned int i = 0; i < o->sources_n; i++) {
		if ((o->sources[i] & eg->mask) == (eg->addr & eg->mask))
			continue;
		fprintf(stderr, "qdsynflood: source %s is outside the subnet of %s: refused\n",
			ip_text(o->sources[i], buf, sizeof(buf)), eg->ifname);
		return -EPERM;
	}
	return 0;
}

/* A raw socket bound to <eg>: the SYNs leave by it or not at all. */
static int
open_socket(const struct egress *eg)
{
	int one = 1, sndbuf = (int)SNDBUF_BYTES;
	int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_TCP);

	if (fd < 0) {
		fprintf(stderr, "qdsynflood: raw socket: %s (needs CAP_NET_RAW: run as root)\n",
			strerror(errno));
		return -1;
	}
	if (setsockopt(fd, IPPROTO_IP, IP_HDRINCL, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, eg->ifname,
		       (socklen_t)strlen(eg->ifname) + 1) != 0) {
		fprintf(stderr, "qdsynflood: IP_HDRINCL or SO_BINDTODEVICE %s: %s\n", eg->ifname,
			strerror(errno));
		close(fd);
		return -1;
	}
	/* Best effort: a deeper buffer means fewer ENOBUFS at high rates. */
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	return fd;
}

static void
install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = qd_tool_on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* ---- sending ------------------------------------------------------------------ */

struct batch {
	struct syn syns[BATCH_MAX];
	struct iovec iov[BATCH_MAX];
	struct mmsghdr msgs[BATCH_MAX];
	struct sockaddr_in dst;
};

static void
batch_init(struct batch *b, const struct opts *o)
{
	memset(b, 0, sizeof(*b));
	b->dst.sin_family = AF_INET;
	b->dst.sin_addr.s_addr = htonl(o->target_ip);
	for (unsigned int i = 0; i < BATCH_MAX; i++) {
		b->iov[i].iov_base = &b->syns[i];
		b->msgs[i].msg_hdr.msg_iov = &b->iov[i];
		b->msgs[i].msg_hdr.msg_iovlen = 1;
		b->msgs[i].msg_hdr.msg_name = &b->dst;
		b->msgs[i].msg_hdr.msg_namelen = sizeof(b->dst);
	}
}

/* Builds SYNs [from, n) of <b> with fresh random fields from <rng>. */
static void
batch_fill(struct batch *b, const struct opts *o, uint64_t *rng, unsigned int from,
	   unsigned int n)
{
	assert(from <= n && n <= BATCH_MAX && o->sources_n > 0);
	for (unsigned int i = from; i < n; i++) {
		uint64_t r1 = rand64(rng), r2 = rand64(rng);
		uint32_t src = o->sources[(uint32_t)r1 % o->sources_n];
		uint16_t sport = (uint16_t)(PORT_MIN + (uint32_t)(r1 >> 32) % (65536u - PORT_MIN));

		syn_build(&b->syns[i], o, src, sport, (uint32_t)r2, (uint16_t)(r2 >> 32));
		b->iov[i].iov_len = ntohs(b->syns[i].ip.tot_len);
	}
}

/* Sleeps until <until_ns> (CLOCK_MONOTONIC), or less when a signal comes. */
static void
sleep_until(uint64_t until_ns)
{
	struct timespec ts = {
		.tv_sec = (time_t)(until_ns / NS_PER_S),
		.tv_nsec = (long)(until_ns % NS_PER_S),
	};

	clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

/* Sends SYNs on <fd> until --count, --duration, a signal or an error. */
static void
flood(int fd, const struct opts *o, struct batch *b, struct result *res)
{
	uint64_t rng = o->seed, interval_ns = (NS_PER_S + o->rate - 1) / o->rate;
	uint64_t start = qd_tool_now_ns(), end = start + o->duration_ns, next_ns = start;
	uint64_t progress_ns = start + NS_PER_S;
	unsigned int built = 0; /* SYNs of <b> built and not yet sent */

	res->stop = STOP_COUNT;
	while (res->sent < o->count) {
		uint64_t now = qd_tool_now_ns();

		if (qd_tool_stop_signal != 0 || now >= end) {
			res->stop = qd_tool_stop_signal != 0 ? STOP_SIGNAL : STOP_DURATION;
			break;
		}
		if (o->progress && now >= progress_ns) {
			fprintf(stderr, "qdsynflood: %.1fs sent %" PRIu64 "\n",
				(double)(now - start) / (double)NS_PER_S, res->sent);
			progress_ns += NS_PER_S;
		}
		if (now < next_ns) {
			sleep_until(next_ns < end ? next_ns : end);
			continue;
		}
		uint64_t due = 1 + (now - next_ns) / interval_ns;
		uint64_t left = o->count - res->sent;
		unsigned int n = (unsigned int)(due < BATCH_MAX ? due : BATCH_MAX);

		if (n > left)
			n = (unsigned int)left;
		if (built < n) {
			batch_fill(b, o, &rng, built, n);
			built = n;
		}
		int sent = sendmmsg(fd, b->msgs, n, 0);

		if (sent < 0) {
			if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR) {
				res->blocked += errno != EINTR;
				poll(NULL, 0, BLOCKED_WAIT_MS);
				continue;
			}
			res->stop = STOP_ERROR;
			res->err = errno;
			break;
		}
		/* Unsent SYNs move to the front of the batch and go next time. */
		memmove(&b->syns[0], &b->syns[sent], (built - (unsigned int)sent) * sizeof(b->syns[0]));
		for (unsigned int i = 0; i < built - (unsigned int)sent; i++)
			b->iov[i].iov_len = ntohs(b->syns[i].ip.tot_len);
		built -= (unsigned int)sent;
		res->sent += (uint64_t)sent;
		next_ns += (uint64_t)sent * interval_ns;
		if (next_ns + CATCH_UP_NS < now)
			next_ns = now;
	}
	res->elapsed_ns = qd_tool_now_ns() - start;
}

/* ---- report ------------------------------------------------------------------ */

static void
report(const struct opts *o, const struct egress *eg, const struct result *res)
{
	char a[INET_ADDRSTRLEN], lo[INET_ADDRSTRLEN], hi[INET_ADDRSTRLEN], local[INET_ADDRSTRLEN];
	uint32_t min = UINT32_MAX, max = 0;
	double secs = (double)res->elapsed_ns / (double)NS_PER_S;
	bool ok = res->stop == STOP_COUNT || res->stop == STOP_DURATION;

	for (unsigned int i = 0; i < o->sources_n; i++) {
		min = o->sources[i] < min ? o->sources[i] : min;
		max = o->sources[i] > max ? o->sources[i] : max;
	}
	printf("{\"tool\":\"qdsynflood\",\"target\":\"%s:%u\",\"interface\":\"%s\","
	       "\"local_address\":\"%s\",\"sources\":%u,\"source_first\":\"%s\","
	       "\"source_last\":\"%s\",\"seed\":%" PRIu64 ",\"mss\":%u,\"window\":%u,"
	       "\"count\":%" PRIu64 ",\"rate_pps\":%" PRIu64 ",\"duration_s\":%.3f,"
	       "\"sent\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"elapsed_s\":%.3f,"
	       "\"rate_achieved_pps\":%.0f,\"blocked\":%" PRIu64 ",\"stopped_by\":\"%s\","
	       "\"error\":", ip_text(o->target_ip, a, sizeof(a)), o->target_port, eg->ifname,
	       ip_text(eg->addr, local, sizeof(local)), o->sources_n, ip_text(min, lo, sizeof(lo)),
	       ip_text(max, hi, sizeof(hi)), o->seed, o->mss, o->window, o->count, o->rate,
	       (double)o->duration_ns / (double)NS_PER_S, res->sent,
	       res->sent * (sizeof(struct iphdr) + sizeof(struct tcphdr) +
			    (o->mss != 0 ? OPT_BYTES : 0)),
	       secs, secs > 0 ? (double)res->sent / secs : 0.0, res->blocked,
	       stop_names[res->stop]);
	if (res->stop == STOP_ERROR)
		printf("\"%s\"", strerrorname_np(res->err) != NULL ? strerrorname_np(res->err) : "?");
	else
		fputs("null", stdout);
	printf(",\"ok\":%s}\n", ok ? "true" : "false");
	if (res->stop == STOP_ERROR)
		fprintf(stderr, "qdsynflood: sendmmsg: %s\n", strerror(res->err));
}

int
main(int argc, char **argv)
{
	static struct batch batch;
	struct opts o;
	struct egress eg;
	struct result res = {0};
	int rc = parse_args(&o, argc, argv);

	if (rc != 0)
		return rc > 0 ? 0 : 2;
	if (find_egress(&o, &eg) != 0)
		return 2;
	int fd = open_socket(&eg);

	if (fd < 0)
		return 2;
	install_signals();
	batch_init(&batch, &o);
	flood(fd, &o, &batch, &res);
	close(fd);
	report(&o, &eg, &res);
	return res.stop == STOP_COUNT || res.stop == STOP_DURATION ? 0 : 1;
}
