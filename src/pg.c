/* pg.c - connections, failure classes and redaction for libpq. */
#include "outboxd/pg.h"

#include <stdio.h>
#include <string.h>

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
	obx_errf(errstr, errstr_size, "could not connect to the server: %s",
		 PQerrorMessage(conn));
	/* libpq's messages end in a newline; ours are single lines */
	size_t n = strlen(errstr);
	while (n && errstr[n - 1] == '\n')
		errstr[--n] = '\0';
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
