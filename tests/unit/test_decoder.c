/* test_decoder.c - wal2json v2 lines captured from PostgreSQL 15. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outboxd/decoder.h"
#include "suites.h"

#define GOLDEN TEST_DATA_DIR "/wal2json_basic.tsv"

static char err[1024];

static const char *column(const obx_change_t *c, const char *name)
{
	for (size_t i = 0; i < c->ncolumns; i++)
		if (strcmp(c->columns[i].name, name) == 0)
			return c->columns[i].value;
	ck_abort_msg("no column %s", name);
	return NULL;
}

START_TEST(golden_stream_decodes_in_order)
{
	test_golden_t lines[64];
	size_t n = test_load_golden(GOLDEN, lines, 64);
	obx_config_t *conf = test_config(NULL);
	obx_decoder_t *dec = obx_decoder_new(conf, err, sizeof(err));
	const char *expected = "BIICBICBCBUUCBTCBCBICBNC";
	char kinds[64] = "";
	obx_change_t c;

	ck_assert_uint_eq(n, strlen(expected));
	for (size_t i = 0; i < n; i++) {
		ck_assert_msg(obx_decoder_decode(
				  dec, lines[i].text, strlen(lines[i].text),
				  lines[i].lsn, &c, err, sizeof(err)) == OBX_OK,
			      "line %zu: %s", i + 1, err);
		ck_assert_uint_eq(c.lsn, lines[i].lsn);
		const char *letters = "NBIUDTC";
		kinds[i] = letters[c.kind];

		switch (i) {
		case 0: /* B of xid 733: its commit ends where its C starts */
			ck_assert_int_eq(c.xid, 733);
			ck_assert_uint_eq(c.commit_lsn, lines[3].lsn);
			/* 2026-11-21 20:35:21.352341+00 */
			ck_assert_int_eq(c.commit_time_us, 1795293321352341LL);
			break;
		case 1:
			ck_assert_str_eq(c.schema, "public");
			ck_assert_str_eq(c.table, "outbox");
			ck_assert_uint_eq(c.ncolumns, 7);
			ck_assert_str_eq(column(&c, "aggregateid"), "o-1");
			/* jsonb text exactly as the server printed it */
			ck_assert_str_eq(column(&c, "payload"),
					 "{\"a\": 1, \"s\": \"h\\\"é\\n\"}");
			ck_assert_str_eq(column(&c, "note"), "tab\there");
			break;
		case 2:
			ck_assert_ptr_null(column(&c, "payload"));
			ck_assert_ptr_null(column(&c, "note"));
			break;
		case 3:
			ck_assert_uint_eq(c.commit_lsn, lines[3].lsn);
			break;
		case 19:
			ck_assert_str_eq(column(&c, "aggregateid"), "o-ü-2");
			ck_assert_str_eq(column(&c, "payload"),
					 "{\"name\": \"Zoë ✓ 日本\"}");
			break;
		}
	}
	ck_assert_str_eq(kinds, expected);
	test_free_golden(lines, n);
	obx_decoder_destroy(dec);
	obx_config_destroy(conf);
}
END_TEST

START_TEST(start_options_ask_for_what_we_read)
{
	const char *pairs[] = { "table.include.list=public.outbox,billing.ev",
				NULL };
	obx_config_t *conf = test_config(pairs);
	obx_decoder_t *dec = obx_decoder_new(conf, err, sizeof(err));
	char opts[2048];
	ck_assert_int_eq(
	    obx_decoder_start_options(dec, NULL, opts, sizeof(opts)), OBX_OK);
	const char *want[] = { "\"format-version\" '2'",
			       "\"include-lsn\" '1'",
			       "\"include-xids\" '1'",
			       "\"include-timestamp\" '1'",
			       "\"include-transaction\" '1'",
			       "\"add-tables\" 'public.outbox,billing.ev'" };
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		ck_assert_msg(strstr(opts, want[i]), "missing %s in %s",
			      want[i], opts);
	/* a partitioned table: its whole schema, partitions included */
	const bool partitioned[] = { false, true };
	ck_assert_int_eq(
	    obx_decoder_start_options(dec, partitioned, opts, sizeof(opts)),
	    OBX_OK);
	ck_assert_ptr_nonnull(
	    strstr(opts, "\"add-tables\" 'public.outbox,billing.*'"));
	obx_decoder_destroy(dec);
	obx_config_destroy(conf);
}
END_TEST

static void expect_bad(obx_decoder_t *dec, const char *json, const char *reason)
{
	obx_change_t c;
	obx_lsn_t lsn = ((obx_lsn_t)0x1 << 32) | 0xABCDEF;
	ck_assert_int_eq(obx_decoder_decode(dec, json, strlen(json), lsn, &c,
					    err, sizeof(err)),
			 OBX_BAD_DATA);
	ck_assert_msg(strstr(err, "1/00ABCDEF"), "no LSN in: %s", err);
	ck_assert_msg(strstr(err, reason), "no \"%s\" in: %s", reason, err);
}

START_TEST(malformed_messages_name_lsn_and_reason)
{
	obx_config_t *conf = test_config(NULL);
	obx_decoder_t *dec = obx_decoder_new(conf, err, sizeof(err));

	expect_bad(dec, "{\"action\":\"I\",", "byte");
	expect_bad(dec, "[1,2]", "not a JSON object");
	expect_bad(dec, "{\"xid\":1}", "\"action\"");
	expect_bad(dec, "{\"action\":\"Z\"}", "unknown action");
	expect_bad(dec,
		   "{\"action\":\"B\",\"xid\":1,\"timestamp\":\"2026-01-01 "
		   "00:00:00+00\"}",
		   "nextlsn");
	expect_bad(dec,
		   "{\"action\":\"C\",\"xid\":1,\"nextlsn\":\"0/1\","
		   "\"timestamp\":\"yesterday\"}",
		   "timestamp");
	expect_bad(dec, "{\"action\":\"I\",\"table\":\"t\",\"columns\":[]}",
		   "\"schema\"");
	expect_bad(dec,
		   "{\"action\":\"I\",\"schema\":\"s\",\"table\":\"t\","
		   "\"columns\":{}}",
		   "columns");
	expect_bad(dec,
		   "{\"action\":\"I\",\"schema\":\"s\",\"table\":\"t\","
		   "\"columns\":[{\"value\":1}]}",
		   "no \"name\"");
	expect_bad(dec,
		   "{\"action\":\"I\",\"schema\":\"s\",\"table\":\"t\","
		   "\"columns\":[{\"name\":\"a\",\"value\":[1]}]}",
		   "scalar");
	/* found by the fuzzer: a column without "value" */
	expect_bad(dec,
		   "{\"action\":\"I\",\"schema\":\"s\",\"table\":\"t\","
		   "\"columns\":[{\"name\":\"a\",\"vamue\":1}]}",
		   "has no \"value\"");
	obx_decoder_destroy(dec);
	obx_config_destroy(conf);
}
END_TEST

START_TEST(numbers_and_booleans_become_text)
{
	obx_config_t *conf = test_config(NULL);
	obx_decoder_t *dec = obx_decoder_new(conf, err, sizeof(err));
	obx_change_t c;
	const char *json =
	    "{\"action\":\"I\",\"schema\":\"s\",\"table\":\"t\",\"columns\":"
	    "[{\"name\":\"a\",\"value\":9007199254740993},"
	    "{\"name\":\"b\",\"value\":true},{\"name\":\"c\",\"value\":1.5}]}";
	ck_assert_int_eq(obx_decoder_decode(dec, json, strlen(json), 1, &c, err,
					    sizeof(err)),
			 OBX_OK);
	ck_assert_str_eq(c.columns[0].value, "9007199254740993");
	ck_assert_str_eq(c.columns[1].value, "true");
	ck_assert_str_eq(c.columns[2].value, "1.5");
	obx_decoder_destroy(dec);
	obx_config_destroy(conf);
}
END_TEST

START_TEST(strings_numbers_and_escapes_are_exact)
{
	obx_config_t *conf = test_config(NULL);
	obx_decoder_t *dec = obx_decoder_new(conf, err, sizeof(err));
	obx_change_t c;
	/* escapes, a surrogate pair, raw UTF-8, a numeric beyond 64 bits,
	 * keys in another order, unknown keys and nested values skipped */
	const char *json =
	    "{ \"table\" : \"t\", \"extra\": {\"a\": [1, {\"b\": null}]},"
	    " \"action\":\"I\", \"schema\":\"s\", \"columns\":["
	    "{\"value\":\"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude80é\","
	    "\"name\":\"a\"},"
	    "{\"name\":\"big\",\"type\":\"numeric\","
	    "\"value\":123456789012345678901234567890.000100},"
	    "{\"name\":\"neg\",\"value\":-1.5e-3},"
	    "{\"name\":\"nothing\",\"value\":null}]}";
	ck_assert_msg(obx_decoder_decode(dec, json, strlen(json), 1, &c, err,
					 sizeof(err)) == OBX_OK,
		      "%s", err);
	ck_assert_uint_eq(c.ncolumns, 4);
	ck_assert_str_eq(c.columns[0].name, "a");
	ck_assert_str_eq(c.columns[0].value, "q\"\\/\b\f\n\r\t\xc3\xa9"
					     "\xf0\x9f\x9a\x80\xc3\xa9");
	ck_assert_uint_eq(c.columns[0].value_len, strlen(c.columns[0].value));
	ck_assert_str_eq(c.columns[1].value,
			 "123456789012345678901234567890.000100");
	ck_assert_str_eq(c.columns[2].value, "-1.5e-3");
	ck_assert_ptr_null(c.columns[3].value);
	obx_decoder_destroy(dec);
	obx_config_destroy(conf);
}
END_TEST

START_TEST(scanner_rejects_what_json_does_not_allow)
{
	obx_config_t *conf = test_config(NULL);
	obx_decoder_t *dec = obx_decoder_new(conf, err, sizeof(err));
	char deep[256] = "{\"action\":\"M\",\"x\":";

	expect_bad(dec, "{\"action\":\"M\"} trailing", "trailing");
	expect_bad(dec, "{\"action\":\"M\",}", "expected a key");
	expect_bad(dec, "{\"action\":\"M\" \"b\":1}", "expected ','");
	expect_bad(dec, "{\"action\":\"M\",\"b\":01}", "expected ','");
	expect_bad(dec, "{\"action\":\"M\",\"b\":\"\\u0000\"}", "\\u0000");
	expect_bad(dec, "{\"action\":\"M\",\"b\":\"\\ud800\"}", "surrogate");
	expect_bad(dec, "{\"action\":\"M\",\"b\":\"\xc3\x28\"}", "UTF-8");
	expect_bad(dec, "{\"action\":\"M\",\"b\":\"\xed\xa0\x80\"}", "UTF-8");
	expect_bad(dec, "{\"action\":\"M\",\"b\":\"a\tb\"}", "control");
	expect_bad(dec, "{\"action\":\"M\",\"b\":tru}", "literal");
	for (int i = 0; i < 40; i++)
		strcat(deep, "[");
	expect_bad(dec, deep, "nested too deeply");
	obx_decoder_destroy(dec);
	obx_config_destroy(conf);
}
END_TEST

START_TEST(timestamps_with_offsets)
{
	int64_t us;
	ck_assert_int_eq(
	    obx_parse_timestamptz("1970-01-01 00:00:00+00", 22, &us), 0);
	ck_assert_int_eq(us, 0);
	const char *t = "2000-01-01 05:30:00.5+05:30";
	ck_assert_int_eq(obx_parse_timestamptz(t, strlen(t), &us), 0);
	ck_assert_int_eq(us, 946684800500000LL);
	t = "2000-01-01 00:00:00.000001-01";
	ck_assert_int_eq(obx_parse_timestamptz(t, strlen(t), &us), 0);
	ck_assert_int_eq(us, 946684800000001LL + 3600000000LL);
	t = "2000-13-01 00:00:00+00";
	ck_assert_int_eq(obx_parse_timestamptz(t, strlen(t), &us), -1);
	t = "infinity";
	ck_assert_int_eq(obx_parse_timestamptz(t, strlen(t), &us), -1);
}
END_TEST

START_TEST(lsn_text_round_trip)
{
	obx_lsn_t lsn;
	ck_assert_int_eq(obx_lsn_parse("16/B374D848", 11, &lsn), 0);
	ck_assert_uint_eq(lsn, 0x16B374D848ULL);
	ck_assert_int_eq(obx_lsn_parse("0/0", 3, &lsn), 0);
	ck_assert_int_eq(obx_lsn_parse("0/", 2, &lsn), -1);
	ck_assert_int_eq(obx_lsn_parse("G/1", 3, &lsn), -1);
	ck_assert_int_eq(obx_lsn_parse("1/123456789", 11, &lsn), -1);
}
END_TEST

Suite *decoder_suite(void)
{
	Suite *s = suite_create("decoder");
	TCase *tc = tcase_create("wal2json");
	tcase_add_test(tc, golden_stream_decodes_in_order);
	tcase_add_test(tc, start_options_ask_for_what_we_read);
	tcase_add_test(tc, malformed_messages_name_lsn_and_reason);
	tcase_add_test(tc, numbers_and_booleans_become_text);
	tcase_add_test(tc, strings_numbers_and_escapes_are_exact);
	tcase_add_test(tc, scanner_rejects_what_json_does_not_allow);
	suite_add_tcase(s, tc);
	tc = tcase_create("text");
	tcase_add_test(tc, timestamps_with_offsets);
	tcase_add_test(tc, lsn_text_round_trip);
	suite_add_tcase(s, tc);
	return s;
}
