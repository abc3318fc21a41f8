/*
 * replication.h - a logical replication connection (libpq,
 * replication=database): IDENTIFY_SYSTEM, slot creation, START_REPLICATION
 * and the non-blocking COPY BOTH stream, modelled on pg_recvlogical.c.
 *
 * Errors (see common.h): OBX_RETRY for anything a reconnect can cure
 * (connection refused or lost, server restarting, slot active for another
 * PID); OBX_BAD_DATA for a lost slot (invalidated, or dropped while
 * streaming), which must stop the connector with exit code 3; OBX_FATAL for
 * the rest (no wal2json, no privilege, wal_level too low).  Whether a missing
 * slot may be created is not decided here (startpoint.h).  The text is
 * available from obx_repl_error().  Single-threaded.
 */
#ifndef OUTBOXD_REPLICATION_H
#define OUTBOXD_REPLICATION_H

#include <stdbool.h>
#include <stdint.h>

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

/* What IDENTIFY_SYSTEM says about the server. */
typedef struct {
	uint64_t system_id;
	uint32_t timeline;
	obx_lsn_t wal_end; /* its WAL flush position when we connected */
} obx_repl_system_t;

/*
 * Connects, identifies the system and reads the slot (which may be
 * missing).  Returns NULL with *err and errstr on failure.
 */
obx_repl_t *obx_repl_connect(const obx_config_t *conf, obx_err_t *err,
			     char *errstr, size_t errstr_size);

/* IDENTIFY_SYSTEM over a connection of its own, the slot left alone (for
 * commands that must work on a lost slot too). */
obx_err_t obx_repl_identify(const obx_config_t *conf, obx_repl_system_t *system,
			    char *database, size_t database_size, char *errstr,
			    size_t errstr_size);

/*
 * The server's current timeline's history file (TIMELINE_HISTORY): where
 * each earlier timeline ended (startpoint.h reads it).  *history is NULL on
 * timeline 1, which has none; else malloc'd, the caller frees it.
 */
obx_err_t obx_repl_timeline_history(obx_repl_t *repl, char **history);

/* Creates the missing slot (a first start: see startpoint.h). */
obx_err_t obx_repl_create_slot(obx_repl_t *repl);

void obx_repl_destroy(obx_repl_t *repl);

/* The database the connection is on (source.db). */
const char *obx_repl_database(const obx_repl_t *repl);

/* The slot's confirmed_flush_lsn when we connected (or created it). */
obx_lsn_t obx_repl_slot_confirmed(const obx_repl_t *repl);

bool obx_repl_slot_exists(const obx_repl_t *repl);

const obx_repl_system_t *obx_repl_system(const obx_repl_t *repl);

/*
 * Starts streaming at `start`, or at the slot's confirmed position when that
 * is later.  A start beyond the slot makes the server skip every transaction
 * committed before it: only for positions Kafka acknowledged on this very
 * server and timeline (startpoint.h).  `options` is the plugin's option list
 * from obx_decoder_start_options().
 */
obx_err_t obx_repl_start(obx_repl_t *repl, obx_lsn_t start,
			 const char *options);

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
