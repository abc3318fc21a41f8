/* test_envelope.c - single-object encoding, read back with avro-c. */
#include <avro.h>
#include <stdlib.h>
#include <string.h>

#include "outboxd/avro_fingerprint.h"
#include "outboxd/envelope.h"
#include "suites.h"

static char err[1024];

/* Written by hand from the specification's Parsing Canonical Form rules:
 * doc and logicalType stripped, full names, attribute order fixed. */
static const char expected_canonical[] =
    "{\"name\":\"io.outboxd.Envelope\",\"type\":\"record\",\"fields\":["
    "{\"name\":\"id\",\"type\":\"string\"},"
    "{\"name\":\"aggregate_type\",\"type\":\"string\"},"
    "{\"name\":\"aggregate_id\",\"type\":\"string\"},"
    "{\"name\":\"type\",\"type\":\"string\"},"
    "{\"name\":\"payload\",\"type\":[\"null\",\"string\"]},"
    "{\"name\":\"timestamp\",\"type\":\"long\"},"
    "{\"name\":\"source\",\"type\":{\"name\":\"io.outboxd.Source\","
    "\"type\":\"record\",\"fields\":["
    "{\"name\":\"db\",\"type\":\"string\"},"
    "{\"name\":\"schema\",\"type\":\"string\"},"
    "{\"name\":\"table\",\"type\":\"string\"},"
    "{\"name\":\"lsn\",\"type\":\"long\"},"
    "{\"name\":\"txid\",\"type\":\"long\"}]}},"
    "{\"name\":\"fields\",\"type\":{\"type\":\"map\",\"values\":"
    "\"string\"}}]}";

START_TEST(crc64_matches_the_specification_vectors)
{
	/* from the Avro project's schema test data */
	ck_assert_uint_eq(obx_avro_crc64("\"null\"", 6),
			  7195948357588979594ULL);
	ck_assert_uint_eq(obx_avro_crc64("\"int\"", 5), 8247732601305521295ULL);
	ck_assert_uint_eq(obx_avro_crc64("\"long\"", 6),
			  (uint64_t)-3434872931120570953LL);
	ck_assert_uint_eq(obx_avro_crc64("\"string\"", 8),
			  (uint64_t)-8142146995180207161LL);
}
END_TEST

START_TEST(canonical_form_of_the_envelope)
{
	const char *schema = obx_envelope_schema_json();
	char *form =
	    obx_avro_canonical_form(schema, strlen(schema), err, sizeof(err));
	ck_assert_msg(form != NULL, "%s", err);
	ck_assert_str_eq(form, expected_canonical);
	free(form);
}
END_TEST

START_TEST(canonical_form_rules)
{
	struct {
		const char *in, *out;
	} cases[] = {
		{ "{\"type\":\"int\",\"logicalType\":\"date\"}", "\"int\"" },
		{ "{\"type\":\"fixed\",\"name\":\"F\",\"namespace\":\"a.b\","
		  "\"size\":16}",
		  "{\"name\":\"a.b.F\",\"type\":\"fixed\",\"size\":16}" },
		{ "{\"type\":\"enum\",\"name\":\"x.E\",\"doc\":\"d\","
		  "\"symbols\":[\"A\",\"B\"]}",
		  "{\"name\":\"x.E\",\"type\":\"enum\",\"symbols\":[\"A\","
		  "\"B\"]}" },
		{ "{\"type\":\"array\",\"items\":{\"type\":\"string\"}}",
		  "{\"type\":\"array\",\"items\":\"string\"}" },
		{ "{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"n\","
		  "\"fields\":[{\"name\":\"a\",\"type\":\"R\"}]}",
		  "{\"name\":\"n.R\",\"type\":\"record\",\"fields\":[{\"name\":"
		  "\"a\",\"type\":\"n.R\"}]}" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *form = obx_avro_canonical_form(
		    cases[i].in, strlen(cases[i].in), err, sizeof(err));
		ck_assert_msg(form != NULL, "%s", err);
		ck_assert_str_eq(form, cases[i].out);
		free(form);
	}
	ck_assert_ptr_null(
	    obx_avro_canonical_form("{\"type\":", 8, err, sizeof(err)));
}
END_TEST

static obx_event_t sample_event(obx_kv_t *fields, size_t nfields,
				const char *payload)
{
	obx_event_t ev = { 0 };
	ev.id = "6f1c-id";
	ev.id_len = strlen(ev.id);
	ev.aggregate_type = "order";
	ev.aggregate_type_len = 5;
	ev.key = "o-ü";
	ev.key_len = strlen(ev.key);
	ev.type = "Created";
	ev.type_len = 7;
	ev.payload = payload;
	ev.payload_len = payload ? strlen(payload) : 0;
	ev.timestamp_us = 1795293321352341LL;
	ev.db = "shop";
	ev.schema = "public";
	ev.table = "outbox";
	ev.lsn = 0x1543848;
	ev.xid = 733;
	ev.fields = fields;
	ev.nfields = nfields;
	return ev;
}

static const char *get_string(avro_value_t *rec, const char *name)
{
	avro_value_t f;
	const char *s;
	size_t size;
	ck_assert_int_eq(avro_value_get_by_name(rec, name, &f, NULL), 0);
	ck_assert_int_eq(avro_value_get_string(&f, &s, &size), 0);
	return s;
}

static int64_t get_long(avro_value_t *rec, const char *name)
{
	avro_value_t f;
	int64_t v;
	ck_assert_int_eq(avro_value_get_by_name(rec, name, &f, NULL), 0);
	ck_assert_int_eq(avro_value_get_long(&f, &v), 0);
	return v;
}

/* Decodes the datum after `header` bytes with avro-c's own reader and the
 * schema file. */
static void read_back_after(size_t header, const void *bytes, size_t len,
			    avro_value_t *out, avro_value_iface_t **iface,
			    avro_schema_t *schema)
{
	const char *json = obx_envelope_schema_json();
	ck_assert_int_eq(
	    avro_schema_from_json_length(json, strlen(json), schema), 0);
	*iface = avro_generic_class_from_schema(*schema);
	ck_assert_int_eq(avro_generic_value_new(*iface, out), 0);
	avro_reader_t reader = avro_reader_memory((const char *)bytes + header,
						  (int64_t)(len - header));
	ck_assert_int_eq(avro_value_read(reader, out), 0);
	avro_reader_free(reader);
}

/* The same, for single-object encoding. */
static void read_back(const void *bytes, size_t len, avro_value_t *out,
		      avro_value_iface_t **iface, avro_schema_t *schema)
{
	read_back_after(OBX_ENVELOPE_HEADER_SIZE, bytes, len, out, iface,
			schema);
}

START_TEST(round_trip_through_avro_c)
{
	obx_envelope_t *env = obx_envelope_new(err, sizeof(err));
	obx_kv_t fields[] = { { "geo", "eu", 2 }, { "tenant", "t9", 2 } };
	const void *bytes;
	size_t len;

	ck_assert_msg(env != NULL, "%s", err);
	obx_event_t ev = sample_event(fields, 2, "{\"a\": [1, \"✓\"]}");
	ck_assert_int_eq(
	    obx_envelope_encode(env, &ev, &bytes, &len, err, sizeof(err)),
	    OBX_OK);

	const unsigned char *b = bytes;
	ck_assert_uint_eq(b[0], 0xC3);
	ck_assert_uint_eq(b[1], 0x01);
	uint64_t fp = 0;
	for (int i = 7; i >= 0; i--)
		fp = (fp << 8) | b[2 + i];
	ck_assert_uint_eq(
	    fp, obx_avro_crc64(expected_canonical, strlen(expected_canonical)));
	ck_assert_uint_eq(fp, obx_envelope_fingerprint(env));

	avro_value_t v, payload, branch, source, map, entry;
	avro_value_iface_t *iface;
	avro_schema_t schema;
	read_back(bytes, len, &v, &iface, &schema);
	ck_assert_str_eq(get_string(&v, "id"), "6f1c-id");
	ck_assert_str_eq(get_string(&v, "aggregate_type"), "order");
	ck_assert_str_eq(get_string(&v, "aggregate_id"), "o-ü");
	ck_assert_str_eq(get_string(&v, "type"), "Created");
	ck_assert_int_eq(get_long(&v, "timestamp"), 1795293321352341LL);
	avro_value_get_by_name(&v, "payload", &payload, NULL);
	int disc;
	avro_value_get_discriminant(&payload, &disc);
	ck_assert_int_eq(disc, 1);
	avro_value_get_current_branch(&payload, &branch);
	const char *s;
	size_t size;
	avro_value_get_string(&branch, &s, &size);
	ck_assert_str_eq(s, "{\"a\": [1, \"✓\"]}");
	avro_value_get_by_name(&v, "source", &source, NULL);
	ck_assert_str_eq(get_string(&source, "db"), "shop");
	ck_assert_str_eq(get_string(&source, "schema"), "public");
	ck_assert_str_eq(get_string(&source, "table"), "outbox");
	ck_assert_int_eq(get_long(&source, "lsn"), 0x1543848);
	ck_assert_int_eq(get_long(&source, "txid"), 733);
	avro_value_get_by_name(&v, "fields", &map, NULL);
	size_t count;
	avro_value_get_size(&map, &count);
	ck_assert_uint_eq(count, 2);
	ck_assert_int_eq(avro_value_get_by_name(&map, "tenant", &entry, NULL),
			 0);
	avro_value_get_string(&entry, &s, &size);
	ck_assert_str_eq(s, "t9");

	avro_value_decref(&v);
	avro_value_iface_decref(iface);
	avro_schema_decref(schema);
	obx_envelope_destroy(env);
}
END_TEST

START_TEST(reused_value_does_not_leak_between_events)
{
	obx_envelope_t *env = obx_envelope_new(err, sizeof(err));
	obx_kv_t fields[] = { { "geo", "eu", 2 } };
	const void *bytes;
	size_t len;

	obx_event_t first = sample_event(fields, 1, "{}");
	ck_assert_int_eq(
	    obx_envelope_encode(env, &first, &bytes, &len, err, sizeof(err)),
	    OBX_OK);
	/* the second event has no extra fields and a NULL payload */
	obx_event_t second = sample_event(NULL, 0, NULL);
	ck_assert_int_eq(
	    obx_envelope_encode(env, &second, &bytes, &len, err, sizeof(err)),
	    OBX_OK);

	avro_value_t v, payload, map;
	avro_value_iface_t *iface;
	avro_schema_t schema;
	read_back(bytes, len, &v, &iface, &schema);
	avro_value_get_by_name(&v, "payload", &payload, NULL);
	int disc;
	avro_value_get_discriminant(&payload, &disc);
	ck_assert_int_eq(disc, 0);
	avro_value_get_by_name(&v, "fields", &map, NULL);
	size_t count;
	avro_value_get_size(&map, &count);
	ck_assert_uint_eq(count, 0);
	avro_value_decref(&v);
	avro_value_iface_decref(iface);
	avro_schema_decref(schema);
	obx_envelope_destroy(env);
}
END_TEST

START_TEST(envelope_larger_than_the_first_guess)
{
	/* the buffer is first sized from the payload: large additional
	 * fields make the envelope outgrow it, more than once */
	obx_envelope_t *env = obx_envelope_new(err, sizeof(err));
	enum { BIG = 40000 };
	char *big = malloc(BIG + 1);
	memset(big, 'z', BIG);
	big[BIG] = '\0';
	obx_kv_t fields[] = { { "blob", big, BIG }, { "tail", "end", 3 } };
	const void *bytes;
	size_t len;

	obx_event_t ev = sample_event(fields, 2, "{}");
	ck_assert_int_eq(
	    obx_envelope_encode(env, &ev, &bytes, &len, err, sizeof(err)),
	    OBX_OK);
	ck_assert_uint_gt(len, BIG);

	avro_value_t v, map, entry;
	avro_value_iface_t *iface;
	avro_schema_t schema;
	read_back(bytes, len, &v, &iface, &schema);
	avro_value_get_by_name(&v, "fields", &map, NULL);
	const char *s;
	size_t size;
	ck_assert_int_eq(avro_value_get_by_name(&map, "blob", &entry, NULL), 0);
	avro_value_get_string(&entry, &s, &size);
	ck_assert_uint_eq(size, BIG + 1);
	ck_assert_str_eq(s, big);
	ck_assert_int_eq(avro_value_get_by_name(&map, "tail", &entry, NULL), 0);
	avro_value_get_string(&entry, &s, &size);
	ck_assert_str_eq(s, "end");
	ck_assert_str_eq(get_string(&v, "id"), "6f1c-id");

	avro_value_decref(&v);
	avro_value_iface_decref(iface);
	avro_schema_decref(schema);
	obx_envelope_destroy(env);
	free(big);
}
END_TEST

START_TEST(registry_framing_carries_the_same_datum)
{
	obx_envelope_t *env = obx_envelope_new(err, sizeof(err));
	obx_kv_t fields[] = { { "geo", "eu", 2 } };
	const void *bytes;
	size_t len;

	obx_event_t ev = sample_event(fields, 1, "{\"n\": 1}");
	ck_assert_int_eq(
	    obx_envelope_encode(env, &ev, &bytes, &len, err, sizeof(err)),
	    OBX_OK);
	size_t datum_len = len - OBX_ENVELOPE_HEADER_SIZE;
	unsigned char *datum = malloc(datum_len);
	memcpy(datum, (const char *)bytes + OBX_ENVELOPE_HEADER_SIZE,
	       datum_len);

	/* Confluent's wire format: magic 0, the id big-endian, the datum */
	obx_envelope_encode_registered(env, &ev, 0x01020384u, &bytes, &len);
	const unsigned char *b = bytes;
	ck_assert_uint_eq(len, OBX_ENVELOPE_REGISTRY_HEADER_SIZE + datum_len);
	ck_assert_uint_eq(b[0], 0);
	ck_assert_uint_eq(b[1], 0x01);
	ck_assert_uint_eq(b[2], 0x02);
	ck_assert_uint_eq(b[3], 0x03);
	ck_assert_uint_eq(b[4], 0x84);
	ck_assert_int_eq(
	    memcmp(b + OBX_ENVELOPE_REGISTRY_HEADER_SIZE, datum, datum_len), 0);

	avro_value_t v;
	avro_value_iface_t *iface;
	avro_schema_t schema;
	read_back_after(OBX_ENVELOPE_REGISTRY_HEADER_SIZE, bytes, len, &v,
			&iface, &schema);
	ck_assert_str_eq(get_string(&v, "aggregate_id"), "o-ü");
	avro_value_decref(&v);
	avro_value_iface_decref(iface);
	avro_schema_decref(schema);
	free(datum);
	obx_envelope_destroy(env);
}
END_TEST

Suite *envelope_suite(void)
{
	Suite *s = suite_create("envelope");
	TCase *tc = tcase_create("fingerprint");
	tcase_add_test(tc, crc64_matches_the_specification_vectors);
	tcase_add_test(tc, canonical_form_of_the_envelope);
	tcase_add_test(tc, canonical_form_rules);
	suite_add_tcase(s, tc);
	tc = tcase_create("encode");
	tcase_add_test(tc, round_trip_through_avro_c);
	tcase_add_test(tc, reused_value_does_not_leak_between_events);
	tcase_add_test(tc, registry_framing_carries_the_same_datum);
	tcase_add_test(tc, envelope_larger_than_the_first_guess);
	suite_add_tcase(s, tc);
	return s;
}
