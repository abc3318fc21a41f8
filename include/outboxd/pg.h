/*
 * pg.h - the one libpq layer (the role of PostgreSQL's streamutil.c):
 * every connection outboxd opens, what a failure means, and conninfo
 * redaction.  The replication stream (replication.c), the admin queries
 * (admin.c) and the heartbeat (heartbeat.c) all connect through here.
 *
 * Ownership: a returned PGconn belongs to the caller (PQfinish).
 * Threads: no shared state; any thread, one connection per thread.
 */
#ifndef OUTBOXD_PG_H
#define OUTBOXD_PG_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "outboxd/common.h"
#include "outboxd/config.h"

/*
 * Connects to database.url (a conninfo string or URI, libpq's environment
 * and passfile included) as `application_name` unless the URL names one;
 * `replication` opens a logical replication connection
 * (replication=database).  NULL, with libpq's reason in errstr, when it
 * fails: always worth a retry (a server starting, a network fault).
 */
PGconn *obx_pg_connect(const obx_config_t *conf, bool replication,
		       const char *application_name, char *errstr,
		       size_t errstr_size);

/* "<what>: <libpq's last message>" into errstr, without libpq's trailing
 * newline (ours are single lines); what == NULL leaves the prefix out. */
void obx_pg_error(const PGconn *conn, const char *what, char *errstr,
		  size_t errstr_size);

/*
 * What a failed command means, from its SQLSTATE and the connection's
 * status alone (message texts follow the server's lc_messages):
 * OBX_RETRY for connection trouble, a server shutting down, a busy slot or
 * too many connections; OBX_BAD_DATA for undefined_object (42704), which a
 * replication command returns only for a missing slot; OBX_FATAL for the
 * rest.
 */
obx_err_t obx_pg_classify(const PGresult *res, const PGconn *conn);

/* The SQLSTATE of a failed result, "" when there is none. */
const char *obx_pg_sqlstate(const PGresult *res);

/* The LSN in column `col` of row 0; OBX_LSN_INVALID for NULL. */
obx_lsn_t obx_pg_lsn_value(const PGresult *res, int col);

/* A replication slot as pg_replication_slots shows it. */
typedef struct {
	bool exists;
	char plugin[64];
	char database[128];
	bool active;
	int active_pid;
	obx_lsn_t confirmed_flush;
	obx_lsn_t restart_lsn;
	obx_lsn_t current_wal;	  /* pg_current_wal_lsn() */
	long long retained_bytes; /* current_wal - restart_lsn */
	char wal_status[32];	  /* reserved, extended, unreserved, lost */
} obx_slot_info_t;

/*
 * The one query of a slot, on a normal or a replication connection (the
 * simple query protocol; the name goes in as an escaped literal).
 * out->exists is false when there is no such slot; current_wal is filled
 * either way.  Errors as obx_pg_classify(), the text in errstr.
 */
obx_err_t obx_pg_slot_info(PGconn *conn, const char *slot, obx_slot_info_t *out,
			   char *errstr, size_t errstr_size);

/*
 * `conninfo` (key/value or URI form) as "key=value ..." with the value of
 * every option libpq marks secret (password, sslpassword, ...) replaced by
 * ********; "(unparsable connection string)" when libpq cannot parse it.
 */
void obx_pg_redact_conninfo(const char *conninfo, char *out, size_t out_size);

#endif
