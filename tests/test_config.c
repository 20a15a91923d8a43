/* Config parser: good files load with the right values, every kind of bad line is refused
 * with "origin:line: reason". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define BASE "port.device = net_af_packet0,iface=qd-p1\nport.ip = 10.213.0.11/24\n" \
	     "vip = 10.213.0.101\n"

static int
parse(struct qd_config *cfg, const char *text, char *err, size_t err_len)
{
	qd_config_defaults(cfg);
	return qd_config_parse(cfg, "t.conf", text, strlen(text), err, err_len);
}

static void
expect_error(const char *text, const char *needle)
{
	struct qd_config cfg;
	char err[QD_CONFIG_ERR_MAX];
	assert_int_not_equal(parse(&cfg, text, err, sizeof(err)), 0);
	if (strstr(err, needle) == NULL)
		fail_msg("error '%s' does not contain '%s'", err, needle);
}

static void
test_minimal_defaults(void **state)
{
	(void)state;
	struct qd_config cfg;
	char err[QD_CONFIG_ERR_MAX];
	assert_int_equal(parse(&cfg, BASE, err, sizeof(err)), 0);
	assert_string_equal(cfg.port_device, "net_af_packet0,iface=qd-p1");
	assert_int_equal(cfg.port_ip.addr_be, inet_addr("10.213.0.11"));
	assert_int_equal(cfg.port_ip.prefix_len, 24);
	assert_int_equal(cfg.vips_count, 1);
	assert_int_equal(cfg.vips_be[0], inet_addr("10.213.0.101"));
	assert_true(cfg.vip_claim_at_start);
	assert_int_equal(cfg.listen_port, 8080);
	assert_int_equal(cfg.workers, 1);
	assert_true(cfg.idle);
	assert_int_equal(cfg.hugepages, QD_HUGEPAGES_AUTO);
	assert_int_equal(cfg.control_mode, 0600);
	assert_string_equal(cfg.control_socket, "/run/qdispatch/qdispatchd.sock");
}

static void
test_full_file(void **state)
{
	(void)state;
	const char *text = "# a full file\n"
			   BASE
			   "vip = 10.213.0.102   # second\n"
			   "\n"
			   "  listen.port=9090\r\n"
			   "coordinator = 10.213.0.201:8080\n"
			   "coordinator = 10.213.0.202:8081\n"
			   "lcore.workers = 2\n"
			   "lcore.list = 0-2\n"
			   "lcore.idle = off\n"
			   "lcore.idle_after_us = 50\n"
			   "lcore.idle_sleep_max_us = 500\n"
			   "lcore.burst = 16\n"
			   "eal.hugepages = off\n"
			   "eal.memory_mb = 512\n"
			   "eal.mbufs = 8191\n"
			   "neigh.capacity = 256\n"
			   "neigh.reachable_s = 60\n"
			   "neigh.retry_ms = 200\n"
			   "neigh.probes = 5\n"
			   "garp.interval_s = 0\n"
			   "port.gateway = 10.213.0.1\n"
			   "port.mtu = 9000\n"
			   "port.rx_desc = 512\n"
			   "port.tx_desc = 512\n"
			   "control.socket = /tmp/x.sock\n"
			   "control.mode = 0660\n"
			   "control.group = qdadmin\n"
			   "control.clients_max = 4\n"
			   "log.level = debug";
	struct qd_config cfg;
	char err[QD_CONFIG_ERR_MAX];
	int rc = parse(&cfg, text, err, sizeof(err));
	if (rc != 0)
		fail_msg("%s", err);
	assert_int_equal(cfg.vips_count, 2);
	assert_int_equal(cfg.listen_port, 9090);
	assert_int_equal(cfg.coordinators_count, 2);
	assert_int_equal(cfg.coordinators[1].addr_be, inet_addr("10.213.0.202"));
	assert_int_equal(cfg.coordinators[1].port, 8081);
	assert_int_equal(cfg.workers, 2);
	assert_string_equal(cfg.lcore_list, "0-2");
	assert_false(cfg.idle);
	assert_int_equal(cfg.idle_after_us, 50);
	assert_int_equal(cfg.idle_sleep_max_us, 500);
	assert_int_equal(cfg.burst, 16);
	assert_int_equal(cfg.hugepages, QD_HUGEPAGES_OFF);
	assert_int_equal(cfg.memory_mb, 512);
	assert_int_equal(cfg.mbufs, 8191);
	assert_int_equal(cfg.neigh_capacity, 256);
	assert_int_equal(cfg.neigh_reachable_s, 60);
	assert_int_equal(cfg.neigh_retry_ms, 200);
	assert_int_equal(cfg.neigh_probes, 5);
	assert_int_equal(cfg.garp_interval_s, 0);
	assert_int_equal(cfg.port_gateway_be, inet_addr("10.213.0.1"));
	assert_int_equal(cfg.port_mtu, 9000);
	assert_string_equal(cfg.control_socket, "/tmp/x.sock");
	assert_int_equal(cfg.control_mode, 0660);
	assert_string_equal(cfg.control_group, "qdadmin");
	assert_int_equal(cfg.control_clients_max, 4);
	assert_int_equal(cfg.log_level, 8);
	assert_string_equal(qd_config_log_level_name(cfg.log_level), "debug");
}

static void
test_bad_lines(void **state)
{
	(void)state;
	expect_error(BASE "bogus.key = 1\n", "t.conf:4: unknown key 'bogus.key'");
	expect_error(BASE "listen.port\n", "t.conf:4: expected 'key = value'");
	expect_error(BASE "= 3\n", "t.conf:4: missing key");
	expect_error(BASE "listen.port =\n", "t.conf:4: listen.port: missing value");
	expect_error(BASE "listen.port = 0\n", "t.conf:4: listen.port: 0 is out of range");
	expect_error(BASE "listen.port = 70000\n", "out of range");
	expect_error(BASE "listen.port = -1\n", "is not a number");
	expect_error(BASE "listen.port = 80x\n", "is not a number");
	expect_error(BASE "listen.port = 99999999999999999999999\n", "is not a number");
	expect_error(BASE "listen.port = 80\nlisten.port = 81\n", "t.conf:5: listen.port: set twice");
	expect_error(BASE "vip = 10.213.0.101\n", "t.conf:4: vip: 10.213.0.101 is listed twice");
	expect_error(BASE "vip = 10.213.0.300\n", "not an IPv4 address");
	expect_error(BASE "vip = 224.0.0.1\n", "not a unicast address");
	expect_error(BASE "vip = 0.0.0.0\n", "not a unicast address");
	expect_error(BASE "coordinator = 10.0.0.1\n", "must be address:port");
	expect_error(BASE "coordinator = 10.0.0.1:0\n", "out of range");
	expect_error(BASE "coordinator = 10.0.0.1:80\ncoordinator = 10.0.0.1:80\n", "listed twice");
	expect_error(BASE "lcore.idle = maybe\n", "lcore.idle: 'maybe' is not on/off");
	expect_error(BASE "lcore.list = 0-2;rm\n", "not a cpu list");
	expect_error(BASE "lcore.workers = 0\n", "out of range");
	expect_error(BASE "eal.hugepages = sometimes\n", "not auto, on or off");
	expect_error(BASE "control.socket = relative.sock\n", "not an absolute path");
	expect_error(BASE "control.mode = 600\n", "leading 0");
	expect_error(BASE "control.mode = 0666\n", "any user write");
	expect_error(BASE "control.mode = 0999\n", "not a permission mode");
	expect_error(BASE "log.level = loud\n", "log.level: 'loud' is not one of");
	expect_error("port.ip = 10.213.0.11\n", "t.conf:1: port.ip: '10.213.0.11' needs a prefix");
	expect_error("port.ip = 10.213.0.11/33\n", "out of range");
}

static void
test_missing_and_cross_key(void **state)
{
	(void)state;
	expect_error("", "port.device is required");
	expect_error("port.device = x\nvip = 10.0.0.1\n", "t.conf:2: port.ip is required");
	expect_error("port.device = x\nport.ip = 10.0.0.2/24\n", "at least one vip");
	expect_error("port.device = x\nport.ip = 10.0.0.2/24\nvip = 10.0.0.2\n",
		     "may not equal port.ip");
	/* VIPs move by gratuitous ARP: on port.ip's link, and a usable host address. */
	expect_error("port.device = x\nport.ip = 10.0.0.2/24\nvip = 10.0.1.2\n",
		     "vip: 10.0.1.2 is outside port.ip's subnet (/24)");
	expect_error("port.device = x\nport.ip = 10.0.0.2/24\nvip = 10.0.0.255\n",
		     "network or broadcast address");
	expect_error(BASE "vip.claim_at_start = maybe\n", "vip.claim_at_start: 'maybe' is not on/off");
	struct qd_config cfg;
	char err[QD_CONFIG_ERR_MAX];
	assert_int_equal(parse(&cfg, BASE "vip.claim_at_start = no\n", err, sizeof(err)), 0);
	assert_false(cfg.vip_claim_at_start);
	expect_error(BASE "neigh.capacity = 100\n", "power of two");
	expect_error(BASE "eal.mbufs = 1000\n", "eal.mbufs (1000) is below");
	expect_error(BASE "eal.mbufs = 65535\neal.memory_mb = 64\n", "eal.memory_mb (64) is too small");
}

static void
test_line_limits(void **state)
{
	(void)state;
	char big[QD_CONFIG_LINE_MAX + 64];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	expect_error(big, "t.conf:1: line longer than");
	char text[64] = "port.device = a";
	text[15] = '\0';
	struct qd_config cfg;
	char err[QD_CONFIG_ERR_MAX];
	qd_config_defaults(&cfg);
	/* An embedded NUL must not truncate the line silently. */
	assert_int_not_equal(qd_config_parse(&cfg, "t.conf", text, 20, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "NUL byte"));
}

static void
test_auto_mbufs_and_lcore_map(void **state)
{
	(void)state;
	struct qd_config cfg;
	char err[QD_CONFIG_ERR_MAX];
	assert_int_equal(parse(&cfg, BASE "lcore.workers = 4\nlcore.list = 0@0,(1-4)@1\n", err,
			       sizeof(err)), 0);
	/* 4 x (1024 + 1024 + 512) = 10240 -> 16383, and memory follows. */
	assert_int_equal(cfg.mbufs, 16383);
	assert_string_equal(cfg.lcore_list, "0@0,(1-4)@1");
	assert_int_equal(parse(&cfg, BASE, err, sizeof(err)), 0);
	assert_int_equal(cfg.mbufs, 4095);
	expect_error(BASE "lcore.workers = 4\neal.memory_mb = 64\n", "eal.memory_mb (64) is too small");
}

static void
test_tcp_keys(void **state)
{
	(void)state;
	struct qd_config cfg;
	char err[QD_CONFIG_ERR_MAX];
	assert_int_equal(parse(&cfg, BASE, err, sizeof(err)), 0);
	assert_int_equal(cfg.tcp_max_connections, 16384);
	assert_true(cfg.tcp_syn_cookies);
	assert_int_equal(cfg.service_echo_port, 0);
	int rc = parse(&cfg, BASE "service.echo_port = 7007\nservice.discard_port = 7009\n"
			      "tcp.max_connections = 20000\ntcp.syn_cookies = off\n"
			      "tcp.sndbuf_bytes = 65536\ntcp.keepalive_idle_s = 60\n"
			      "tcp.local_port_min = 40000\ntcp.local_port_max = 50000\n",
		       err, sizeof(err));
	if (rc != 0)
		fail_msg("%s", err);
	assert_int_equal(cfg.service_echo_port, 7007);
	assert_int_equal(cfg.service_discard_port, 7009);
	assert_int_equal(cfg.tcp_max_connections, 20000);
	assert_false(cfg.tcp_syn_cookies);
	assert_int_equal(cfg.tcp_sndbuf, 65536);
	assert_int_equal(cfg.tcp_keepalive_idle_s, 60);
	assert_int_equal(cfg.tcp_local_port_min, 40000);
	expect_error(BASE "service.echo_port = 40000\n",
		     "service.echo_port (40000) lies inside tcp.local_port_min..max");
	expect_error(BASE "service.echo_port = 8080\n", "listen.port and service.echo_port");
	expect_error(BASE "tcp.local_port_min = 50000\ntcp.local_port_max = 40000\n", "is above");
	expect_error(BASE "tcp.sndbuf_bytes = 100\n", "out of range");
	expect_error(BASE "tcp.syn_cookies = sometimes\n", "not on/off");
}

static void
test_load_file(void **state)
{
	(void)state;
	char path[] = "/tmp/qd_config_test_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *text = BASE "lcore.idle = sideways\n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	struct qd_config cfg;
	char err[QD_CONFIG_ERR_MAX];
	qd_config_defaults(&cfg);
	assert_int_not_equal(qd_config_load(&cfg, path, err, sizeof(err)), 0);
	char want[128];
	snprintf(want, sizeof(want), "%s:4: lcore.idle", path);
	assert_non_null(strstr(err, want));
	unlink(path);
	assert_int_not_equal(qd_config_load(&cfg, path, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "cannot open"));
}

static void
test_fault_keys(void **state)
{
	(void)state;
	struct qd_config cfg;
	char err[QD_CONFIG_ERR_MAX];
	/* Off by default. */
	assert_int_equal(parse(&cfg, BASE, err, sizeof(err)), 0);
	assert_int_equal(cfg.fault_rx.loss_ppm, 0);
	assert_int_equal(cfg.fault_tx.delay_us, 0);
	assert_int_equal(cfg.fault_seed, 0);
	assert_int_equal(cfg.fault_reorder_gap, 3);
	assert_int_equal(cfg.fault_reorder_hold_us, 1000);
	const char *text = BASE
			   "fault.rx_loss_ppm = 20000\n"
			   "fault.rx_dup_ppm = 10000\n"
			   "fault.rx_reorder_ppm = 50000\n"
			   "fault.rx_delay_us = 10000\n"
			   "fault.rx_jitter_us = 0\n"
			   "fault.tx_loss_ppm = 1000000\n"
			   "fault.tx_dup_ppm = 1\n"
			   "fault.tx_reorder_ppm = 0\n"
			   "fault.tx_delay_us = 1000000\n"
			   "fault.tx_jitter_us = 500\n"
			   "fault.seed = 18446744073709551615\n"
			   "fault.reorder_gap = 64\n"
			   "fault.reorder_hold_us = 1\n";
	int rc = parse(&cfg, text, err, sizeof(err));
	if (rc != 0)
		fail_msg("%s", err);
	assert_int_equal(cfg.fault_rx.loss_ppm, 20000);
	assert_int_equal(cfg.fault_rx.dup_ppm, 10000);
	assert_int_equal(cfg.fault_rx.reorder_ppm, 50000);
	assert_int_equal(cfg.fault_rx.delay_us, 10000);
	assert_int_equal(cfg.fault_rx.jitter_us, 0);
	assert_int_equal(cfg.fault_tx.loss_ppm, 1000000);
	assert_int_equal(cfg.fault_tx.dup_ppm, 1);
	assert_int_equal(cfg.fault_tx.reorder_ppm, 0);
	assert_int_equal(cfg.fault_tx.delay_us, 1000000);
	assert_int_equal(cfg.fault_tx.jitter_us, 500);
	assert_true(cfg.fault_seed == UINT64_MAX);
	assert_int_equal(cfg.fault_reorder_gap, 64);
	assert_int_equal(cfg.fault_reorder_hold_us, 1);
	/* Both directions hold frames: 2560 + 2 x 4160 = 10880 mbufs -> 16383. */
	assert_int_equal(cfg.mbufs, 16383);
	/* One direction delays: 2560 + 4160 = 6720 -> 8191. Loss alone holds nothing. */
	assert_int_equal(parse(&cfg, BASE "fault.tx_jitter_us = 5\n", err, sizeof(err)), 0);
	assert_int_equal(cfg.mbufs, 8191);
	assert_int_equal(parse(&cfg, BASE "fault.rx_loss_ppm = 5\n", err, sizeof(err)), 0);
	assert_int_equal(cfg.mbufs, 4095);
	expect_error(BASE "fault.rx_delay_us = 10\neal.mbufs = 4095\n",
		     "eal.mbufs (4095) is below");

	expect_error(BASE "fault.rx_loss_ppm = 1000001\n",
		     "fault.rx_loss_ppm: 1000001 is out of range");
	expect_error(BASE "fault.tx_dup_ppm = 2%\n", "fault.tx_dup_ppm: '2%' is not a number");
	expect_error(BASE "fault.rx_reorder_ppm = -5\n", "is not a number");
	expect_error(BASE "fault.tx_reorder_ppm = 1000001\n", "out of range");
	expect_error(BASE "fault.rx_delay_us = 1000001\n",
		     "fault.rx_delay_us: 1000001 is out of range");
	expect_error(BASE "fault.tx_delay_us = 0.5\n", "is not a number");
	expect_error(BASE "fault.rx_jitter_us = 2000000\n", "out of range");
	expect_error(BASE "fault.tx_jitter_us = x\n", "is not a number");
	expect_error(BASE "fault.tx_loss_ppm = 1\nfault.tx_loss_ppm = 2\n",
		     "t.conf:5: fault.tx_loss_ppm: set twice");
	expect_error(BASE "fault.seed = 18446744073709551616\n",
		     "fault.seed: '18446744073709551616' is not a number");
	expect_error(BASE "fault.reorder_gap = 0\n", "fault.reorder_gap: 0 is out of range");
	expect_error(BASE "fault.reorder_gap = 65\n", "out of range");
	expect_error(BASE "fault.reorder_hold_us = 0\n",
		     "fault.reorder_hold_us: 0 is out of range");
	expect_error(BASE "fault.reorder_hold_us = 1000001\n", "out of range");
	expect_error(BASE "fault.rx_loss = 5\n", "unknown key 'fault.rx_loss'");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal_defaults),
		cmocka_unit_test(test_full_file),
		cmocka_unit_test(test_bad_lines),
		cmocka_unit_test(test_missing_and_cross_key),
		cmocka_unit_test(test_line_limits),
		cmocka_unit_test(test_auto_mbufs_and_lcore_map),
		cmocka_unit_test(test_tcp_keys),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_fault_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
