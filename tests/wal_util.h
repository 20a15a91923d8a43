/*
 * Helpers shared by the log tests: scratch directories under /tmp, copying
 * a log directory (what a crash leaves on disk is what the files hold while
 * the log is open), flipping bits, and a deterministic payload per sequence
 * number so that a recovered record can be checked byte for byte.
 */
#ifndef QD_TEST_WAL_UTIL_H
#define QD_TEST_WAL_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>

#define WT_PATH_MAX 256
#define WT_FILES_MAX 4096
#define WT_COPY_BUF 65536
#define WT_TRACKED_MAX 64
#define WT_DEPTH_MAX 2

/* Directories made by wt_mkdtemp(), removed by wt_cleanup() even after a failed assert. */
static char wt_tracked[WT_TRACKED_MAX][WT_PATH_MAX];
static unsigned int wt_ntracked;

/* Whether this kernel lets us set up an io_uring (seccomp or a sysctl may forbid it). */
static inline bool
wt_have_io_uring(void)
{
	struct io_uring ring;

	if (io_uring_queue_init(2, &ring, 0) != 0)
		return false;
	io_uring_queue_exit(&ring);
	return true;
}

/* A new empty directory under /tmp, in <path>. Returns 0 or -1. */
static inline int
wt_mkdtemp(char *path, size_t size, const char *tag)
{
	snprintf(path, size, "/tmp/qd-%s-XXXXXX", tag);
	if (mkdtemp(path) == NULL)
		return -1;
	if (wt_ntracked < WT_TRACKED_MAX)
		snprintf(wt_tracked[wt_ntracked++], WT_PATH_MAX, "%s", path);
	return 0;
}

static inline void
wt_rmdir_depth(const char *dir, int depth)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char p[WT_PATH_MAX * 4];
	int n = 0;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL && n++ < WT_FILES_MAX) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (snprintf(p, sizeof(p), "%s/%s", dir, de->d_name) >= (int)sizeof(p))
			continue;
		if (unlink(p) != 0 && depth < WT_DEPTH_MAX)
			wt_rmdir_depth(p, depth + 1);
	}
	closedir(d);
	rmdir(dir);
}

/* Delete <dir> and what it holds (files, and directories of files). */
static inline void
wt_rmdir(const char *dir)
{
	wt_rmdir_depth(dir, 0);
}

/* Remove every directory wt_mkdtemp() made. */
static inline void
wt_cleanup(void)
{
	for (unsigned int i = 0; i < wt_ntracked; i++)
		wt_rmdir(wt_tracked[i]);
	wt_ntracked = 0;
}

static inline int
wt_copy_file(const char *from, const char *to)
{
	static char buf[WT_COPY_BUF];
	int in = open(from, O_RDONLY), out;
	ssize_t n = 0;

	if (in < 0)
		return -1;
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (out < 0) {
		close(in);
		return -1;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		if (write(out, buf, (size_t)n) != n) {
			n = -1;
			break;
		}
	}
	close(in);
	close(out);
	return n < 0 ? -1 : 0;
}

/* Empty <to> and copy every regular file of <from> into it. Returns the count or -1. */
static inline int
wt_copy_dir(const char *from, const char *to)
{
	DIR *d;
	struct dirent *de;
	char a[WT_PATH_MAX * 4], b[WT_PATH_MAX * 4];
	int n = 0;

	wt_rmdir(to);
	if (mkdir(to, 0755) != 0)
		return -1;
	d = opendir(from);
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL && n < WT_FILES_MAX) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(a, sizeof(a), "%s/%s", from, de->d_name);
		snprintf(b, sizeof(b), "%s/%s", to, de->d_name);
		if (wt_copy_file(a, b) != 0) {
			closedir(d);
			return -1;
		}
		n++;
	}
	closedir(d);
	return n;
}

/* Files in <dir> whose name starts with <prefix>. */
static inline int
wt_count(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL && n < WT_FILES_MAX)
		if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
			n++;
	closedir(d);
	return n;
}

/* XOR <mask> into the byte at <off> of <path>. */
static inline int
wt_flip(const char *path, uint64_t off, uint8_t mask)
{
	int fd = open(path, O_RDWR);
	uint8_t c;
	int rc = -1;

	if (fd < 0)
		return -1;
	if (pread(fd, &c, 1, (off_t)off) == 1) {
		c ^= mask;
		rc = pwrite(fd, &c, 1, (off_t)off) == 1 ? 0 : -1;
	}
	close(fd);
	return rc;
}

/* Overwrite [<off>, end of file) of <path> with zeros, keeping the size. */
static inline int
wt_zero_from(const char *path, uint64_t off)
{
	static const char zero[4096];
	struct stat sb;
	int fd = open(path, O_RDWR);
	int rc = 0;

	if (fd < 0 || fstat(fd, &sb) != 0)
		return -1;
	while ((off_t)off < sb.st_size && rc == 0) {
		size_t n = (size_t)(sb.st_size - (off_t)off);

		if (n > sizeof(zero))
			n = sizeof(zero);
		rc = pwrite(fd, zero, n, (off_t)off) == (ssize_t)n ? 0 : -1;
		off += n;
	}
	close(fd);
	return rc;
}

/* The payload of record <seq>: 1..200 bytes that depend on <seq> alone. */
static inline uint32_t
wt_payload(uint64_t seq, uint8_t *buf)
{
	uint32_t len = 1 + (uint32_t)((seq * 37) % 200);

	for (uint32_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seq * 131 + i * 7);
	memcpy(buf, &seq, len < sizeof(seq) ? len : sizeof(seq));
	return len;
}

static inline bool
wt_payload_ok(uint64_t seq, const void *p, uint32_t len)
{
	uint8_t want[256];

	return len == wt_payload(seq, want) && memcmp(p, want, len) == 0;
}

#endif /* QD_TEST_WAL_UTIL_H */
