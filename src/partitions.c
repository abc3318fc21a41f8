/* partitions.c - partition -> outbox table, from the catalog, cached. */
#include "outboxd/partitions.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "outboxd/admin.h"

typedef struct {
	char *schema, *table;
	uint64_t hash;
	obx_partition_kind_t kind;
	size_t index;
} entry_t;

struct obx_partitions {
	const obx_config_t *conf;
	obx_admin_t *admin;
	entry_t *entries;
	size_t n, cap;
};

obx_partitions_t *obx_partitions_new(const obx_config_t *conf)
{
	obx_partitions_t *parts = obx_xcalloc(1, sizeof(*parts));
	parts->conf = conf;
	return parts;
}

void obx_partitions_destroy(obx_partitions_t *parts)
{
	if (!parts)
		return;
	for (size_t i = 0; i < parts->n; i++) {
		free(parts->entries[i].schema);
		free(parts->entries[i].table);
	}
	free(parts->entries);
	obx_admin_destroy(parts->admin);
	free(parts);
}

static uint64_t name_hash(const char *schema, const char *table)
{
	return obx_hash_str(schema) * 31 + obx_hash_str(table);
}

static const entry_t *cached(const obx_partitions_t *parts, const char *schema,
			     const char *table, uint64_t hash)
{
	for (size_t i = 0; i < parts->n; i++) {
		const entry_t *e = &parts->entries[i];
		if (e->hash == hash && strcmp(e->table, table) == 0 &&
		    strcmp(e->schema, schema) == 0)
			return e;
	}
	return NULL;
}

/* The first ancestor (nearest first) that is an outbox table. */
static void match_ancestors(const obx_config_t *conf, const char *json,
			    entry_t *e)
{
	json_t *doc = json_loads(json, 0, NULL);
	size_t i;
	json_t *pair;

	e->kind = OBX_PARTITION_NONE;
	json_array_foreach(doc, i, pair)
	{
		const char *schema = json_string_value(json_array_get(pair, 0));
		const char *table = json_string_value(json_array_get(pair, 1));
		for (size_t t = 0; schema && table && t < conf->ntables; t++) {
			if (strcmp(conf->tables[t].schema, schema) == 0 &&
			    strcmp(conf->tables[t].table, table) == 0) {
				e->kind = OBX_PARTITION_OF;
				e->index = t;
				json_decref(doc);
				return;
			}
		}
	}
	json_decref(doc);
}

obx_err_t obx_partitions_lookup(obx_partitions_t *parts, const char *schema,
				const char *table, obx_partition_kind_t *kind,
				size_t *index, char *errstr, size_t errstr_size)
{
	uint64_t hash = name_hash(schema, table);
	const entry_t *hit = cached(parts, schema, table, hash);
	if (hit) {
		*kind = hit->kind;
		*index = hit->index;
		return OBX_OK;
	}
	if (parts->admin && !obx_admin_ok(parts->admin)) {
		obx_admin_destroy(parts->admin);
		parts->admin = NULL;
	}
	if (!parts->admin &&
	    !(parts->admin = obx_admin_connect(
		  parts->conf, "outboxd-partitions", errstr, errstr_size)))
		return OBX_RETRY;
	/* "" when the table does not exist, "[]" when it has no ancestors */
	char ancestors[8192];
	const char *params[] = { schema, table };
	obx_err_t err = obx_admin_query_value(
	    parts->admin,
	    "SELECT coalesce((SELECT json_agg(json_build_array(an.nspname, "
	    "a.relname) ORDER BY anc.depth) FROM (SELECT relid, "
	    "row_number() OVER () AS depth FROM "
	    "pg_catalog.pg_partition_ancestors(c.oid) AS r(relid)) anc "
	    "JOIN pg_catalog.pg_class a ON a.oid = anc.relid "
	    "JOIN pg_catalog.pg_namespace an ON an.oid = a.relnamespace "
	    "WHERE a.oid <> c.oid)::text, '[]') "
	    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
	    "ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
	    2, params, ancestors, sizeof(ancestors), errstr, errstr_size);
	if (err != OBX_OK)
		return OBX_RETRY;
	entry_t e = { .hash = hash, .kind = OBX_PARTITION_GONE };
	if (*ancestors)
		match_ancestors(parts->conf, ancestors, &e);
	*kind = e.kind;
	*index = e.index;
	if (e.kind == OBX_PARTITION_GONE)
		return OBX_OK; /* not cached: it may be created again */
	if (parts->n == parts->cap) {
		parts->cap = parts->cap ? parts->cap * 2 : 16;
		parts->entries =
		    obx_xrealloc(parts->entries, parts->cap * sizeof(entry_t));
	}
	e.schema = obx_xstrdup(schema);
	e.table = obx_xstrdup(table);
	parts->entries[parts->n++] = e;
	return OBX_OK;
}
