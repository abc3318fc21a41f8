/* log.c - stderr logging in text or JSON lines, and secret redaction. */
#include "outboxd/log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static obx_log_level_t min_level = OBX_LOG_INFO;
static obx_log_format_t log_format = OBX_LOG_TEXT;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void obx_log_setup(obx_log_level_t level, obx_log_format_t format)
{
	min_level = level;
	log_format = format;
}

static void format_timestamp(char *buf, size_t size)
{
	struct timeval tv;
	struct tm tm;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, size - n, ".%03ldZ", (long)(tv.tv_usec / 1000));
}

void obx_log(obx_log_level_t level, const char *fmt, ...)
{
	char msg[4096];
	char ts[40];
	va_list ap;

	if (level < min_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* one line per message: libpq's texts carry newlines and tabs */
	size_t len = strlen(msg);
	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
		msg[--len] = '\0';
	for (char *c = msg; *c; c++)
		if (*c == '\n' || *c == '\t' || *c == '\r')
			*c = ' ';
	format_timestamp(ts, sizeof(ts));

	if (log_format == OBX_LOG_JSON) {
		json_t *line = json_pack("{s:s, s:s, s:s}", "ts", ts, "level",
					 level_names[level], "msg", msg);
		/* invalid UTF-8 in msg makes json_pack fail: fall back to text
		 */
		char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
		json_decref(line);
		if (text) {
			fprintf(stderr, "%s\n", text);
			free(text);
			return;
		}
	}
	fprintf(stderr, "%s %s %s\n", ts, level_names[level], msg);
}
