/* deadletter.c - a bad outbox row as the dead letter topic's JSON. */
#include "outboxd/deadletter.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

/* A value as a JSON string; bytes that are not UTF-8 (a message's binary
 * content, a SQL_ASCII database) as PostgreSQL writes bytea: "\\x" + hex. */
static json_t *text_or_hex(const char *value, size_t len)
{
	json_t *text = json_stringn(value, len);
	if (text)
		return text;
	char *hex = obx_xmalloc(2 * len + 3);
	static const char digits[] = "0123456789abcdef";
	hex[0] = '\\';
	hex[1] = 'x';
	for (size_t i = 0; i < len; i++) {
		hex[2 + 2 * i] = digits[(unsigned char)value[i] >> 4];
		hex[3 + 2 * i] = digits[(unsigned char)value[i] & 15];
	}
	hex[2 + 2 * len] = '\0';
	text = json_string(hex);
	free(hex);
	return text;
}

char *obx_dead_letter_json(const char *db, const obx_change_t *change,
			   const char *reason, size_t max_value)
{
	json_t *columns = json_object();
	json_t *truncated = json_array();
	char lsn[32];

	for (size_t i = 0; i < change->ncolumns; i++) {
		const obx_column_t *c = &change->columns[i];
		size_t len = c->value_len;
		if (c->value && len > max_value) {
			/* cut on a UTF-8 character boundary */
			len = max_value;
			while (len > 0 &&
			       ((unsigned char)c->value[len] & 0xC0) == 0x80)
				len--;
			json_array_append_new(truncated, json_string(c->name));
		}
		json_object_set_new(columns, c->name,
				    c->value ? text_or_hex(c->value, len)
					     : json_null());
	}
	snprintf(lsn, sizeof(lsn), OBX_LSN_FMT, OBX_LSN_ARGS(change->lsn));
	json_t *doc = json_pack(
	    "{s:o, s:s, s:s, s:s, s:s, s:I, s:s}", "columns", columns, "db", db,
	    "schema", change->schema, "table", change->table, "lsn", lsn,
	    "txid", (json_int_t)change->xid, "error", reason);
	if (doc && json_array_size(truncated))
		json_object_set(doc, "truncated", truncated);
	json_decref(truncated);
	/* json_pack and json_dumps fail only for want of memory */
	char *text = obx_xnonnull(doc ? json_dumps(doc, JSON_COMPACT) : NULL);
	json_decref(doc);
	return text;
}
