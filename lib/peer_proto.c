/*
 * Peer messages on the wire (peer_proto.h): fixed little-endian layout, HMAC-SHA256 trailer
 * (OpenSSL's one-shot HMAC), constant-time MAC comparison, and the replay/staleness rule.
 * Decoding checks sizes and counts before it reads anything, so any datagram of any length
 * is safe to hand it.
 */
#include "peer_proto.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

static const char *const verdict_names[QD_PEER_VERDICTS] = {
	[QD_PEER_OK] = "ok",
	[QD_PEER_MALFORMED] = "malformed",
	[QD_PEER_BAD_MAC] = "bad_mac",
	[QD_PEER_WRONG_PEER] = "wrong_peer",
	[QD_PEER_STALE] = "stale",
	[QD_PEER_REPLAYED] = "replayed",
};

const char *
qd_peer_verdict_name(enum qd_peer_verdict v)
{
	return (unsigned int)v < QD_PEER_VERDICTS ? verdict_names[v] : "?";
}

static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void
put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void
put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t
get32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t
get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

size_t
qd_peer_msg_size(const struct qd_peer_msg *m)
{
	return QD_PEER_HEADER_BYTES + (size_t)m->groups_count * QD_PEER_GROUP_BYTES +
	       (size_t)m->coords_count * QD_PEER_COORD_BYTES +
	       (size_t)m->vips_count * QD_PEER_VIP_BYTES + QD_PEER_MAC_LEN;
}

static bool
mac(const uint8_t *key, size_t key_len, const uint8_t *data, size_t len,
    uint8_t out[QD_PEER_MAC_LEN])
{
	unsigned int olen = 0;
	if (key_len < QD_PEER_KEY_MIN || key_len > QD_PEER_KEY_MAX)
		return false;
	if (HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &olen) == NULL)
		return false;
	return olen == QD_PEER_MAC_LEN;
}

size_t
qd_peer_encode(const struct qd_peer_msg *m, const uint8_t *key, size_t key_len, uint8_t *buf,
	       size_t cap)
{
	if (m->groups_count > QD_PEER_GROUPS_MAX || m->coords_count > QD_PEER_COORDS_MAX ||
	    m->vips_count > QD_PEER_VIPS_MAX)
		return 0;
	size_t size = qd_peer_msg_size(m);
	if (cap < size)
		return 0;
	uint8_t *p = buf;
	put32(p, QD_PEER_MAGIC);
	p[4] = QD_PEER_VERSION;
	p[5] = 0;
	put16(p + 6, m->from);
	put16(p + 8, m->to);
	put16(p + 10, m->groups_count);
	put16(p + 12, m->coords_count);
	put16(p + 14, m->vips_count);
	put32(p + 16, m->flags);
	put32(p + 20, m->groups_epoch);
	put64(p + 24, m->boot);
	put64(p + 32, m->seq);
	put64(p + 40, m->sent_ms);
	put64(p + 48, m->sent_mono_us);
	put64(p + 56, m->echo_seq);
	put64(p + 64, m->echo_mono_us);
	p += QD_PEER_HEADER_BYTES;
	for (unsigned int i = 0; i < m->groups_count; i++, p += QD_PEER_GROUP_BYTES) {
		const struct qd_peer_group *g = &m->groups[i];
		put32(p, g->name_hash);
		put32(p + 4, g->limit);
		put32(p + 8, g->running);
		put32(p + 12, g->queued);
		put64(p + 16, (uint64_t)g->mem);
		put32(p + 24, g->cap);
		put32(p + 28, g->spare);
		put32(p + 32, g->grant);
		put32(p + 36, g->request);
		put32(p + 40, g->using_);
		put32(p + 44, g->flags);
	}
	for (unsigned int i = 0; i < m->coords_count; i++, p += QD_PEER_COORD_BYTES) {
		const struct qd_peer_coord *c = &m->coords[i];
		memcpy(p, &c->ip_be, 4); /* stays in network order */
		put16(p + 4, c->port);
		put16(p + 6, c->up);
		put32(p + 8, c->running);
	}
	for (unsigned int i = 0; i < m->vips_count; i++, p += QD_PEER_VIP_BYTES) {
		memcpy(p, &m->vips[i].ip_be, 4);
		put32(p + 4, m->vips[i].state);
	}
	if (!mac(key, key_len, buf, (size_t)(p - buf), p))
		return 0;
	return size;
}

enum qd_peer_verdict
qd_peer_decode(const uint8_t *buf, size_t len, const uint8_t *key, size_t key_len,
	       struct qd_peer_msg *out)
{
	if (len < QD_PEER_HEADER_BYTES + QD_PEER_MAC_LEN || get32(buf) != QD_PEER_MAGIC ||
	    buf[4] != QD_PEER_VERSION)
		return QD_PEER_MALFORMED;
	uint16_t groups = get16(buf + 10), coords = get16(buf + 12), vips = get16(buf + 14);
	if (groups > QD_PEER_GROUPS_MAX || coords > QD_PEER_COORDS_MAX || vips > QD_PEER_VIPS_MAX)
		return QD_PEER_MALFORMED;
	size_t body = QD_PEER_HEADER_BYTES + (size_t)groups * QD_PEER_GROUP_BYTES +
		      (size_t)coords * QD_PEER_COORD_BYTES + (size_t)vips * QD_PEER_VIP_BYTES;
	if (len != body + QD_PEER_MAC_LEN)
		return QD_PEER_MALFORMED;
	uint8_t want[QD_PEER_MAC_LEN];
	if (!mac(key, key_len, buf, body, want) ||
	    CRYPTO_memcmp(want, buf + body, QD_PEER_MAC_LEN) != 0)
		return QD_PEER_BAD_MAC;
	out->from = get16(buf + 6);
	out->to = get16(buf + 8);
	out->groups_count = groups;
	out->coords_count = coords;
	out->vips_count = vips;
	out->flags = get32(buf + 16);
	out->groups_epoch = get32(buf + 20);
	out->boot = get64(buf + 24);
	out->seq = get64(buf + 32);
	out->sent_ms = get64(buf + 40);
	out->sent_mono_us = get64(buf + 48);
	out->echo_seq = get64(buf + 56);
	out->echo_mono_us = get64(buf + 64);
	const uint8_t *p = buf + QD_PEER_HEADER_BYTES;
	for (unsigned int i = 0; i < groups; i++, p += QD_PEER_GROUP_BYTES) {
		struct qd_peer_group *g = &out->groups[i];
		g->name_hash = get32(p);
		g->limit = get32(p + 4);
		g->running = get32(p + 8);
		g->queued = get32(p + 12);
		g->mem = (int64_t)get64(p + 16);
		g->cap = get32(p + 24);
		g->spare = get32(p + 28);
		g->grant = get32(p + 32);
		g->request = get32(p + 36);
		g->using_ = get32(p + 40);
		g->flags = get32(p + 44);
	}
	for (unsigned int i = 0; i < coords; i++, p += QD_PEER_COORD_BYTES) {
		struct qd_peer_coord *c = &out->coords[i];
		memcpy(&c->ip_be, p, 4);
		c->port = get16(p + 4);
		c->up = get16(p + 6);
		c->running = get32(p + 8);
	}
	for (unsigned int i = 0; i < vips; i++, p += QD_PEER_VIP_BYTES) {
		memcpy(&out->vips[i].ip_be, p, 4);
		out->vips[i].state = get32(p + 4);
	}
	if (out->seq == 0 || out->boot == 0)
		return QD_PEER_MALFORMED;
	return QD_PEER_OK;
}

enum qd_peer_verdict
qd_peer_fresh(struct qd_peer_replay *r, const struct qd_peer_msg *m, uint64_t now_ms,
	      uint64_t max_skew_ms)
{
	uint64_t d = m->sent_ms > now_ms ? m->sent_ms - now_ms : now_ms - m->sent_ms;
	if (d > max_skew_ms)
		return QD_PEER_STALE;
	if (r->seen) {
		if (m->boot == r->boot) {
			if (m->seq <= r->seq)
				return QD_PEER_REPLAYED;
		} else if (m->sent_ms <= r->sent_ms) {
			/* an earlier incarnation's message, or a new boot older than what we
			 * have: nothing a live sender would send */
			return QD_PEER_REPLAYED;
		}
	}
	r->seen = true;
	r->boot = m->boot;
	r->seq = m->seq;
	r->sent_ms = m->sent_ms;
	return QD_PEER_OK;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

size_t
qd_peer_key_parse(const char *text, size_t len, uint8_t *key, char *err, size_t err_len)
{
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		len--;
	bool hex = len >= 2 * QD_PEER_KEY_MIN && len % 2 == 0 && len <= 2 * QD_PEER_KEY_MAX;
	for (size_t i = 0; hex && i < len; i++)
		hex = hexval((unsigned char)text[i]) >= 0;
	if (hex) {
		for (size_t i = 0; i < len / 2; i++)
			key[i] = (uint8_t)(hexval((unsigned char)text[2 * i]) * 16 +
					   hexval((unsigned char)text[2 * i + 1]));
		return len / 2;
	}
	if (len < QD_PEER_KEY_MIN || len > QD_PEER_KEY_MAX) {
		snprintf(err, err_len, "the key must be %d..%d bytes (or twice as many hex digits), "
			 "got %zu bytes", QD_PEER_KEY_MIN, QD_PEER_KEY_MAX, len);
		return 0;
	}
	memcpy(key, text, len);
	return len;
}
