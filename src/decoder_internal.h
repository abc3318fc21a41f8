/*
 * decoder_internal.h - what a plugin decoder provides to decoder.c.
 * Not a public header: only decoder*.c include it.
 */
#ifndef OUTBOXD_DECODER_INTERNAL_H
#define OUTBOXD_DECODER_INTERNAL_H

#include <stdio.h>

#include "outboxd/decoder.h"

typedef struct {
	const char *plugin;
	void *(*create)(const obx_config_t *conf, char *errstr,
			size_t errstr_size);
	void (*destroy)(void *state);
	obx_err_t (*start_options)(const void *state, const bool *partitioned,
				   char *buf, size_t size);
	obx_err_t (*decode)(void *state, const char *data, size_t len,
			    obx_lsn_t lsn, obx_change_t *out, char *errstr,
			    size_t errstr_size);
} obx_decoder_ops_t;

/*
 * Returns OBX_BAD_DATA from a decoder with errstr naming the plugin, the
 * message's LSN and the reason (printf arguments); `lsn`, `errstr` and
 * `errstr_size` must be in scope.
 */
#define OBX_DECODE_BAD(plugin, ...)                                            \
	do {                                                                   \
		char reason_[512];                                             \
		snprintf(reason_, sizeof(reason_), __VA_ARGS__);               \
		obx_errf(errstr, errstr_size,                                  \
			 "malformed " plugin " message at " OBX_LSN_FMT        \
			 ": %s",                                               \
			 OBX_LSN_ARGS(lsn), reason_);                          \
		return OBX_BAD_DATA;                                           \
	} while (0)

extern const obx_decoder_ops_t obx_wal2json_decoder;
extern const obx_decoder_ops_t obx_pgoutput_decoder;

/* Storage for the columns of outbox messages (decoder_message.c). */
typedef struct {
	obx_column_t *columns;
	size_t cap;
	char *arena;
	size_t arena_cap;
	char invalid[160];
} obx_message_reader_t;

void obx_message_reader_free(obx_message_reader_t *m);

/*
 * A logical decoding message at `lsn`: OBX_CHANGE_MESSAGE when its prefix is
 * conf->outbox_messages_prefix and it is transactional, else
 * OBX_CHANGE_NONE (a non-transactional one with the prefix is logged as
 * ignored).  Content that is no JSON object is a bad event, not a bad
 * stream: out->invalid says why, for errors.bad.event to handle.  The
 * caller sets out->xid.  out points into m and `content` until the next
 * call.
 */
void obx_message_decode(obx_message_reader_t *m, const obx_config_t *conf,
			const char *prefix, size_t prefix_len,
			bool transactional, const char *content, size_t len,
			obx_lsn_t lsn, obx_change_t *out);

#endif
