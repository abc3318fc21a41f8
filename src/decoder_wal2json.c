/*
 * decoder_wal2json.c - wal2json format-version 2, one JSON object per change:
 *
 *   {"action":"B","xid":733,"timestamp":"2026-11-21 20:35:21.352341+00",
 *    "lsn":"0/1543A28","nextlsn":"0/1543A58"}
 *   {"action":"I","xid":733,"timestamp":"...","lsn":"0/1543848",
 *    "schema":"public","table":"outbox",
 *    "columns":[{"name":"id","value":"4fe6..."},...]}
 *   {"action":"C", same fields as "B"}
 *
 * "lsn" of B/C is the start of the commit record and "nextlsn" its end; the
 * end is what we confirm.  jsonb/json columns arrive as JSON strings holding
 * the document's text, which we keep as is.  Numbers and booleans arrive
 * unquoted and are turned back into text here.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decoder_internal.h"

/* room for one number as text: "%.17g" of a double or a 64-bit integer */
#define NUMBER_TEXT_MAX 32

typedef struct {
	json_t *root; /* the current message; change fields point into it */
	obx_column_t *columns;
	size_t columns_cap;
	char *numbers; /* text of numeric columns, NUMBER_TEXT_MAX each */
	size_t numbers_cap;
	char *options;
} wal2json_t;

static void *wal2json_create(const obx_config_t *conf, char *errstr,
			     size_t errstr_size)
{
	wal2json_t *w = calloc(1, sizeof(*w));
	char tables[4096] = "";
	size_t used = 0;

	if (!w) {
		obx_errf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	/* table names were validated as plain identifiers: nothing in them
	 * needs wal2json's backslash escapes or SQL quoting */
	for (size_t i = 0; i < conf->ntables; i++) {
		int n = snprintf(tables + used, sizeof(tables) - used,
				 "%s%s.%s", i ? "," : "",
				 conf->tables[i].schema, conf->tables[i].table);
		if (n < 0 || (size_t)n >= sizeof(tables) - used) {
			obx_errf(errstr, errstr_size,
				 "table.include.list is too long");
			free(w);
			return NULL;
		}
		used += (size_t)n;
	}
	/*
	 * include-types=false: we never read the types and it is the largest
	 * cost in the walsender.  Deletes are filtered on the server: the
	 * insert-then-delete pattern would otherwise double the stream, and a
	 * DELETE is never an event.  UPDATE and TRUNCATE still reach the
	 * router, which applies table.op.invalid.behavior.
	 */
	const char *fmt = "(\"format-version\" '2', \"include-lsn\" '1', "
			  "\"include-xids\" '1', \"include-timestamp\" '1', "
			  "\"include-transaction\" '1', \"include-types\" '0', "
			  "\"add-tables\" '%s', "
			  "\"actions\" 'insert,update,truncate')";
	size_t size = strlen(fmt) + used + 1;
	w->options = malloc(size);
	if (!w->options) {
		free(w);
		obx_errf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	snprintf(w->options, size, fmt, tables);
	return w;
}

static void wal2json_destroy(void *state)
{
	wal2json_t *w = state;
	if (!w)
		return;
	json_decref(w->root);
	free(w->columns);
	free(w->numbers);
	free(w->options);
	free(w);
}

static obx_err_t wal2json_start_options(const void *state, char *buf,
					size_t size)
{
	const wal2json_t *w = state;
	if ((size_t)snprintf(buf, size, "%s", w->options) >= size)
		return OBX_CONFIG;
	return OBX_OK;
}

#define BAD(...)                                                               \
	do {                                                                   \
		char reason_[512];                                             \
		snprintf(reason_, sizeof(reason_), __VA_ARGS__);               \
		obx_errf(errstr, errstr_size,                                  \
			 "malformed wal2json message at " OBX_LSN_FMT ": %s",  \
			 OBX_LSN_ARGS(lsn), reason_);                          \
		return OBX_BAD_DATA;                                           \
	} while (0)

static obx_err_t read_commit_fields(json_t *root, obx_lsn_t lsn,
				    obx_change_t *out, char *errstr,
				    size_t errstr_size)
{
	json_t *xid = json_object_get(root, "xid");
	json_t *nextlsn = json_object_get(root, "nextlsn");
	json_t *ts = json_object_get(root, "timestamp");

	if (!json_is_integer(xid))
		BAD("\"xid\" is missing or not an integer");
	if (!json_is_string(nextlsn) ||
	    obx_lsn_parse(json_string_value(nextlsn),
			  json_string_length(nextlsn), &out->commit_lsn) < 0)
		BAD("\"nextlsn\" is missing or not an LSN");
	if (!json_is_string(ts) ||
	    obx_parse_timestamptz(json_string_value(ts), json_string_length(ts),
				  &out->commit_time_us) < 0)
		BAD("\"timestamp\" is missing or not a timestamp");
	out->xid = json_integer_value(xid);
	return OBX_OK;
}

static obx_err_t read_columns(wal2json_t *w, json_t *array, obx_lsn_t lsn,
			      obx_change_t *out, char *errstr,
			      size_t errstr_size)
{
	size_t n = json_array_size(array);

	if (!json_is_array(array))
		BAD("\"columns\" is missing or not an array");
	if (n > w->columns_cap) {
		obx_column_t *grown = realloc(w->columns, n * sizeof(*grown));
		char *numbers = realloc(w->numbers, n * NUMBER_TEXT_MAX);
		if (!grown || !numbers) {
			/* keep whichever succeeded; both are freed later */
			w->columns = grown ? grown : w->columns;
			w->numbers = numbers ? numbers : w->numbers;
			obx_errf(errstr, errstr_size, "out of memory");
			return OBX_FATAL;
		}
		w->columns = grown;
		w->numbers = numbers;
		w->columns_cap = n;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *col = json_array_get(array, i);
		json_t *name = json_object_get(col, "name");
		json_t *value = json_object_get(col, "value");
		obx_column_t *c = &w->columns[i];
		char *num = w->numbers + i * NUMBER_TEXT_MAX;

		if (!json_is_string(name))
			BAD("column %zu has no \"name\"", i + 1);
		c->name = json_string_value(name);
		/* json_typeof() does not take NULL */
		if (!value)
			BAD("column \"%s\" has no \"value\"", c->name);
		switch (json_typeof(value)) {
		case JSON_STRING:
			c->value = json_string_value(value);
			c->value_len = json_string_length(value);
			break;
		case JSON_NULL:
			c->value = NULL;
			c->value_len = 0;
			break;
		case JSON_INTEGER:
			c->value_len = (size_t)snprintf(
			    num, NUMBER_TEXT_MAX, "%" JSON_INTEGER_FORMAT,
			    json_integer_value(value));
			c->value = num;
			break;
		case JSON_REAL:
			c->value_len =
			    (size_t)snprintf(num, NUMBER_TEXT_MAX, "%.17g",
					     json_real_value(value));
			c->value = num;
			break;
		case JSON_TRUE:
		case JSON_FALSE:
			c->value = json_is_true(value) ? "true" : "false";
			c->value_len = strlen(c->value);
			break;
		default:
			BAD("column \"%s\" has no scalar \"value\"", c->name);
		}
	}
	out->columns = w->columns;
	out->ncolumns = n;
	return OBX_OK;
}

static obx_err_t wal2json_decode(void *state, const char *data, size_t len,
				 obx_lsn_t lsn, obx_change_t *out, char *errstr,
				 size_t errstr_size)
{
	wal2json_t *w = state;
	json_error_t jerr;

	json_decref(w->root);
	memset(out, 0, sizeof(*out));
	out->lsn = lsn;
	w->root = json_loadb(data, len, 0, &jerr);
	if (!w->root)
		BAD("%s at byte %d", jerr.text, jerr.position);
	if (!json_is_object(w->root))
		BAD("not a JSON object");

	json_t *action = json_object_get(w->root, "action");
	if (!json_is_string(action) || json_string_length(action) != 1)
		BAD("\"action\" is missing or not one letter");

	char kind = json_string_value(action)[0];
	switch (kind) {
	case 'B':
	case 'C':
		out->kind = kind == 'B' ? OBX_CHANGE_BEGIN : OBX_CHANGE_COMMIT;
		return read_commit_fields(w->root, lsn, out, errstr,
					  errstr_size);
	case 'I':
	case 'U':
	case 'D':
	case 'T':
		break;
	case 'M': /* pg_logical_emit_message(): not a row, nothing to route */
		out->kind = OBX_CHANGE_NONE;
		return OBX_OK;
	default:
		BAD("unknown action \"%c\"", kind);
	}

	json_t *schema = json_object_get(w->root, "schema");
	json_t *table = json_object_get(w->root, "table");
	json_t *xid = json_object_get(w->root, "xid");
	if (!json_is_string(schema) || !json_is_string(table))
		BAD("\"schema\" or \"table\" is missing");
	out->schema = json_string_value(schema);
	out->table = json_string_value(table);
	out->xid = json_is_integer(xid) ? json_integer_value(xid) : 0;

	switch (kind) {
	case 'I':
		out->kind = OBX_CHANGE_INSERT;
		return read_columns(w, json_object_get(w->root, "columns"), lsn,
				    out, errstr, errstr_size);
	case 'U':
		out->kind = OBX_CHANGE_UPDATE;
		return read_columns(w, json_object_get(w->root, "columns"), lsn,
				    out, errstr, errstr_size);
	case 'D':
		out->kind = OBX_CHANGE_DELETE;
		return read_columns(w, json_object_get(w->root, "identity"),
				    lsn, out, errstr, errstr_size);
	default:
		out->kind = OBX_CHANGE_TRUNCATE;
		return OBX_OK;
	}
}

const obx_decoder_ops_t obx_wal2json_decoder = {
	.plugin = "wal2json",
	.create = wal2json_create,
	.destroy = wal2json_destroy,
	.start_options = wal2json_start_options,
	.decode = wal2json_decode,
};
