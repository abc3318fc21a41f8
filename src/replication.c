/* replication.c - logical replication over libpq's COPY BOTH protocol. */
#include "outboxd/replication.h"

#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outboxd/log.h"
#include "outboxd/pg.h"

/* PostgreSQL's epoch (2000-01-01) minus Unix's, in microseconds. */
#define PG_EPOCH_OFFSET_US 946684800000000LL
/* bytea's type OID (PostgreSQL's catalog/pg_type.dat) */
#define BYTEA_OID 17

struct obx_repl {
	PGconn *conn;
	char *slot;
	char *plugin;
	obx_repl_system_t system;
	char *database;
	bool slot_exists;
	obx_lsn_t slot_confirmed;
	char *copybuf; /* PQfreemem'd at the start of each read */
	char error[1024];
};

static obx_err_t fail(obx_repl_t *r, obx_err_t err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static obx_err_t fail(obx_repl_t *r, obx_err_t err, const char *fmt, ...)
{
	char text[sizeof(r->error)];
	va_list ap;
	/* via a copy: callers often wrap the previous error ("%s", r->error) */
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	memcpy(r->error, text, sizeof(text));
	/* libpq messages end in a newline; ours are single lines */
	size_t n = strlen(r->error);
	while (n && r->error[n - 1] == '\n')
		r->error[--n] = '\0';
	return err;
}

static obx_err_t run_command(obx_repl_t *r, const char *sql,
			     ExecStatusType expect, PGresult **out)
{
	PGresult *res = PQexec(r->conn, sql);
	if (PQresultStatus(res) != expect) {
		obx_err_t err = obx_pg_classify(res, r->conn);
		fail(r, err, "%s", PQerrorMessage(r->conn));
		if (out)
			*out = res;
		else
			PQclear(res);
		return err;
	}
	if (out)
		*out = res;
	else
		PQclear(res);
	return OBX_OK;
}

static obx_err_t identify_system(obx_repl_t *r)
{
	PGresult *res = NULL;
	obx_err_t err =
	    run_command(r, "IDENTIFY_SYSTEM", PGRES_TUPLES_OK, &res);
	if (err != OBX_OK) {
		PQclear(res);
		return fail(r, err, "could not identify system: %s", r->error);
	}
	if (PQnfields(res) < 4 || PQntuples(res) != 1 ||
	    PQgetisnull(res, 0, 3)) {
		PQclear(res);
		return fail(r, OBX_FATAL,
			    "could not identify system: the connection is not "
			    "bound to a database (replication=database)");
	}
	const char *sysid = PQgetvalue(res, 0, 0);
	const char *wal = PQgetvalue(res, 0, 2);
	char *end;
	r->system.system_id = strtoull(sysid, &end, 10);
	r->system.timeline = (uint32_t)strtoul(PQgetvalue(res, 0, 1), NULL, 10);
	if (*end || !*sysid ||
	    obx_lsn_parse(wal, strlen(wal), &r->system.wal_end) != 0) {
		PQclear(res);
		return fail(r, OBX_FATAL,
			    "could not identify system: unexpected answer");
	}
	r->database = obx_xstrdup(PQgetvalue(res, 0, 3));
	PQclear(res);
	return OBX_OK;
}

/* Reads the slot's state; r->slot_exists is false when there is none. */
static obx_err_t read_slot(obx_repl_t *r)
{
	obx_slot_info_t info;
	char why[512];
	obx_err_t err =
	    obx_pg_slot_info(r->conn, r->slot, &info, why, sizeof(why));
	if (err != OBX_OK)
		return fail(r, err == OBX_BAD_DATA ? OBX_FATAL : err,
			    "could not read replication slot \"%s\": %s",
			    r->slot, why);
	r->slot_exists = info.exists;
	if (!info.exists)
		return OBX_OK;
	if (strcmp(info.database, r->database) != 0)
		return fail(r, OBX_FATAL,
			    "replication slot \"%s\" belongs to database "
			    "\"%s\", not \"%s\": use another slot.name",
			    r->slot, info.database, r->database);
	if (strcmp(info.plugin, r->plugin) != 0)
		return fail(r, OBX_FATAL,
			    "replication slot \"%s\" uses plugin \"%s\", not "
			    "\"%s\" (plugin.name): drop it or use another "
			    "slot.name",
			    r->slot, info.plugin, r->plugin);
	if (strcmp(info.wal_status, "lost") == 0)
		return fail(r, OBX_BAD_DATA,
			    "replication slot \"%s\" is lost (wal_status = "
			    "lost): the server removed WAL it still needed, so "
			    "events were skipped; recreate the slot and "
			    "reconcile the outbox",
			    r->slot);
	r->slot_confirmed = info.confirmed_flush;
	return OBX_OK;
}

obx_err_t obx_repl_timeline_history(obx_repl_t *r, char **history)
{
	*history = NULL;
	if (r->system.timeline <= 1)
		return OBX_OK;
	char sql[64];
	snprintf(sql, sizeof(sql), "TIMELINE_HISTORY %u", r->system.timeline);
	PGresult *res = NULL;
	obx_err_t err = run_command(r, sql, PGRES_TUPLES_OK, &res);
	if (err != OBX_OK) {
		PQclear(res);
		return fail(r, err,
			    "could not read the history of timeline "
			    "%u: %s",
			    r->system.timeline, r->error);
	}
	if (PQnfields(res) != 2 || PQntuples(res) != 1) {
		PQclear(res);
		return fail(r, OBX_FATAL,
			    "could not read the history of timeline %u: "
			    "unexpected answer",
			    r->system.timeline);
	}
	/* the content is bytea in the replication protocol */
	size_t size = 0;
	unsigned char *raw =
	    PQftype(res, 1) == BYTEA_OID
		? PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 1),
				  &size)
		: NULL;
	if (raw) {
		*history = obx_xstrndup((const char *)raw, size);
		PQfreemem(raw);
	} else {
		*history = obx_xstrdup(PQgetvalue(res, 0, 1));
	}
	PQclear(res);
	return OBX_OK;
}

obx_err_t obx_repl_create_slot(obx_repl_t *r)
{
	char sql[256];
	snprintf(sql, sizeof(sql),
		 "CREATE_REPLICATION_SLOT \"%s\" LOGICAL \"%s\" "
		 "NOEXPORT_SNAPSHOT",
		 r->slot, r->plugin);
	PGresult *res = NULL;
	obx_err_t err = run_command(r, sql, PGRES_TUPLES_OK, &res);
	if (err != OBX_OK) {
		bool raced = strcmp(obx_pg_sqlstate(res), "42710") == 0;
		PQclear(res);
		if (raced) /* another process created it meanwhile */
			return read_slot(r);
		return fail(r, err,
			    "could not create replication slot \"%s\": %s",
			    r->slot, r->error);
	}
	const char *lsn = PQgetvalue(res, 0, 1);
	obx_lsn_parse(lsn, strlen(lsn), &r->slot_confirmed);
	r->slot_exists = true;
	obx_info("created replication slot \"%s\" (plugin %s) at " OBX_LSN_FMT,
		 r->slot, r->plugin, OBX_LSN_ARGS(r->slot_confirmed));
	PQclear(res);
	return OBX_OK;
}

/* Connects and identifies the system; the slot is not read yet. */
static obx_repl_t *open_identified(const obx_config_t *conf, obx_err_t *err,
				   char *errstr, size_t errstr_size)
{
	PGconn *conn =
	    obx_pg_connect(conf, true, "outboxd", errstr, errstr_size);
	if (!conn) {
		*err = OBX_RETRY;
		return NULL;
	}
	obx_repl_t *r = obx_xcalloc(1, sizeof(*r));
	r->conn = conn;
	r->slot = obx_xstrdup(conf->slot_name);
	r->plugin = obx_xstrdup(obx_config_plugin(conf));
	if ((*err = identify_system(r)) != OBX_OK) {
		obx_errf(errstr, errstr_size, "%s", r->error);
		obx_repl_destroy(r);
		return NULL;
	}
	return r;
}

obx_repl_t *obx_repl_connect(const obx_config_t *conf, obx_err_t *err,
			     char *errstr, size_t errstr_size)
{
	obx_repl_t *r = open_identified(conf, err, errstr, errstr_size);
	if (r && (*err = read_slot(r)) != OBX_OK) {
		obx_errf(errstr, errstr_size, "%s", r->error);
		obx_repl_destroy(r);
		return NULL;
	}
	return r;
}

obx_err_t obx_repl_identify(const obx_config_t *conf, obx_repl_system_t *system,
			    char *database, size_t database_size, char *errstr,
			    size_t errstr_size)
{
	obx_err_t err;
	obx_repl_t *r = open_identified(conf, &err, errstr, errstr_size);
	if (!r)
		return err;
	*system = r->system;
	snprintf(database, database_size, "%s", r->database);
	obx_repl_destroy(r);
	return OBX_OK;
}

void obx_repl_destroy(obx_repl_t *r)
{
	if (!r)
		return;
	PQfreemem(r->copybuf);
	PQfinish(r->conn);
	free(r->slot);
	free(r->plugin);
	free(r->database);
	free(r);
}

const char *obx_repl_database(const obx_repl_t *r)
{
	return r->database;
}

obx_lsn_t obx_repl_slot_confirmed(const obx_repl_t *r)
{
	return r->slot_confirmed;
}

bool obx_repl_slot_exists(const obx_repl_t *r)
{
	return r->slot_exists;
}

const obx_repl_system_t *obx_repl_system(const obx_repl_t *r)
{
	return &r->system;
}

const char *obx_repl_error(const obx_repl_t *r)
{
	return r->error;
}

int obx_repl_socket(const obx_repl_t *r)
{
	return PQsocket(r->conn);
}

obx_err_t obx_repl_start(obx_repl_t *r, obx_lsn_t start, const char *options)
{
	size_t size = strlen(options) + 128;
	char *sql = obx_xmalloc(size);

	/* 0/0: the server starts at the slot's confirmed_flush_lsn; a later
	 * start makes it skip every transaction that committed before */
	if (start < r->slot_confirmed)
		start = r->slot_confirmed;
	snprintf(sql, size,
		 "START_REPLICATION SLOT \"%s\" LOGICAL " OBX_LSN_FMT " %s",
		 r->slot, OBX_LSN_ARGS(start), options);
	obx_err_t err = run_command(r, sql, PGRES_COPY_BOTH, NULL);
	free(sql);
	if (err != OBX_OK)
		return fail(r, err,
			    "could not start replication on slot \"%s\": %s",
			    r->slot, r->error);
	if (PQsetnonblocking(r->conn, 1) != 0)
		return fail(r, OBX_RETRY, "could not set non-blocking mode: %s",
			    PQerrorMessage(r->conn));
	obx_info("streaming from replication slot \"%s\" at " OBX_LSN_FMT,
		 r->slot, OBX_LSN_ARGS(start));
	return OBX_OK;
}

static uint64_t read_u64(const char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | (unsigned char)p[i];
	return v;
}

static void write_u64(char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (char)(v & 0xff);
}

/* The stream ended or broke: collect the server's last word. */
static obx_err_t stream_ended(obx_repl_t *r)
{
	PGresult *res = PQgetResult(r->conn);
	obx_err_t err = OBX_RETRY;

	if (res && PQresultStatus(res) == PGRES_COMMAND_OK) {
		PQclear(res);
		return fail(r, OBX_RETRY,
			    "the server ended the replication "
			    "stream");
	}
	if (res)
		err = obx_pg_classify(res, r->conn);
	fail(r, err, "replication stream broke: %s",
	     res ? PQresultErrorMessage(res) : PQerrorMessage(r->conn));
	PQclear(res);
	return err;
}

obx_err_t obx_repl_read(obx_repl_t *r, obx_repl_msg_t *msg)
{
	memset(msg, 0, sizeof(*msg));
	PQfreemem(r->copybuf);
	r->copybuf = NULL;

	int len = PQgetCopyData(r->conn, &r->copybuf, 1);
	if (len == 0) {
		/* nothing buffered: read what the socket has, try once more */
		if (!PQconsumeInput(r->conn))
			return fail(r, OBX_RETRY,
				    "lost the replication "
				    "connection: %s",
				    PQerrorMessage(r->conn));
		len = PQgetCopyData(r->conn, &r->copybuf, 1);
		if (len == 0) {
			msg->kind = OBX_REPL_NONE;
			return OBX_OK;
		}
	}
	if (len == -1) {
		msg->kind = OBX_REPL_END;
		return stream_ended(r);
	}
	if (len < 0)
		return fail(r, OBX_RETRY,
			    "could not read the replication "
			    "stream: %s",
			    PQerrorMessage(r->conn));

	const char *buf = r->copybuf;
	switch (buf[0]) {
	case 'w':
		/* XLogData: 'w', dataStart(8), walEnd(8), sendTime(8), data */
		if (len < 25)
			return fail(r, OBX_BAD_DATA,
				    "malformed XLogData message of %d bytes",
				    len);
		msg->kind = OBX_REPL_DATA;
		msg->wal_start = read_u64(buf + 1);
		msg->wal_end = read_u64(buf + 9);
		msg->data = buf + 25;
		msg->len = (size_t)len - 25;
		return OBX_OK;
	case 'k':
		/* keepalive: 'k', walEnd(8), sendTime(8), replyRequested(1) */
		if (len < 18)
			return fail(r, OBX_BAD_DATA,
				    "malformed keepalive message of %d bytes",
				    len);
		msg->kind = OBX_REPL_KEEPALIVE;
		msg->wal_end = read_u64(buf + 1);
		msg->reply_requested = buf[17] != 0;
		return OBX_OK;
	default:
		return fail(r, OBX_BAD_DATA,
			    "unexpected replication message type 0x%02x",
			    (unsigned char)buf[0]);
	}
}

obx_err_t obx_repl_send_status(obx_repl_t *r, obx_lsn_t received,
			       obx_lsn_t flushed, bool reply_requested)
{
	/* 'r', write(8), flush(8), apply(8), sendTime(8), replyRequested(1) */
	char msg[34];
	int64_t now = obx_wallclock_us() - PG_EPOCH_OFFSET_US;

	msg[0] = 'r';
	write_u64(msg + 1, received);
	write_u64(msg + 9, flushed);
	write_u64(msg + 17, flushed);
	write_u64(msg + 25, (uint64_t)now);
	msg[33] = reply_requested ? 1 : 0;
	if (PQputCopyData(r->conn, msg, sizeof(msg)) <= 0 ||
	    PQflush(r->conn) < 0)
		return fail(r, OBX_RETRY, "could not send a status update: %s",
			    PQerrorMessage(r->conn));
	return OBX_OK;
}

obx_err_t obx_repl_finish(obx_repl_t *r)
{
	if (PQputCopyEnd(r->conn, NULL) <= 0)
		return fail(r, OBX_RETRY, "could not end the copy: %s",
			    PQerrorMessage(r->conn));
	/* drain until the server ends its side, so no error is missed */
	PQsetnonblocking(r->conn, 0);
	for (;;) {
		PQfreemem(r->copybuf);
		r->copybuf = NULL;
		int len = PQgetCopyData(r->conn, &r->copybuf, 0);
		if (len >= 0)
			continue;
		if (len == -2)
			return fail(r, OBX_RETRY,
				    "could not drain the stream: %s",
				    PQerrorMessage(r->conn));
		break;
	}
	PGresult *res;
	obx_err_t err = OBX_OK;
	while ((res = PQgetResult(r->conn)) != NULL) {
		if (PQresultStatus(res) != PGRES_COMMAND_OK &&
		    PQresultStatus(res) != PGRES_TUPLES_OK)
			err = fail(r, OBX_RETRY, "the stream ended with: %s",
				   PQresultErrorMessage(res));
		PQclear(res);
	}
	return err;
}
