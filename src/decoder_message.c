/*
 * decoder_message.c - outbox events without a table: a transactional
 * logical decoding message, pg_logical_emit_message(true, prefix, json),
 * whose JSON object carries the outbox columns by name.  Both plugin
 * decoders hand their messages here, so a message becomes the same change
 * whichever plugin streamed it.
 *
 * Values become column text as a row's would: a string its characters, a
 * number its exact text, true/false/null as such, an object or array its
 * JSON text as written.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decoder_internal.h"
#include "json_scan.h"
#include "outboxd/log.h"

void obx_message_reader_free(obx_message_reader_t *m)
{
	free(m->columns);
	free(m->arena);
	memset(m, 0, sizeof(*m));
}

static obx_column_t *next_column(obx_message_reader_t *m, size_t *n)
{
	if (*n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 16;
		m->columns =
		    obx_xrealloc(m->columns, m->cap * sizeof(*m->columns));
	}
	obx_column_t *c = &m->columns[(*n)++];
	memset(c, 0, sizeof(*c));
	return c;
}

/* Copies `len` bytes into the raw part of the arena, NUL-terminated. */
static const char *keep_raw(char **raw, const char *text, size_t len)
{
	char *copy = *raw;
	memcpy(copy, text, len);
	copy[len] = '\0';
	*raw += len + 1;
	return copy;
}

/* Reads one value of the object into c; false on a JSON error. */
static bool read_value(obx_js_t *js, char **raw, obx_column_t *c)
{
	obx_js_type_t t;
	obx_js_scalar_t v;
	if (!obx_js_peek(js, &t))
		return false;
	if (t == OBX_JS_OBJECT || t == OBX_JS_ARRAY) {
		const char *start = js->p; /* peek stopped at the value */
		if (!obx_js_skip(js))
			return false;
		c->value_len = (size_t)(js->p - start);
		c->value = keep_raw(raw, start, c->value_len);
		return true;
	}
	if (!obx_js_scalar(js, &v))
		return false;
	switch (v.type) {
	case OBX_JS_STRING:
	case OBX_JS_NUMBER:
		c->value = v.text;
		c->value_len = v.len;
		break;
	case OBX_JS_TRUE:
	case OBX_JS_FALSE:
		c->value = v.type == OBX_JS_TRUE ? "true" : "false";
		c->value_len = strlen(c->value);
		break;
	default:
		c->value = NULL;
	}
	return true;
}

void obx_message_decode(obx_message_reader_t *m, const obx_config_t *conf,
			const char *prefix, size_t prefix_len,
			bool transactional, const char *content, size_t len,
			obx_lsn_t lsn, obx_change_t *out)
{
	const char *wanted = conf->outbox_messages_prefix;
	out->kind = OBX_CHANGE_NONE;
	if (!wanted || strlen(wanted) != prefix_len ||
	    memcmp(wanted, prefix, prefix_len) != 0)
		return; /* another application's message */
	if (!transactional) {
		/* it was not part of the transaction that wrote the business
		 * row: publishing it could publish what was rolled back */
		obx_warn("ignored a non-transactional logical decoding message "
			 "with prefix \"%s\" at " OBX_LSN_FMT
			 ": outbox messages must be written with "
			 "pg_logical_emit_message(true, ...)",
			 wanted, OBX_LSN_ARGS(lsn));
		return;
	}
	/* the scanner's strings, then raw copies of objects and arrays */
	size_t need = OBX_JS_ARENA_SIZE(len) + len + 1;
	if (need > m->arena_cap) {
		m->arena = obx_xrealloc(m->arena, need);
		m->arena_cap = need;
	}
	char *raw = m->arena + OBX_JS_ARENA_SIZE(len);
	obx_js_t js;
	obx_js_type_t top;
	bool first = true;
	const char *key;
	size_t key_len, n = 0;

	out->kind = OBX_CHANGE_MESSAGE;
	out->lsn = lsn;
	out->schema = "";
	out->table = wanted;
	out->invalid = NULL;
	obx_js_init(&js, content, len, m->arena);
	if (obx_js_peek(&js, &top) && top != OBX_JS_OBJECT)
		js.error = "not a JSON object", js.error_at = 0;
	else if (obx_js_open(&js, '{'))
		while (obx_js_next_key(&js, &first, &key, &key_len)) {
			obx_column_t *c = next_column(m, &n);
			c->name = key;
			if (!read_value(&js, &raw, c))
				break;
		}
	if (js.error || !obx_js_end(&js)) {
		/* a bad event, not a bad stream: the DLQ keeps its bytes */
		snprintf(m->invalid, sizeof(m->invalid),
			 "the message's content is not a JSON object (%s at "
			 "byte %zu)",
			 js.error, js.error_at);
		raw = m->arena + OBX_JS_ARENA_SIZE(len);
		n = 0;
		obx_column_t *c = next_column(m, &n);
		c->name = "content";
		c->value_len = len;
		c->value = keep_raw(&raw, content, len);
		out->invalid = m->invalid;
	}
	out->columns = m->columns;
	out->ncolumns = n;
}
