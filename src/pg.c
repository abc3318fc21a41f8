/* pg.c - connections, failure classes and redaction for libpq. */
#include "outboxd/pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void obx_pg_error(const PGconn *conn, const char *what, char *errstr,
		  size_t errstr_size)
{
	obx_errf(errstr, errstr_size, "%s%s%s", what ? what : "",
		 what ? ": " : "", PQerrorMessage(conn));
	size_t n = strlen(errstr);
	while (n && errstr[n - 1] == '\n')
		errstr[--n] = '\0';
}

PGconn *obx_pg_connect(const obx_config_t *conf, bool replication,
		       const char *application_name, char *errstr,
		       size_t errstr_size)
{
	const char *keys[] = { "dbname", "fallback_application_name",
			       replication ? "replication" : NULL, NULL };
	const char *values[] = { conf->database_url, application_name,
				 "database", NULL };
	/* expand_dbname: database.url may be a full conninfo or URI */
	PGconn *conn = PQconnectdbParams(keys, values, 1);
	if (PQstatus(conn) == CONNECTION_OK)
		return conn;
	obx_pg_error(conn, "could not connect to the server", errstr,
		     errstr_size);
	PQfinish(conn);
	return NULL;
}

const char *obx_pg_sqlstate(const PGresult *res)
{
	const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	return s ? s : "";
}

obx_err_t obx_pg_classify(const PGresult *res, const PGconn *conn)
{
	const char *state = obx_pg_sqlstate(res);

	/* 08: connection exception; 57P: operator intervention (shutdown,
	 * terminated backend); 55006: object in use (a slot active for
	 * another PID); 53300: too many connections; none: no answer */
	if (PQstatus(conn) == CONNECTION_BAD || strncmp(state, "08", 2) == 0 ||
	    strncmp(state, "57P", 3) == 0 || strcmp(state, "55006") == 0 ||
	    strcmp(state, "53300") == 0 || *state == '\0')
		return OBX_RETRY;
	if (strcmp(state, "42704") == 0)
		return OBX_BAD_DATA;
	return OBX_FATAL;
}

obx_lsn_t obx_pg_lsn_value(const PGresult *res, int col)
{
	obx_lsn_t lsn = OBX_LSN_INVALID;
	if (!PQgetisnull(res, 0, col)) {
		const char *v = PQgetvalue(res, 0, col);
		obx_lsn_parse(v, strlen(v), &lsn);
	}
	return lsn;
}

obx_err_t obx_pg_slot_info(PGconn *conn, const char *slot, obx_slot_info_t *out,
			   char *errstr, size_t errstr_size)
{
	char sql[1024];
	char *name = PQescapeLiteral(conn, slot, strlen(slot));
	if (!name) {
		obx_pg_error(conn, NULL, errstr, errstr_size);
		return OBX_RETRY;
	}
	snprintf(sql, sizeof(sql),
		 "SELECT s.plugin, s.database, s.active, s.active_pid, "
		 "s.confirmed_flush_lsn, s.restart_lsn, pg_current_wal_lsn(), "
		 "pg_wal_lsn_diff(pg_current_wal_lsn(), "
		 "s.restart_lsn)::bigint, s.wal_status "
		 "FROM (SELECT 1) AS one LEFT JOIN "
		 "pg_catalog.pg_replication_slots s ON s.slot_name = %s",
		 name);
	PQfreemem(name);
	PGresult *res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		obx_err_t err = obx_pg_classify(res, conn);
		obx_pg_error(conn, NULL, errstr, errstr_size);
		PQclear(res);
		return err;
	}
	memset(out, 0, sizeof(*out));
	out->exists = !PQgetisnull(res, 0, 0);
	out->current_wal = obx_pg_lsn_value(res, 6);
	if (out->exists) {
		snprintf(out->plugin, sizeof(out->plugin), "%s",
			 PQgetvalue(res, 0, 0));
		snprintf(out->database, sizeof(out->database), "%s",
			 PQgetvalue(res, 0, 1));
		out->active = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
		out->active_pid =
		    PQgetisnull(res, 0, 3) ? 0 : atoi(PQgetvalue(res, 0, 3));
		out->confirmed_flush = obx_pg_lsn_value(res, 4);
		out->restart_lsn = obx_pg_lsn_value(res, 5);
		out->retained_bytes =
		    PQgetisnull(res, 0, 7) ? 0 : atoll(PQgetvalue(res, 0, 7));
		snprintf(out->wal_status, sizeof(out->wal_status), "%s",
			 PQgetvalue(res, 0, 8));
	}
	PQclear(res);
	return OBX_OK;
}

void obx_pg_redact_conninfo(const char *conninfo, char *out, size_t out_size)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
	size_t used = 0;

	if (!opts) {
		PQfreemem(err);
		snprintf(out, out_size, "(unparsable connection string)");
		return;
	}
	out[0] = '\0';
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (!o->val)
			continue;
		/* libpq marks every secret option ("*"): password,
		 * sslpassword, and whatever later versions add */
		const char *val =
		    o->dispchar && o->dispchar[0] == '*' ? "********" : o->val;
		int n = snprintf(out + used, out_size - used, "%s%s=%s",
				 used ? " " : "", o->keyword, val);
		if (n < 0 || (size_t)n >= out_size - used)
			break;
		used += (size_t)n;
	}
	PQconninfoFree(opts);
}
