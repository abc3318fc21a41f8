/* envelope.c - Avro single-object encoding of outbox events with avro-c. */
#include "outboxd/envelope.h"

#include <errno.h>

#include <avro.h>
#include <stdlib.h>
#include <string.h>

#include "outboxd/avro_fingerprint.h"

/* generated from schemas/envelope.avsc by tools/embed.py */
extern const char obx_envelope_avsc[];
extern const unsigned long obx_envelope_avsc_len;

/* Field positions in schemas/envelope.avsc; checked in obx_envelope_new. */
enum {
	F_ID,
	F_AGGREGATE_TYPE,
	F_AGGREGATE_ID,
	F_TYPE,
	F_PAYLOAD,
	F_TIMESTAMP,
	F_SOURCE,
	F_FIELDS,
	F_COUNT
};
enum { S_DB, S_SCHEMA, S_TABLE, S_LSN, S_TXID, S_COUNT };

static const char *const field_names[F_COUNT] = {
	"id",	   "aggregate_type", "aggregate_id", "type",
	"payload", "timestamp",	     "source",	     "fields"
};
static const char *const source_names[S_COUNT] = { "db", "schema", "table",
						   "lsn", "txid" };

struct obx_envelope {
	avro_schema_t schema;
	avro_value_iface_t *iface;
	avro_value_t value; /* reused: reset before each event */
	avro_writer_t writer;
	uint64_t fingerprint;
	unsigned char *buf;
	size_t cap;
};

const char *obx_envelope_schema_json(void)
{
	return obx_envelope_avsc;
}

static int check_field_order(avro_value_t *record, const char *const *names,
			     size_t n)
{
	for (size_t i = 0; i < n; i++) {
		avro_value_t field;
		const char *name = NULL;
		if (avro_value_get_by_index(record, i, &field, &name) ||
		    strcmp(name, names[i]) != 0)
			return -1;
	}
	return 0;
}

obx_envelope_t *obx_envelope_new(char *errstr, size_t errstr_size)
{
	obx_envelope_t *env = obx_xcalloc(1, sizeof(*env));
	char *canonical;

	if (avro_schema_from_json_length(obx_envelope_avsc,
					 obx_envelope_avsc_len, &env->schema)) {
		obx_errf(errstr, errstr_size,
			 "could not parse the envelope schema: %s",
			 avro_strerror());
		free(env);
		return NULL;
	}
	canonical = obx_avro_canonical_form(
	    obx_envelope_avsc, obx_envelope_avsc_len, errstr, errstr_size);
	if (!canonical) {
		avro_schema_decref(env->schema);
		free(env);
		return NULL;
	}
	env->fingerprint = obx_avro_crc64(canonical, strlen(canonical));
	free(canonical);

	env->iface = avro_generic_class_from_schema(env->schema);
	avro_value_t source;
	if (!env->iface || avro_generic_value_new(env->iface, &env->value) ||
	    check_field_order(&env->value, field_names, F_COUNT) ||
	    avro_value_get_by_index(&env->value, F_SOURCE, &source, NULL) ||
	    check_field_order(&source, source_names, S_COUNT)) {
		obx_errf(errstr, errstr_size,
			 "the envelope schema does not have the fields this "
			 "build expects: %s",
			 avro_strerror());
		if (env->iface)
			avro_value_iface_decref(env->iface);
		avro_schema_decref(env->schema);
		free(env);
		return NULL;
	}
	env->writer = avro_writer_memory(NULL, 0);
	return env;
}

void obx_envelope_destroy(obx_envelope_t *env)
{
	if (!env)
		return;
	avro_writer_free(env->writer);
	avro_value_decref(&env->value);
	avro_value_iface_decref(env->iface);
	avro_schema_decref(env->schema);
	free(env->buf);
	free(env);
}

uint64_t obx_envelope_fingerprint(const obx_envelope_t *env)
{
	return env->fingerprint;
}

/* avro-c string sizes count the terminating NUL; event strings have one. */
static int set_string(avro_value_t *record, size_t index, const char *s,
		      size_t len)
{
	avro_value_t field;
	return avro_value_get_by_index(record, index, &field, NULL) ||
	       avro_value_set_string_len(&field, s, len + 1);
}

static int set_long(avro_value_t *record, size_t index, int64_t v)
{
	avro_value_t field;
	return avro_value_get_by_index(record, index, &field, NULL) ||
	       avro_value_set_long(&field, v);
}

static int fill(obx_envelope_t *env, const obx_event_t *ev)
{
	avro_value_t *v = &env->value;
	avro_value_t payload, branch, source, fields, entry;

	if (avro_value_reset(v) || set_string(v, F_ID, ev->id, ev->id_len) ||
	    set_string(v, F_AGGREGATE_TYPE, ev->aggregate_type,
		       ev->aggregate_type_len) ||
	    set_string(v, F_AGGREGATE_ID, ev->key, ev->key_len) ||
	    set_string(v, F_TYPE, ev->type, ev->type_len) ||
	    set_long(v, F_TIMESTAMP, ev->timestamp_us))
		return -1;

	if (avro_value_get_by_index(v, F_PAYLOAD, &payload, NULL))
		return -1;
	if (ev->payload) {
		if (avro_value_set_branch(&payload, 1, &branch) ||
		    avro_value_set_string_len(&branch, ev->payload,
					      ev->payload_len + 1))
			return -1;
	} else if (avro_value_set_branch(&payload, 0, &branch) ||
		   avro_value_set_null(&branch)) {
		return -1;
	}

	if (avro_value_get_by_index(v, F_SOURCE, &source, NULL) ||
	    set_string(&source, S_DB, ev->db, strlen(ev->db)) ||
	    set_string(&source, S_SCHEMA, ev->schema, strlen(ev->schema)) ||
	    set_string(&source, S_TABLE, ev->table, strlen(ev->table)) ||
	    set_long(&source, S_LSN, (int64_t)ev->lsn) ||
	    set_long(&source, S_TXID, ev->xid))
		return -1;

	if (avro_value_get_by_index(v, F_FIELDS, &fields, NULL))
		return -1;
	for (size_t i = 0; i < ev->nfields; i++) {
		if (avro_value_add(&fields, ev->fields[i].name, &entry, NULL,
				   NULL) ||
		    avro_value_set_string_len(&entry, ev->fields[i].value,
					      ev->fields[i].value_len + 1))
			return -1;
	}
	return 0;
}

/* Makes room for at least size bytes in the output buffer. */
static void reserve(obx_envelope_t *env, size_t size)
{
	if (size <= env->cap)
		return;
	size_t cap = env->cap ? env->cap : 4096;
	while (cap < size)
		cap *= 2;
	unsigned char *grown = obx_xrealloc(env->buf, cap);
	env->buf = grown;
	env->cap = cap;
}

obx_err_t obx_envelope_encode(obx_envelope_t *env, const obx_event_t *ev,
			      const void **out, size_t *out_len, char *errstr,
			      size_t errstr_size)
{
	if (fill(env, ev)) {
		obx_errf(errstr, errstr_size,
			 "could not build the Avro envelope for event \"%s\": "
			 "%s",
			 ev->id, avro_strerror());
		return OBX_FATAL;
	}
	/* the payload alone is a good first guess of the size */
	reserve(env, OBX_ENVELOPE_HEADER_SIZE + ev->payload_len + 1024);
	for (;;) {
		/* writing into a buffer that may be too small and growing it
		 * when avro-c says so costs less than asking for the size
		 * first (a second walk of the value) for every event */
		avro_writer_memory_set_dest(
		    env->writer, (char *)env->buf + OBX_ENVELOPE_HEADER_SIZE,
		    (int64_t)(env->cap - OBX_ENVELOPE_HEADER_SIZE));
		int rval = avro_value_write(env->writer, &env->value);
		if (rval == 0)
			break;
		if (rval != ENOSPC) {
			obx_errf(errstr, errstr_size,
				 "could not write the Avro envelope for event "
				 "\"%s\": %s",
				 ev->id, avro_strerror());
			return OBX_FATAL;
		}
		reserve(env, env->cap * 2);
	}
	env->buf[0] = 0xC3;
	env->buf[1] = 0x01;
	for (int i = 0; i < 8; i++)
		env->buf[2 + i] = (unsigned char)(env->fingerprint >> (8 * i));
	*out = env->buf;
	*out_len =
	    OBX_ENVELOPE_HEADER_SIZE + (size_t)avro_writer_tell(env->writer);
	return OBX_OK;
}
