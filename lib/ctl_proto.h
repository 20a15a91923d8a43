/*
 * The control protocol between qdctl (and any other client) and qdispatchd.
 *
 * A client connects to the daemon's UNIX stream socket, writes one request
 * as a single line of JSON, reads one reply line, and the daemon closes the
 * connection. Request: {"v": 1, "cmd": "<name>", "args": {...}}. Reply:
 * {"v": 1, "ok": true, "data": {...}} or {"v": 1, "ok": false,
 * "error": "<message>"}. New commands and new fields may appear in later
 * versions; a field never changes meaning within a version.
 */
#ifndef QD_CTL_PROTO_H
#define QD_CTL_PROTO_H

#define QD_CTL_PROTO_VERSION 1
#define QD_CTL_REQUEST_MAX 4096          /* bytes, newline included */
#define QD_CTL_REPLY_MAX (16u << 20)     /* bytes */
#define QD_CTL_CMD_MAX 32                /* bytes of a command name */
#define QD_CTL_TIMEOUT_MS 2000           /* a client must finish its request within this */

#endif /* QD_CTL_PROTO_H */
