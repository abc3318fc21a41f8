/* publication.c - the pgoutput publication: inspected, created, extended. */
#include "outboxd/publication.h"

#include <stdio.h>
#include <string.h>

#include "outboxd/log.h"

/*
 * Whether the publication covers table $2.$3, and how: 'missing', 'filtered'
 * (a row filter or column list on it or the partitioned table it belongs
 * to) or 'ok'.  A table is covered by FOR ALL TABLES, FOR TABLES IN SCHEMA,
 * or by itself or an ancestor being listed.
 */
/* r lists table t itself, or a partitioned table t is a partition of
 * (pg_partition_ancestors returns nothing for a table outside any tree) */
#define LISTED                                                                 \
	"(r.prrelid = t.oid OR r.prrelid IN (SELECT relid FROM "               \
	"pg_catalog.pg_partition_ancestors(t.oid)))"

static const char COVERAGE_SQL[] =
    "SELECT CASE WHEN p.puballtables OR EXISTS (SELECT 1 FROM "
    "pg_catalog.pg_publication_namespace s WHERE s.pnpubid = p.oid AND "
    "s.pnnspid = t.relnamespace) THEN 'ok' "
    "WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication_rel r WHERE "
    "r.prpubid = p.oid AND " LISTED ") THEN 'missing' "
    "WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_publication_rel r WHERE "
    "r.prpubid = p.oid AND " LISTED " AND (r.prqual IS NOT NULL "
    "OR r.prattrs IS NOT NULL)) THEN 'filtered' ELSE 'ok' END "
    "FROM pg_catalog.pg_publication p, (SELECT c.oid, c.relnamespace FROM "
    "pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = "
    "c.relnamespace WHERE n.nspname = $2 AND c.relname = $3) t "
    "WHERE p.pubname = $1";

/* Appends "schema.table" to a ", "-separated list. */
static void list_add(char *list, size_t size, const obx_table_name_t *t)
{
	size_t used = strlen(list);
	snprintf(list + used, size - used, "%s%s.%s", used ? ", " : "",
		 t->schema, t->table);
}

obx_err_t obx_publication_inspect(obx_admin_t *admin, const obx_config_t *conf,
				  obx_publication_info_t *out, char *errstr,
				  size_t errstr_size)
{
	char v[16];
	const char *name[] = { conf->publication_name };
	memset(out, 0, sizeof(*out));
	obx_err_t err = obx_admin_query_value(
	    admin,
	    "SELECT pubinsert::int || '' || pubupdate::int || "
	    "pubtruncate::int FROM pg_catalog.pg_publication WHERE pubname = "
	    "$1",
	    1, name, v, sizeof(v), errstr, errstr_size);
	if (err != OBX_OK || !*v)
		return err;
	out->exists = true;
	out->publishes_insert = v[0] == '1';
	out->publishes_update = v[1] == '1';
	out->publishes_truncate = v[2] == '1';
	for (size_t i = 0; i < conf->ntables; i++) {
		const char *params[] = { conf->publication_name,
					 conf->tables[i].schema,
					 conf->tables[i].table };
		if ((err = obx_admin_query_value(admin, COVERAGE_SQL, 3, params,
						 v, sizeof(v), errstr,
						 errstr_size)) != OBX_OK)
			return err;
		if (strcmp(v, "missing") == 0)
			list_add(out->missing, sizeof(out->missing),
				 &conf->tables[i]);
		else if (strcmp(v, "filtered") == 0)
			list_add(out->filtered, sizeof(out->filtered),
				 &conf->tables[i]);
	}
	return OBX_OK;
}

/* Whether item is one of a ", "-separated list's elements. */
static bool in_list(const char *list, const char *item)
{
	size_t len = strlen(item);
	for (const char *p = list; (p = strstr(p, item)); p += len)
		if ((p == list || p[-1] == ' ') && (!p[len] || p[len] == ','))
			return true;
	return false;
}

/* `"schema"."table", ...` of the given tables (all: `only` NULL). */
static void quoted_tables(const obx_config_t *conf, const char *only, char *buf,
			  size_t size)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < conf->ntables; i++) {
		char plain[300];
		snprintf(plain, sizeof(plain), "%s.%s", conf->tables[i].schema,
			 conf->tables[i].table);
		if (only && !in_list(only, plain))
			continue;
		/* validated identifiers (config.c): no quote inside */
		int n = snprintf(buf + used, size - used, "%s\"%s\".\"%s\"",
				 used ? ", " : "", conf->tables[i].schema,
				 conf->tables[i].table);
		if (n > 0 && (size_t)n < size - used)
			used += (size_t)n;
	}
}

void obx_publication_create_sql(const obx_config_t *conf, char *buf,
				size_t size)
{
	char tables[4096];
	quoted_tables(conf, NULL, tables, sizeof(tables));
	/* DELETE stays unpublished: the insert-then-delete cleanup would
	 * double the stream, and a delete is never an event */
	snprintf(buf, size,
		 "CREATE PUBLICATION \"%s\" FOR TABLE %s WITH (publish = "
		 "'insert, update, truncate', publish_via_partition_root = "
		 "true)",
		 conf->publication_name, tables);
}

/* The publication exists: refuses what no mode changes, adds tables. */
static obx_err_t extend(obx_admin_t *admin, const obx_config_t *conf,
			const obx_publication_info_t *info, char *errstr,
			size_t errstr_size)
{
	const char *pub = conf->publication_name;
	char sql[8192], tables[4096], lsn[32];
	if (!info->publishes_insert) {
		obx_errf(errstr, errstr_size,
			 "publication \"%s\" does not publish INSERTs: run "
			 "ALTER PUBLICATION \"%s\" SET (publish = 'insert, "
			 "update, truncate')",
			 pub, pub);
		return OBX_CONFIG;
	}
	if (*info->filtered) {
		obx_errf(errstr, errstr_size,
			 "publication \"%s\" filters the rows or columns of "
			 "%s (a WHERE clause or column list): outbox rows it "
			 "drops would be lost; publish the whole table",
			 pub, info->filtered);
		return OBX_CONFIG;
	}
	if (!info->publishes_update || !info->publishes_truncate)
		obx_warn("publication \"%s\" does not publish UPDATE or "
			 "TRUNCATE: those on an outbox table pass unseen "
			 "(table.op.invalid.behavior)",
			 pub);
	if (!*info->missing)
		return OBX_OK;
	quoted_tables(conf, info->missing, tables, sizeof(tables));
	if (conf->publication_autocreate_mode == OBX_PUBLICATION_DISABLED) {
		obx_errf(errstr, errstr_size,
			 "publication \"%s\" does not publish %s "
			 "(publication.autocreate.mode=disabled): run ALTER "
			 "PUBLICATION \"%s\" ADD TABLE %s",
			 pub, info->missing, pub, tables);
		return OBX_CONFIG;
	}
	snprintf(sql, sizeof(sql), "ALTER PUBLICATION \"%s\" ADD TABLE %s", pub,
		 tables);
	obx_err_t err =
	    obx_admin_exec(admin, sql, 0, NULL, errstr, errstr_size);
	if (err == OBX_OK)
		err = obx_admin_query_value(
		    admin, "SELECT pg_catalog.pg_current_wal_lsn()", 0, NULL,
		    lsn, sizeof(lsn), errstr, errstr_size);
	if (err != OBX_OK)
		return err;
	/* decoding reads the publication as of each change's WAL position */
	obx_warn("added %s to publication \"%s\": their events are published "
		 "from about %s on; rows written to them before that, and not "
		 "yet streamed, are not",
		 info->missing, pub, lsn);
	return OBX_OK;
}

obx_err_t obx_publication_ensure(obx_admin_t *admin, const obx_config_t *conf,
				 char *errstr, size_t errstr_size)
{
	obx_publication_info_t info;
	char sql[8192];
	obx_err_t err =
	    obx_publication_inspect(admin, conf, &info, errstr, errstr_size);
	if (err != OBX_OK)
		return err;
	if (info.exists)
		return extend(admin, conf, &info, errstr, errstr_size);
	obx_publication_create_sql(conf, sql, sizeof(sql));
	if (conf->publication_autocreate_mode == OBX_PUBLICATION_DISABLED) {
		obx_errf(errstr, errstr_size,
			 "publication \"%s\" does not exist "
			 "(publication.autocreate.mode=disabled): create it "
			 "with %s",
			 conf->publication_name, sql);
		return OBX_CONFIG;
	}
	if ((err = obx_admin_exec(admin, sql, 0, NULL, errstr, errstr_size)) !=
	    OBX_OK)
		return err;
	obx_info("created publication \"%s\"", conf->publication_name);
	return OBX_OK;
}
