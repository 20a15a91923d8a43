/*
 * Control commands of the TCP stack: tcp_probe starts an echo-client probe on the
 * workers (active opens to a server), tcp_probe_status reports how it went.
 */
#ifndef QD_CTL_TCP_H
#define QD_CTL_TCP_H

#include <stdint.h>

#include <jansson.h>

/* "a.b.c.d:port" (port 1..65535) into network-order address and host-order port;
 * 0 or -EINVAL. */
int qd_ctl_parse_target(const char *s, uint32_t *ip_be, uint16_t *port);

int qd_ctl_tcp_probe(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len);
int qd_ctl_tcp_probe_status(void *ctx, const json_t *args, json_t **data, char *err,
			    size_t err_len);

#endif /* QD_CTL_TCP_H */
