/* avro_fingerprint.c - Parsing Canonical Form and CRC-64-AVRO. */
#include "outboxd/avro_fingerprint.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outboxd/common.h"

typedef struct {
	char *buf;
	size_t len, cap;
	bool failed;
	char *errstr;
	size_t errstr_size;
} text_t;

static void put(text_t *t, const char *s)
{
	size_t n = strlen(s);
	if (t->len + n + 1 > t->cap) {
		size_t cap = (t->len + n + 1) * 2;
		char *grown = realloc(t->buf, cap);
		if (!grown) {
			t->failed = true;
			return;
		}
		t->buf = grown;
		t->cap = cap;
	}
	memcpy(t->buf + t->len, s, n + 1);
	t->len += n;
}

static void put_quoted(text_t *t, const char *s)
{
	/* names and symbols are [A-Za-z_][A-Za-z0-9_]*: nothing to escape */
	put(t, "\"");
	put(t, s);
	put(t, "\"");
}

static void fail(text_t *t, const char *what)
{
	if (!t->failed)
		obx_errf(t->errstr, t->errstr_size, "invalid Avro schema: %s",
			 what);
	t->failed = true;
}

static bool is_primitive(const char *name)
{
	static const char *const primitives[] = { "null",  "boolean", "int",
						  "long",  "float",   "double",
						  "bytes", "string" };
	for (size_t i = 0; i < OBX_ARRAY_LEN(primitives); i++)
		if (strcmp(name, primitives[i]) == 0)
			return true;
	return false;
}

/* [FULLNAMES]: a name without a dot takes the namespace in effect. */
static void full_name(const char *name, const char *ns, char *out, size_t size)
{
	if (strchr(name, '.') || !ns || !*ns)
		snprintf(out, size, "%s", name);
	else
		snprintf(out, size, "%s.%s", ns, name);
}

static void canon(text_t *t, json_t *schema, const char *ns);

static void canon_named(text_t *t, json_t *schema, const char *type,
			const char *ns)
{
	json_t *name = json_object_get(schema, "name");
	json_t *own_ns = json_object_get(schema, "namespace");
	char full[512], inner_ns[512];

	if (!json_is_string(name)) {
		fail(t, "named type without a name");
		return;
	}
	full_name(json_string_value(name),
		  json_is_string(own_ns) ? json_string_value(own_ns) : ns, full,
		  sizeof(full));
	/* nested names default to this type's namespace */
	snprintf(inner_ns, sizeof(inner_ns), "%s", full);
	char *dot = strrchr(inner_ns, '.');
	if (dot)
		*dot = '\0';
	else
		inner_ns[0] = '\0';

	/* [ORDER]: name, type, fields, symbols, items, values, size */
	put(t, "{\"name\":");
	put_quoted(t, full);
	put(t, ",\"type\":");
	put_quoted(t, type);
	if (strcmp(type, "record") == 0 || strcmp(type, "error") == 0) {
		json_t *fields = json_object_get(schema, "fields");
		if (!json_is_array(fields)) {
			fail(t, "record without fields");
			return;
		}
		put(t, ",\"fields\":[");
		for (size_t i = 0; i < json_array_size(fields); i++) {
			json_t *f = json_array_get(fields, i);
			json_t *fname = json_object_get(f, "name");
			if (!json_is_string(fname)) {
				fail(t, "field without a name");
				return;
			}
			put(t, i ? ",{\"name\":" : "{\"name\":");
			put_quoted(t, json_string_value(fname));
			put(t, ",\"type\":");
			canon(t, json_object_get(f, "type"), inner_ns);
			put(t, "}");
		}
		put(t, "]");
	} else if (strcmp(type, "enum") == 0) {
		json_t *symbols = json_object_get(schema, "symbols");
		put(t, ",\"symbols\":[");
		for (size_t i = 0; i < json_array_size(symbols); i++) {
			json_t *s = json_array_get(symbols, i);
			if (!json_is_string(s)) {
				fail(t, "enum symbol is not a string");
				return;
			}
			if (i)
				put(t, ",");
			put_quoted(t, json_string_value(s));
		}
		put(t, "]");
	} else {
		json_t *size = json_object_get(schema, "size");
		char num[32];
		if (!json_is_integer(size)) {
			fail(t, "fixed without a size");
			return;
		}
		/* [INTEGERS]: no quotes, no leading zeros */
		snprintf(num, sizeof(num), ",\"size\":%" JSON_INTEGER_FORMAT,
			 json_integer_value(size));
		put(t, num);
	}
	put(t, "}");
}

static void canon(text_t *t, json_t *schema, const char *ns)
{
	if (t->failed)
		return;
	if (json_is_string(schema)) {
		const char *name = json_string_value(schema);
		char full[512];
		if (is_primitive(name)) {
			put_quoted(t, name);
		} else {
			full_name(name, ns, full, sizeof(full));
			put_quoted(t, full);
		}
		return;
	}
	if (json_is_array(schema)) { /* a union */
		put(t, "[");
		for (size_t i = 0; i < json_array_size(schema); i++) {
			if (i)
				put(t, ",");
			canon(t, json_array_get(schema, i), ns);
		}
		put(t, "]");
		return;
	}
	if (!json_is_object(schema)) {
		fail(t, "a schema is a string, an array or an object");
		return;
	}
	json_t *type = json_object_get(schema, "type");
	if (!json_is_string(type)) {
		/* {"type": {...}} wraps another schema */
		if (type)
			canon(t, type, ns);
		else
			fail(t, "object without a type");
		return;
	}
	const char *name = json_string_value(type);
	if (is_primitive(name)) {
		/* [PRIMITIVES], [STRIP]: {"type":"long","logicalType":...}
		 * is just "long" */
		put_quoted(t, name);
	} else if (strcmp(name, "array") == 0) {
		put(t, "{\"type\":\"array\",\"items\":");
		canon(t, json_object_get(schema, "items"), ns);
		put(t, "}");
	} else if (strcmp(name, "map") == 0) {
		put(t, "{\"type\":\"map\",\"values\":");
		canon(t, json_object_get(schema, "values"), ns);
		put(t, "}");
	} else if (strcmp(name, "record") == 0 || strcmp(name, "error") == 0 ||
		   strcmp(name, "enum") == 0 || strcmp(name, "fixed") == 0) {
		canon_named(t, schema, name, ns);
	} else {
		canon(t, type, ns); /* a reference to a named type */
	}
}

char *obx_avro_canonical_form(const char *schema_json, size_t len, char *errstr,
			      size_t errstr_size)
{
	json_error_t jerr;
	json_t *root = json_loadb(schema_json, len, 0, &jerr);
	text_t t = { .errstr = errstr, .errstr_size = errstr_size };

	if (!root) {
		obx_errf(errstr, errstr_size, "invalid Avro schema JSON: %s",
			 jerr.text);
		return NULL;
	}
	canon(&t, root, "");
	json_decref(root);
	if (t.failed) {
		free(t.buf);
		return NULL;
	}
	return t.buf;
}

#define CRC64_AVRO_EMPTY 0xc15d213aa4d7a795ULL

uint64_t obx_avro_crc64(const void *data, size_t len)
{
	static uint64_t table[256];
	static bool ready; /* benign race: every thread computes the same */
	const unsigned char *p = data;

	if (!ready) {
		for (int i = 0; i < 256; i++) {
			uint64_t fp = (uint64_t)i;
			for (int j = 0; j < 8; j++)
				fp = (fp >> 1) ^ (CRC64_AVRO_EMPTY & -(fp & 1));
			table[i] = fp;
		}
		ready = true;
	}
	uint64_t fp = CRC64_AVRO_EMPTY;
	for (size_t i = 0; i < len; i++)
		fp = (fp >> 8) ^ table[(fp ^ p[i]) & 0xff];
	return fp;
}
