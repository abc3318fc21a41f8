/*
 * envelope.c - Avro single-object encoding of outbox events.
 *
 * avro-c parses the schema (schemas/envelope.avsc) once, to check that it
 * has the fields, in the order and of the types, this encoder writes; the
 * datum itself is written here, by the Avro specification's binary
 * encoding (zig-zag varint longs, length-prefixed strings, a union as its
 * branch index, a map as one block).  Filling avro-c's generic value and
 * writing it cost about 5,000 instructions an event, a third of the
 * pipeline's work (callgrind, docs/performance.md); this is a tenth of that.
 * The unit suite reads every encoding back with avro-c's reader, and the
 * integration suites with python3-avro.
 */
#include "outboxd/envelope.h"

#include <avro.h>
#include <stdlib.h>
#include <string.h>

#include "outboxd/avro_fingerprint.h"

/* generated from schemas/envelope.avsc by tools/embed.py */
extern const char obx_envelope_avsc[];
extern const unsigned long obx_envelope_avsc_len;

typedef struct {
	const char *name;
	avro_type_t type;
} expected_field_t;

/* The envelope's fields in the order they are written; checked against the
 * schema in obx_envelope_new. */
static const expected_field_t envelope_fields[] = {
	{ "id", AVRO_STRING },		 { "aggregate_type", AVRO_STRING },
	{ "aggregate_id", AVRO_STRING }, { "type", AVRO_STRING },
	{ "payload", AVRO_UNION },	 { "timestamp", AVRO_INT64 },
	{ "source", AVRO_RECORD },	 { "fields", AVRO_MAP },
};
static const expected_field_t source_fields[] = {
	{ "db", AVRO_STRING },	  { "schema", AVRO_STRING },
	{ "table", AVRO_STRING }, { "lsn", AVRO_INT64 },
	{ "txid", AVRO_INT64 },
};

struct obx_envelope {
	uint64_t fingerprint;
	unsigned char *buf;
	size_t cap;
	size_t len;
};

const char *obx_envelope_schema_json(void)
{
	return obx_envelope_avsc;
}

static bool fields_as_expected(avro_schema_t record,
			       const expected_field_t *expected, size_t n)
{
	if (!is_avro_record(record) || avro_schema_record_size(record) != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		const char *name =
		    avro_schema_record_field_name(record, (int)i);
		avro_schema_t field =
		    avro_schema_record_field_get_by_index(record, (int)i);
		if (!name || !field || strcmp(name, expected[i].name) != 0 ||
		    avro_typeof(field) != expected[i].type)
			return false;
	}
	return true;
}

/* The schema this encoder writes: union [null, string], map of string. */
static bool schema_as_expected(avro_schema_t schema)
{
	if (!fields_as_expected(schema, envelope_fields,
				OBX_ARRAY_LEN(envelope_fields)))
		return false;
	avro_schema_t payload = avro_schema_get_subschema(schema, "payload");
	avro_schema_t source = avro_schema_get_subschema(schema, "source");
	avro_schema_t fields = avro_schema_get_subschema(schema, "fields");
	return avro_schema_union_size(payload) == 2 &&
	       is_avro_null(avro_schema_union_branch(payload, 0)) &&
	       is_avro_string(avro_schema_union_branch(payload, 1)) &&
	       fields_as_expected(source, source_fields,
				  OBX_ARRAY_LEN(source_fields)) &&
	       is_avro_string(avro_schema_map_values(fields));
}

obx_envelope_t *obx_envelope_new(char *errstr, size_t errstr_size)
{
	avro_schema_t schema;
	if (avro_schema_from_json_length(obx_envelope_avsc,
					 obx_envelope_avsc_len, &schema)) {
		obx_errf(errstr, errstr_size,
			 "could not parse the envelope schema: %s",
			 avro_strerror());
		return NULL;
	}
	bool fits = schema_as_expected(schema);
	avro_schema_decref(schema);
	if (!fits) {
		obx_errf(errstr, errstr_size,
			 "the envelope schema does not have the fields this "
			 "build writes");
		return NULL;
	}
	char *canonical = obx_avro_canonical_form(
	    obx_envelope_avsc, obx_envelope_avsc_len, errstr, errstr_size);
	if (!canonical)
		return NULL;
	obx_envelope_t *env = obx_xcalloc(1, sizeof(*env));
	env->fingerprint = obx_avro_crc64(canonical, strlen(canonical));
	free(canonical);
	return env;
}

void obx_envelope_destroy(obx_envelope_t *env)
{
	if (!env)
		return;
	free(env->buf);
	free(env);
}

uint64_t obx_envelope_fingerprint(const obx_envelope_t *env)
{
	return env->fingerprint;
}

/* A long: zig-zag, then 7 bits a byte, low first (at most 10 bytes). */
static void put_long(obx_envelope_t *env, int64_t v)
{
	uint64_t z = ((uint64_t)v << 1) ^ (v < 0 ? UINT64_MAX : 0);
	while (z >= 0x80) {
		env->buf[env->len++] = (unsigned char)(z | 0x80);
		z >>= 7;
	}
	env->buf[env->len++] = (unsigned char)z;
}

/* A string: its length as a long, then its bytes. */
static void put_string(obx_envelope_t *env, const char *s, size_t len)
{
	put_long(env, (int64_t)len);
	if (len)
		memcpy(env->buf + env->len, s, len);
	env->len += len;
}

/* Room for everything the event can take, so the writes need no checks. */
static void reserve(obx_envelope_t *env, const obx_event_t *ev)
{
	size_t need = OBX_ENVELOPE_HEADER_SIZE + 20 * 10 + ev->id_len +
		      ev->aggregate_type_len + ev->key_len + ev->type_len +
		      ev->payload_len + strlen(ev->db) + strlen(ev->schema) +
		      strlen(ev->table);
	for (size_t i = 0; i < ev->nfields; i++)
		need +=
		    20 + strlen(ev->fields[i].name) + ev->fields[i].value_len;
	if (need <= env->cap)
		return;
	size_t cap = env->cap ? env->cap : 4096;
	while (cap < need)
		cap *= 2;
	env->buf = obx_xrealloc(env->buf, cap);
	env->cap = cap;
}

/* The binary datum, after room for the longer of the two headers. */
static void encode_datum(obx_envelope_t *env, const obx_event_t *ev)
{
	reserve(env, ev);
	env->len = OBX_ENVELOPE_HEADER_SIZE;
	put_string(env, ev->id, ev->id_len);
	put_string(env, ev->aggregate_type, ev->aggregate_type_len);
	put_string(env, ev->key, ev->key_len);
	put_string(env, ev->type, ev->type_len);
	put_long(env, ev->payload ? 1 : 0); /* the union's branch */
	if (ev->payload)
		put_string(env, ev->payload, ev->payload_len);
	put_long(env, ev->timestamp_us);
	put_string(env, ev->db, strlen(ev->db));
	put_string(env, ev->schema, strlen(ev->schema));
	put_string(env, ev->table, strlen(ev->table));
	put_long(env, (int64_t)ev->lsn);
	put_long(env, ev->xid);
	/* the map: one block of nfields entries, then the empty block; a
	 * NULL-valued field is left out by the router */
	if (ev->nfields) {
		put_long(env, (int64_t)ev->nfields);
		for (size_t i = 0; i < ev->nfields; i++) {
			put_string(env, ev->fields[i].name,
				   strlen(ev->fields[i].name));
			put_string(env, ev->fields[i].value,
				   ev->fields[i].value_len);
		}
	}
	put_long(env, 0);
}

obx_err_t obx_envelope_encode(obx_envelope_t *env, const obx_event_t *ev,
			      const void **out, size_t *out_len, char *errstr,
			      size_t errstr_size)
{
	(void)errstr, (void)errstr_size;
	encode_datum(env, ev);
	env->buf[0] = 0xC3;
	env->buf[1] = 0x01;
	for (int i = 0; i < 8; i++)
		env->buf[2 + i] = (unsigned char)(env->fingerprint >> (8 * i));
	*out = env->buf;
	*out_len = env->len;
	return OBX_OK;
}

void obx_envelope_encode_registered(obx_envelope_t *env, const obx_event_t *ev,
				    uint32_t schema_id, const void **out,
				    size_t *out_len)
{
	encode_datum(env, ev);
	/* the 5-byte header ends where the datum begins */
	unsigned char *header = env->buf + OBX_ENVELOPE_HEADER_SIZE -
				OBX_ENVELOPE_REGISTRY_HEADER_SIZE;
	header[0] = 0;
	for (int i = 0; i < 4; i++)
		header[1 + i] = (unsigned char)(schema_id >> (8 * (3 - i)));
	*out = header;
	*out_len = env->len - (size_t)(header - env->buf);
}
