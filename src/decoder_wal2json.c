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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decoder_internal.h"
#include "json_scan.h"

/* One column list as read from the message ("columns" or "identity"). */
typedef struct {
	obx_column_t *items;
	size_t n, cap;
	bool seen;
	const char *problem;  /* "name", "value" or "scalar"; NULL if fine */
	size_t problem_index; /* 1-based */
} column_list_t;

typedef struct {
	char *arena; /* unescaped strings of the current message */
	size_t arena_cap;
	column_list_t columns, identity;
	const obx_config_t *conf;
	obx_message_reader_t messages;
} wal2json_t;

static void *wal2json_create(const obx_config_t *conf, char *errstr,
			     size_t errstr_size)
{
	wal2json_t *w = obx_xcalloc(1, sizeof(*w));
	(void)errstr, (void)errstr_size;
	w->conf = conf;
	return w;
}

static void wal2json_destroy(void *state)
{
	wal2json_t *w = state;
	if (!w)
		return;
	free(w->arena);
	free(w->columns.items);
	free(w->identity.items);
	obx_message_reader_free(&w->messages);
	free(w);
}

static obx_err_t wal2json_start_options(const void *state,
					const bool *partitioned, char *buf,
					size_t size)
{
	const wal2json_t *w = state;
	const obx_config_t *conf = w->conf;
	char tables[4096] = "";
	size_t used = 0;

	/* table names were validated as plain identifiers: nothing in them
	 * needs wal2json's backslash escapes or SQL quoting.  wal2json names
	 * a partitioned table's rows by their partition, which add-tables
	 * would filter out (and a partition created later would never be
	 * listed): the whole schema is streamed instead, and the pipeline
	 * maps partitions to their table */
	for (size_t i = 0; i < conf->ntables; i++) {
		int n = snprintf(
		    tables + used, sizeof(tables) - used, "%s%s.%s",
		    i ? "," : "", conf->tables[i].schema,
		    partitioned && partitioned[i] ? "*"
						  : conf->tables[i].table);
		if (n < 0 || (size_t)n >= sizeof(tables) - used)
			return OBX_CONFIG;
		used += (size_t)n;
	}
	/*
	 * include-types=false: we never read the types and it is the largest
	 * cost in the walsender.  Deletes are filtered on the server: the
	 * insert-then-delete pattern would otherwise double the stream, and a
	 * DELETE is never an event.  UPDATE and TRUNCATE still reach the
	 * router, which applies table.op.invalid.behavior.
	 */
	int n = snprintf(buf, size,
			 "(\"format-version\" '2', \"include-lsn\" '1', "
			 "\"include-xids\" '1', \"include-timestamp\" '1', "
			 "\"include-transaction\" '1', \"include-types\" '0', "
			 "\"add-tables\" '%s', "
			 "\"actions\" 'insert,update,truncate')",
			 tables);
	return n < 0 || (size_t)n >= size ? OBX_CONFIG : OBX_OK;
}

#define BAD(...) OBX_DECODE_BAD("wal2json", __VA_ARGS__)

/* Key comparison against a literal: with both lengths known the compiler
 * turns the memcmp into a few loads (strcmp calls were ~5% of a row's CPU). */
#define is_key(key, key_len, literal)                                          \
	((key_len) == sizeof(literal) - 1 &&                                   \
	 memcmp((key), (literal), sizeof(literal) - 1) == 0)

/* The top-level fields we use, as read. */
typedef struct {
	const char *action, *timestamp, *nextlsn, *schema, *table;
	size_t action_len, timestamp_len, nextlsn_len;
	const char *xid;
	/* a logical decoding message ("M") */
	const char *prefix, *content, *lsn;
	size_t prefix_len, content_len, lsn_len;
	bool transactional;
} fields_t;

/* Reads [{"name": ..., "value": ...}, ...], noting the first bad column. */
static bool read_column_list(obx_js_t *js, column_list_t *list)
{
	bool first = true;

	list->n = 0;
	list->seen = true;
	list->problem = NULL;
	if (!obx_js_open(js, '['))
		return false;
	while (obx_js_next_element(js, &first)) {
		if (list->n == list->cap) {
			size_t cap = list->cap ? list->cap * 2 : 16;
			list->items = obx_xrealloc(list->items,
						   cap * sizeof(*list->items));
			list->cap = cap;
		}
		obx_column_t *c = &list->items[list->n++];
		bool has_value = false, scalar = true, kfirst = true;
		const char *key;
		size_t key_len;
		memset(c, 0, sizeof(*c));
		if (!obx_js_open(js, '{'))
			return false;
		while (obx_js_next_key(js, &kfirst, &key, &key_len)) {
			obx_js_scalar_t v;
			obx_js_type_t t;
			if (is_key(key, key_len, "name")) {
				if (!obx_js_peek(js, &t))
					return false;
				if (t != OBX_JS_STRING) {
					if (!obx_js_skip(js))
						return false;
					continue;
				}
				if (!obx_js_scalar(js, &v))
					return false;
				c->name = v.text;
			} else if (is_key(key, key_len, "value")) {
				if (!obx_js_peek(js, &t))
					return false;
				has_value = true;
				if (t == OBX_JS_OBJECT || t == OBX_JS_ARRAY) {
					scalar = false;
					if (!obx_js_skip(js))
						return false;
					continue;
				}
				if (!obx_js_scalar(js, &v))
					return false;
				switch (v.type) {
				case OBX_JS_STRING:
				case OBX_JS_NUMBER: /* its exact text: no float
						   rounding */
					c->value = v.text;
					c->value_len = v.len;
					break;
				case OBX_JS_TRUE:
				case OBX_JS_FALSE:
					c->value = v.type == OBX_JS_TRUE
						       ? "true"
						       : "false";
					c->value_len = strlen(c->value);
					break;
				default:
					c->value = NULL;
				}
			} else if (!obx_js_skip(js)) {
				return false;
			}
		}
		if (js->error)
			return false;
		if (!list->problem) {
			list->problem = !c->name     ? "name"
					: !has_value ? "value"
					: !scalar    ? "scalar"
						     : NULL;
			list->problem_index = list->n;
		}
	}
	return !js->error;
}

/* Reads the message's top-level object into *f and w's column lists;
 * false on a JSON error (js->error says which). */
static bool read_fields(wal2json_t *w, obx_js_t *js, fields_t *f)
{
	bool first = true;
	const char *key;
	size_t key_len;

	if (!obx_js_open(js, '{'))
		return false;
	while (obx_js_next_key(js, &first, &key, &key_len)) {
		obx_js_scalar_t v;
		obx_js_type_t t;
		const char **slot = NULL;
		size_t *slot_len = NULL;

		if (is_key(key, key_len, "columns") ||
		    is_key(key, key_len, "identity")) {
			column_list_t *list =
			    key[0] == 'c' ? &w->columns : &w->identity;
			if (obx_js_peek(js, &t) && t != OBX_JS_ARRAY) {
				if (!obx_js_skip(js))
					return false;
				continue;
			}
			if (!read_column_list(js, list))
				return false;
			continue;
		}
		if (is_key(key, key_len, "action")) {
			slot = &f->action;
			slot_len = &f->action_len;
		} else if (is_key(key, key_len, "timestamp")) {
			slot = &f->timestamp;
			slot_len = &f->timestamp_len;
		} else if (is_key(key, key_len, "nextlsn")) {
			slot = &f->nextlsn;
			slot_len = &f->nextlsn_len;
		} else if (is_key(key, key_len, "schema")) {
			slot = &f->schema;
		} else if (is_key(key, key_len, "table")) {
			slot = &f->table;
		} else if (is_key(key, key_len, "prefix")) {
			slot = &f->prefix;
			slot_len = &f->prefix_len;
		} else if (is_key(key, key_len, "content")) {
			slot = &f->content;
			slot_len = &f->content_len;
		} else if (is_key(key, key_len, "lsn") && f->action &&
			   f->action[0] == 'M') {
			/* only a message's: rows have theirs in XLogData */
			slot = &f->lsn;
			slot_len = &f->lsn_len;
		} else if (is_key(key, key_len, "transactional")) {
			if (!obx_js_peek(js, &t))
				return false;
			f->transactional = t == OBX_JS_TRUE;
		} else if (is_key(key, key_len, "xid")) {
			if (!obx_js_peek(js, &t))
				return false;
			if (t == OBX_JS_NUMBER) {
				if (!obx_js_scalar(js, &v))
					return false;
				f->xid = v.text;
				continue;
			}
		}
		/* the fields we read are strings; anything else is skipped
		 * and reported by the caller as missing */
		if (!slot || !obx_js_peek(js, &t) || t != OBX_JS_STRING) {
			if (!obx_js_skip(js))
				return false;
			continue;
		}
		if (!obx_js_scalar(js, &v))
			return false;
		*slot = v.text;
		if (slot_len)
			*slot_len = v.len;
	}
	return true;
}

/* A BEGIN ('B') or COMMIT ('C') message. */
static obx_err_t decode_transaction(const fields_t *f, char kind, obx_lsn_t lsn,
				    obx_change_t *out, char *errstr,
				    size_t errstr_size)
{
	out->kind = kind == 'B' ? OBX_CHANGE_BEGIN : OBX_CHANGE_COMMIT;
	if (!f->xid || strchr(f->xid, '.') || strchr(f->xid, 'e') ||
	    strchr(f->xid, 'E'))
		BAD("\"xid\" is missing or not an integer");
	out->xid = strtoll(f->xid, NULL, 10);
	if (!f->nextlsn ||
	    obx_lsn_parse(f->nextlsn, f->nextlsn_len, &out->commit_lsn) < 0)
		BAD("\"nextlsn\" is missing or not an LSN");
	if (!f->timestamp ||
	    obx_parse_timestamptz(f->timestamp, f->timestamp_len,
				  &out->commit_time_us) < 0)
		BAD("\"timestamp\" is missing or not a timestamp");
	return OBX_OK;
}

/* An INSERT, UPDATE, DELETE or TRUNCATE ('I', 'U', 'D', 'T') message. */
static obx_err_t decode_row(const wal2json_t *w, const fields_t *f, char kind,
			    obx_lsn_t lsn, obx_change_t *out, char *errstr,
			    size_t errstr_size)
{
	if (!f->schema || !f->table)
		BAD("\"schema\" or \"table\" is missing");
	out->schema = f->schema;
	out->table = f->table;
	out->xid = f->xid ? strtoll(f->xid, NULL, 10) : 0;
	if (kind == 'T') {
		out->kind = OBX_CHANGE_TRUNCATE;
		return OBX_OK;
	}
	const column_list_t *list = kind == 'D' ? &w->identity : &w->columns;
	out->kind = kind == 'I'	  ? OBX_CHANGE_INSERT
		    : kind == 'U' ? OBX_CHANGE_UPDATE
				  : OBX_CHANGE_DELETE;
	if (!list->seen)
		BAD("\"%s\" is missing or not an array",
		    kind == 'D' ? "identity" : "columns");
	if (list->problem) {
		const obx_column_t *c = &list->items[list->problem_index - 1];
		if (strcmp(list->problem, "name") == 0)
			BAD("column %zu has no \"name\"", list->problem_index);
		if (strcmp(list->problem, "value") == 0)
			BAD("column \"%s\" has no \"value\"", c->name);
		BAD("column \"%s\" has no scalar \"value\"", c->name);
	}
	out->columns = list->items;
	out->ncolumns = list->n;
	return OBX_OK;
}

/* pg_logical_emit_message(): "content" is the message's text as a JSON
 * string (wal2json escapes it), "lsn" the message's own position. */
static obx_err_t decode_message(wal2json_t *w, const fields_t *f, obx_lsn_t lsn,
				obx_change_t *out, char *errstr,
				size_t errstr_size)
{
	obx_lsn_t at = lsn;
	if (!f->prefix || !f->content)
		BAD("\"prefix\" or \"content\" is missing");
	if (f->lsn && obx_lsn_parse(f->lsn, f->lsn_len, &at) < 0)
		BAD("\"lsn\" is not an LSN");
	obx_message_decode(&w->messages, w->conf, f->prefix, f->prefix_len,
			   f->transactional, f->content, f->content_len, at,
			   out);
	out->xid = f->xid ? strtoll(f->xid, NULL, 10) : 0;
	return OBX_OK;
}

static obx_err_t wal2json_decode(void *state, const char *data, size_t len,
				 obx_lsn_t lsn, obx_change_t *out, char *errstr,
				 size_t errstr_size)
{
	wal2json_t *w = state;
	fields_t f = { 0 };
	obx_js_t js;
	obx_js_type_t top;

	memset(out, 0, sizeof(*out));
	out->lsn = lsn;
	if (OBX_JS_ARENA_SIZE(len) > w->arena_cap) {
		w->arena = obx_xrealloc(w->arena, OBX_JS_ARENA_SIZE(len));
		w->arena_cap = OBX_JS_ARENA_SIZE(len);
	}
	w->columns.seen = w->identity.seen = false;
	obx_js_init(&js, data, len, w->arena);
	if (obx_js_peek(&js, &top) && top != OBX_JS_OBJECT)
		BAD("not a JSON object");
	read_fields(w, &js, &f);
	if (js.error || !obx_js_end(&js))
		BAD("%s at byte %zu", js.error, js.error_at);

	if (!f.action || f.action_len != 1)
		BAD("\"action\" is missing or not one letter");
	char kind = f.action[0];
	switch (kind) {
	case 'B':
	case 'C':
		return decode_transaction(&f, kind, lsn, out, errstr,
					  errstr_size);
	case 'I':
	case 'U':
	case 'D':
	case 'T':
		return decode_row(w, &f, kind, lsn, out, errstr, errstr_size);
	case 'M':
		return decode_message(w, &f, lsn, out, errstr, errstr_size);
	default:
		BAD("unknown action \"%c\"", kind);
	}
}

const obx_decoder_ops_t obx_wal2json_decoder = {
	.plugin = "wal2json",
	.create = wal2json_create,
	.destroy = wal2json_destroy,
	.start_options = wal2json_start_options,
	.decode = wal2json_decode,
};
