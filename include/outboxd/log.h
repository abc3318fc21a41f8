/*
 * log.h - one line per message on stderr, as text or JSON.
 *
 * Text:  2026-11-21T20:35:21.352Z LEVEL message
 * JSON:  {"ts":"...","level":"info","msg":"..."}
 * Callers never log secrets: pass connection strings through
 * obx_pg_redact_conninfo() (pg.h) first.  Not thread-safe to reconfigure;
 * logging itself may happen from any thread (librdkafka's log callback does).
 */
#ifndef OUTBOXD_LOG_H
#define OUTBOXD_LOG_H

#include <stddef.h>

typedef enum {
	OBX_LOG_DEBUG = 0,
	OBX_LOG_INFO,
	OBX_LOG_WARN,
	OBX_LOG_ERROR,
} obx_log_level_t;

typedef enum {
	OBX_LOG_TEXT = 0,
	OBX_LOG_JSON,
} obx_log_format_t;

void obx_log_setup(obx_log_level_t level, obx_log_format_t format);

void obx_log(obx_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define obx_debug(...) obx_log(OBX_LOG_DEBUG, __VA_ARGS__)
#define obx_info(...)  obx_log(OBX_LOG_INFO, __VA_ARGS__)
#define obx_warn(...)  obx_log(OBX_LOG_WARN, __VA_ARGS__)
#define obx_error(...) obx_log(OBX_LOG_ERROR, __VA_ARGS__)

#endif
