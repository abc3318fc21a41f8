/*
 * decoder.h - turns one replication message (the plugin's output for one
 * XLogData) into one change record.  The router and the tracker only see
 * obx_change_t, so another plugin (pgoutput) is one more decoder behind the
 * same interface.
 *
 * Both decoders produce the same changes for the same WAL: a column's value
 * is the server's text output of it (jsonb byte for byte), NULL is NULL.
 *
 * Ownership: everything an obx_change_t points to belongs to the decoder and
 * stays valid until the next obx_decoder_decode() or obx_decoder_destroy().
 * Errors: OBX_BAD_DATA for a message that cannot be parsed (the connector
 * stops without confirming it; errstr names the LSN and the reason).
 * Single-threaded.
 */
#ifndef OUTBOXD_DECODER_H
#define OUTBOXD_DECODER_H

#include <stdbool.h>

#include "outboxd/common.h"
#include "outboxd/config.h"

typedef enum {
	OBX_CHANGE_NONE = 0, /* nothing to route (e.g. a logical message) */
	OBX_CHANGE_BEGIN,
	OBX_CHANGE_INSERT,
	OBX_CHANGE_UPDATE,
	OBX_CHANGE_DELETE,
	OBX_CHANGE_TRUNCATE,
	OBX_CHANGE_COMMIT,
	/* a transactional logical decoding message with the prefix of
	 * outbox.messages.prefix: an event like an outbox INSERT */
	OBX_CHANGE_MESSAGE,
} obx_change_kind_t;

/* A column as text; value == NULL is SQL NULL. Strings are NUL-terminated. */
typedef struct {
	const char *name;
	const char *value;
	size_t value_len;
} obx_column_t;

typedef struct {
	obx_change_kind_t kind;
	int64_t xid;
	/* where the message starts in the WAL (XLogData dataStart) */
	obx_lsn_t lsn;
	/* BEGIN and COMMIT: the end of the commit record, which is the
	 * position to confirm once the transaction's events are acked */
	obx_lsn_t commit_lsn;
	/* commit time in microseconds since the Unix epoch */
	int64_t commit_time_us;
	/* row changes: the table; a message: schema "" and its prefix */
	const char *schema;
	const char *table;
	const obx_column_t *columns;
	size_t ncolumns;
	/* a message whose content is no JSON object: why (its one column,
	 * "content", holds the bytes); NULL otherwise */
	const char *invalid;
} obx_change_t;

typedef struct obx_decoder obx_decoder_t;

/* A decoder for the plugin the config selects; NULL with errstr on error. */
obx_decoder_t *obx_decoder_new(const obx_config_t *conf, char *errstr,
			       size_t errstr_size);

void obx_decoder_destroy(obx_decoder_t *dec);

/*
 * Writes the START_REPLICATION option list for this plugin, e.g.
 * ("format-version" '2', ...), into buf.  partitioned (NULL: none) has one
 * entry per conf->tables: true for a partitioned table, whose partitions
 * (also ones created later) must be streamed as well.  The decoder keeps
 * the config it was created with.  Returns OBX_CONFIG if it does not fit.
 */
obx_err_t obx_decoder_start_options(const obx_decoder_t *dec,
				    const bool *partitioned, char *buf,
				    size_t size);

/* Decodes one message that starts at WAL position `lsn`. */
obx_err_t obx_decoder_decode(obx_decoder_t *dec, const char *data, size_t len,
			     obx_lsn_t lsn, obx_change_t *out, char *errstr,
			     size_t errstr_size);

/*
 * Parses a PostgreSQL timestamptz as text ("2026-11-21 20:35:21.352341+00",
 * offsets "+05:30", "-08"), as wal2json prints it, into microseconds since
 * the Unix epoch.  Returns 0, or -1 when it is not of that form.
 */
int obx_parse_timestamptz(const char *text, size_t len, int64_t *out_us);

#endif
