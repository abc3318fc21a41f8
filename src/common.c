/* common.c - LSN parsing, clocks and error text helpers. */
#include "outboxd/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int obx_lsn_parse(const char *text, size_t len, obx_lsn_t *out)
{
	uint64_t half[2] = { 0, 0 };
	size_t digits[2] = { 0, 0 };
	int part = 0;

	for (size_t i = 0; i < len; i++) {
		if (text[i] == '/') {
			if (part == 1)
				return -1;
			part = 1;
			continue;
		}
		int v = hex_value(text[i]);
		/* each half is 32 bits: at most 8 hex digits */
		if (v < 0 || digits[part] == 8)
			return -1;
		half[part] = (half[part] << 4) | (uint64_t)v;
		digits[part]++;
	}
	if (part != 1 || digits[0] == 0 || digits[1] == 0)
		return -1;
	*out = (half[0] << 32) | half[1];
	return 0;
}

int64_t obx_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

uint64_t obx_hash_str(const char *s)
{
	/* FNV-1a: short names, no adversary (they come from our own config
	 * and the outbox rows' routing column) */
	uint64_t h = 0xcbf29ce484222325ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return h;
}

int64_t obx_wallclock_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void obx_errf(char *errstr, size_t errstr_size, const char *fmt, ...)
{
	va_list ap;

	if (!errstr || errstr_size == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errstr, errstr_size, fmt, ap);
	va_end(ap);
}

size_t obx_edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t *row = obx_xcalloc(lb + 1, sizeof(*row));

	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
			size_t best = diag + cost;
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	size_t d = row[lb];
	free(row);
	return d;
}

int obx_exit_code(obx_err_t err)
{
	switch (err) {
	case OBX_OK:
		return OBX_EXIT_CLEAN;
	case OBX_CONFIG:
		return OBX_EXIT_USAGE;
	case OBX_BAD_DATA:
		return OBX_EXIT_BAD_DATA;
	default:
		return OBX_EXIT_RUNTIME;
	}
}

void *obx_xnonnull(void *p)
{
	if (!p) {
		/* no logging module here: it may need memory itself */
		static const char msg[] = "outboxd: out of memory\n";
		if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
			/* nothing else to do */
		}
		abort();
	}
	return p;
}

void *obx_xmalloc(size_t size)
{
	return obx_xnonnull(malloc(size ? size : 1));
}

void *obx_xcalloc(size_t n, size_t size)
{
	return obx_xnonnull(calloc(n ? n : 1, size ? size : 1));
}

void *obx_xrealloc(void *ptr, size_t size)
{
	return obx_xnonnull(realloc(ptr, size ? size : 1));
}

char *obx_xstrdup(const char *s)
{
	return obx_xnonnull(strdup(s));
}

char *obx_xstrndup(const char *s, size_t n)
{
	return obx_xnonnull(strndup(s, n));
}
