/* admin.c - slot management and server facts over a normal connection. */
#include "outboxd/admin.h"

#include <ctype.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outboxd/pg.h"

struct obx_admin {
	PGconn *conn;
};

obx_admin_t *obx_admin_connect(const obx_config_t *conf,
			       const char *application_name, char *errstr,
			       size_t errstr_size)
{
	PGconn *conn =
	    obx_pg_connect(conf, false, application_name, errstr, errstr_size);
	if (!conn)
		return NULL;
	obx_admin_t *a = obx_xcalloc(1, sizeof(*a));
	a->conn = conn;
	return a;
}

void obx_admin_destroy(obx_admin_t *a)
{
	if (!a)
		return;
	PQfinish(a->conn);
	free(a);
}

bool obx_admin_ok(const obx_admin_t *a)
{
	return PQstatus(a->conn) == CONNECTION_OK;
}

/* Runs a parameterised query; the caller PQclear()s *out on OBX_OK. */
static obx_err_t query(obx_admin_t *a, const char *sql, int nparams,
		       const char *const *params, PGresult **out, char *errstr,
		       size_t errstr_size)
{
	PGresult *res =
	    PQexecParams(a->conn, sql, nparams, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
		*out = res;
		return OBX_OK;
	}
	obx_pg_error(a->conn, "query failed", errstr, errstr_size);
	PQclear(res);
	return PQstatus(a->conn) == CONNECTION_OK ? OBX_FATAL : OBX_RETRY;
}

obx_err_t obx_admin_query_value(obx_admin_t *a, const char *sql, int nparams,
				const char *const *params, char *out,
				size_t out_size, char *errstr,
				size_t errstr_size)
{
	PGresult *res;
	obx_err_t err =
	    query(a, sql, nparams, params, &res, errstr, errstr_size);
	if (err != OBX_OK)
		return err;
	snprintf(out, out_size, "%s",
		 PQntuples(res) > 0 && PQnfields(res) > 0 &&
			 !PQgetisnull(res, 0, 0)
		     ? PQgetvalue(res, 0, 0)
		     : "");
	PQclear(res);
	return OBX_OK;
}

obx_err_t obx_admin_exec(obx_admin_t *a, const char *sql, int nparams,
			 const char *const *params, char *errstr,
			 size_t errstr_size)
{
	PGresult *res;
	obx_err_t err =
	    query(a, sql, nparams, params, &res, errstr, errstr_size);
	if (err == OBX_OK)
		PQclear(res);
	return err;
}

obx_err_t obx_admin_slot_info(obx_admin_t *a, const char *slot,
			      obx_slot_info_t *out, char *errstr,
			      size_t errstr_size)
{
	obx_err_t err =
	    obx_pg_slot_info(a->conn, slot, out, errstr, errstr_size);
	/* the admin callers' contract: retry when the connection broke */
	return err == OBX_OK || PQstatus(a->conn) == CONNECTION_BAD ? err
								    : OBX_FATAL;
}

obx_err_t obx_admin_slot_create(obx_admin_t *a, const char *slot,
				const char *plugin, obx_lsn_t *at, char *errstr,
				size_t errstr_size)
{
	const char *params[] = { slot, plugin };
	PGresult *res;
	obx_err_t err =
	    query(a,
		  "SELECT lsn FROM "
		  "pg_catalog.pg_create_logical_replication_slot($1, $2)",
		  2, params, &res, errstr, errstr_size);
	if (err != OBX_OK)
		return err;
	*at = obx_pg_lsn_value(res, 0);
	PQclear(res);
	return OBX_OK;
}

obx_err_t obx_admin_slot_drop(obx_admin_t *a, const char *slot, char *errstr,
			      size_t errstr_size)
{
	const char *params[] = { slot };
	return obx_admin_exec(a,
			      "SELECT pg_catalog.pg_drop_replication_slot($1)",
			      1, params, errstr, errstr_size);
}

obx_err_t obx_admin_slot_advance(obx_admin_t *a, const char *slot, obx_lsn_t to,
				 obx_lsn_t *moved_to, char *errstr,
				 size_t errstr_size)
{
	char target[32];
	snprintf(target, sizeof(target), OBX_LSN_FMT, OBX_LSN_ARGS(to));
	const char *params[] = { slot, target };
	PGresult *res;
	obx_err_t err = query(a,
			      "SELECT end_lsn FROM "
			      "pg_catalog.pg_replication_slot_advance($1, "
			      "$2::pg_lsn)",
			      2, params, &res, errstr, errstr_size);
	if (err != OBX_OK)
		return err;
	*moved_to = obx_pg_lsn_value(res, 0);
	PQclear(res);
	return OBX_OK;
}

static void lowercase(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* The existing table whose name is nearest to schema.table (case counts
 * for nothing), from a comma-separated list; "" when none is near. */
static void nearest_table(const char *candidates, const char *wanted, char *out,
			  size_t out_size)
{
	char *list = obx_xstrdup(candidates), *save = NULL;
	char *lower_wanted = obx_xstrdup(wanted);
	size_t best = SIZE_MAX;
	lowercase(lower_wanted);
	out[0] = '\0';
	for (char *name = strtok_r(list, ",", &save); name;
	     name = strtok_r(NULL, ",", &save)) {
		char lower[300];
		snprintf(lower, sizeof(lower), "%s", name);
		lowercase(lower);
		size_t d = obx_edit_distance(lower_wanted, lower);
		if (d < best && d <= strlen(wanted) / 2) {
			best = d;
			snprintf(out, out_size, "%s", name);
		}
	}
	free(list);
	free(lower_wanted);
}

obx_err_t obx_admin_verify_tables(const obx_config_t *conf, bool *partitioned,
				  char *errstr, size_t errstr_size)
{
	char v[16], candidates[65536], nearest[300], wanted[300];
	obx_admin_t *a =
	    obx_admin_connect(conf, "outboxd-verify", errstr, errstr_size);
	if (!a)
		return OBX_RETRY;
	obx_err_t result = OBX_OK;
	for (size_t i = 0; i < conf->ntables && result == OBX_OK; i++) {
		const char *params[] = { conf->tables[i].schema,
					 conf->tables[i].table };
		result = obx_admin_query_value(
		    a,
		    "SELECT c.relkind FROM pg_catalog.pg_class c JOIN "
		    "pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
		    "WHERE n.nspname = $1 AND c.relname = $2 AND "
		    "c.relkind IN ('r', 'p')",
		    2, params, v, sizeof(v), errstr, errstr_size);
		if (partitioned)
			partitioned[i] = strcmp(v, "p") == 0;
		if (result != OBX_OK || *v)
			continue;
		result = obx_admin_query_value(
		    a,
		    "SELECT string_agg(n.nspname || '.' || c.relname, ',') "
		    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace "
		    "n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', "
		    "'p') AND n.nspname NOT IN ('pg_catalog', "
		    "'information_schema') AND n.nspname !~ '^pg_toast'",
		    0, NULL, candidates, sizeof(candidates), errstr,
		    errstr_size);
		if (result != OBX_OK)
			continue;
		snprintf(wanted, sizeof(wanted), "%s.%s",
			 conf->tables[i].schema, conf->tables[i].table);
		nearest_table(candidates, wanted, nearest, sizeof(nearest));
		obx_errf(errstr, errstr_size,
			 "table %s of table.include.list does not exist "
			 "(unquoted names are folded to lower case, as in "
			 "SQL); %s%s",
			 wanted,
			 nearest[0] ? "the nearest existing table is "
				    : "no existing table has a similar name",
			 nearest);
		result = OBX_CONFIG;
	}
	obx_admin_destroy(a);
	/* a failed query is the connection's fault: try again */
	return result == OBX_FATAL ? OBX_RETRY : result;
}
