/*
 * replication.h - a logical replication connection (libpq,
 * replication=database): IDENTIFY_SYSTEM, slot creation, START_REPLICATION
 * and the non-blocking COPY BOTH stream, modelled on pg_recvlogical.c.
 *
 * Errors (see common.h): OBX_RETRY for anything a reconnect can cure
 * (connection refused or lost, server restarting, slot active for another
 * PID); OBX_BAD_DATA for a lost slot (missing when slot.create=false, or
 * invalidated), which must stop the connector with exit code 3; OBX_FATAL for
 * the rest (no wal2json, no privilege, wal_level too low).  The text is
 * available from obx_repl_error().  Single-threaded.
 */
#ifndef OUTBOXD_REPLICATION_H
#define OUTBOXD_REPLICATION_H

#include <stdbool.h>

#include "outboxd/common.h"
#include "outboxd/config.h"

typedef struct obx_repl obx_repl_t;

typedef enum {
	OBX_REPL_NONE = 0, /* nothing to read now: wait on the socket */
	OBX_REPL_DATA,	   /* XLogData: data/len hold the plugin's output */
	OBX_REPL_KEEPALIVE,
	OBX_REPL_END, /* the server ended the stream */
} obx_repl_msg_kind_t;

typedef struct {
	obx_repl_msg_kind_t kind;
	obx_lsn_t wal_start;  /* XLogData: where the message starts */
	obx_lsn_t wal_end;    /* the server's WAL end as it reports it */
	bool reply_requested; /* keepalive: answer now or be timed out */
	const char *data;     /* valid until the next obx_repl_read() */
	size_t len;
} obx_repl_msg_t;

/*
 * Connects, identifies the system and, when `may_create_slot` is set (first
 * start with slot.create), creates a missing slot.  A slot that is missing
 * otherwise was dropped while we ran: events since then are gone, so that is
 * a lost slot (OBX_BAD_DATA), never silently recreated.  Returns NULL with
 * *err and errstr on failure.
 */
obx_repl_t *obx_repl_connect(const obx_config_t *conf, bool may_create_slot,
			     obx_err_t *err, char *errstr, size_t errstr_size);

void obx_repl_destroy(obx_repl_t *repl);

/* The database the connection is on (source.db). */
const char *obx_repl_database(const obx_repl_t *repl);

/* The slot's confirmed_flush_lsn when we connected. */
obx_lsn_t obx_repl_slot_confirmed(const obx_repl_t *repl);

/*
 * Starts streaming from the slot's confirmed position (never later: a later
 * start would skip transactions Kafka never acknowledged).  `options` is the
 * plugin's option list from obx_decoder_start_options().
 */
obx_err_t obx_repl_start(obx_repl_t *repl, const char *options);

/* Reads one message without blocking. */
obx_err_t obx_repl_read(obx_repl_t *repl, obx_repl_msg_t *msg);

/* The socket to poll() for input. */
int obx_repl_socket(const obx_repl_t *repl);

/*
 * Sends a standby status update: everything up to `received` was read,
 * everything up to `flushed` may be forgotten by the server.
 */
obx_err_t obx_repl_send_status(obx_repl_t *repl, obx_lsn_t received,
			       obx_lsn_t flushed, bool reply_requested);

/* Ends the copy (CopyDone) and drains the stream to its end. */
obx_err_t obx_repl_finish(obx_repl_t *repl);

/* The last error's text. */
const char *obx_repl_error(const obx_repl_t *repl);

#endif
