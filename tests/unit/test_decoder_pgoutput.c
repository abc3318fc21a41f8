/*
 * test_decoder_pgoutput.c - pgoutput protocol version 1 messages captured
 * from PostgreSQL 15 (tests/data/capture_pgoutput.py), and the outbox
 * messages both plugins decode alike.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outboxd/decoder.h"
#include "suites.h"

#define GOLDEN TEST_DATA_DIR "/pgoutput_basic.tsv"

static char err[1024];

typedef struct {
	obx_lsn_t lsn;
	unsigned char *data;
	size_t len;
} golden_msg_t;

/* The captured messages, as bytes. */
static size_t load_golden(golden_msg_t *msgs, size_t max)
{
	test_golden_t lines[64];
	size_t n = test_load_golden(GOLDEN, lines, max < 64 ? max : 64);
	for (size_t i = 0; i < n; i++) {
		msgs[i].lsn = lines[i].lsn;
		msgs[i].len = strlen(lines[i].text) / 2;
		msgs[i].data = malloc(msgs[i].len + 1);
		for (size_t j = 0; j < msgs[i].len; j++) {
			unsigned byte;
			ck_assert_int_eq(
			    sscanf(lines[i].text + 2 * j, "%2x", &byte), 1);
			msgs[i].data[j] = (unsigned char)byte;
		}
	}
	test_free_golden(lines, n);
	return n;
}

static void free_golden(golden_msg_t *msgs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(msgs[i].data);
}

static obx_decoder_t *pgoutput_decoder(obx_config_t **conf)
{
	const char *pairs[] = { "plugin.name=pgoutput",
				"outbox.messages.prefix=outbox", NULL };
	*conf = test_config(pairs);
	obx_decoder_t *dec = obx_decoder_new(*conf, err, sizeof(err));
	ck_assert_msg(dec, "%s", err);
	return dec;
}

static const char *column(const obx_change_t *c, const char *name)
{
	for (size_t i = 0; i < c->ncolumns; i++)
		if (strcmp(c->columns[i].name, name) == 0)
			return c->columns[i].value;
	ck_abort_msg("no column %s", name);
	return NULL;
}

static obx_err_t decode(obx_decoder_t *dec, const golden_msg_t *m,
			obx_change_t *c)
{
	return obx_decoder_decode(dec, (const char *)m->data, m->len, m->lsn, c,
				  err, sizeof(err));
}

/* What each captured message must become (see capture_pgoutput.py). */
static void check_line(size_t i, const obx_change_t *c,
		       const golden_msg_t *msgs)
{
	switch (i) {
	case 0: /* Begin of the first transaction: its commit time */
		ck_assert_int_eq(c->xid, 730);
		ck_assert_int_eq(c->commit_time_us, 1796087453482134LL);
		break;
	case 4:
		ck_assert_str_eq(c->schema, "public");
		ck_assert_str_eq(c->table, "outbox");
		ck_assert_uint_eq(c->ncolumns, 7);
		ck_assert_int_eq(c->xid, 730);
		ck_assert_str_eq(column(c, "aggregateid"), "o-1");
		/* jsonb as the server prints it, as wal2json gives it */
		ck_assert_str_eq(
		    column(c, "payload"),
		    "{\"items\": [\"a\", \"b\"], \"total\": 12.5}");
		ck_assert_str_eq(column(c, "created_at"),
				 "2026-11-21 20:35:21.352341+00");
		ck_assert_ptr_null(column(c, "tenant"));
		break;
	case 5:
		ck_assert_ptr_null(column(c, "payload"));
		break;
	case 6: /* Commit: the end of the commit record, and its time */
		ck_assert_uint_eq(c->commit_lsn, msgs[6].lsn);
		ck_assert_int_eq(c->commit_time_us, 1796087453482134LL);
		ck_assert_int_eq(c->xid, 730);
		break;
	case 8:
		ck_assert_str_eq(column(c, "aggregateid"), "k-\xc3\xbc");
		ck_assert_str_eq(column(c, "payload"),
				 "{\"name\": \"Zo\xc3\xab \xc3\xa9 "
				 "\xf0\x9f\x98\x80\"}");
		ck_assert_str_eq(column(c, "tenant"), "a\tb");
		ck_assert_str_eq(column(c, "aggregatetype"), "kunde");
		break;
	case 11: /* a TOASTed value arrives whole in an INSERT */
		ck_assert_uint_gt(strlen(column(c, "payload")), 12800);
		break;
	case 14: /* ... and as "unchanged" in an UPDATE that left it */
		ck_assert_ptr_null(column(c, "payload"));
		ck_assert_str_eq(column(c, "type"), "Bigger");
		break;
	case 17: /* DELETE by key: the other columns are absent */
		ck_assert_str_eq(column(c, "id"),
				 "f8c565af-f077-457c-9560-bba20bec129d");
		ck_assert_ptr_null(column(c, "aggregateid"));
		break;
	case 24: /* DELETE with REPLICA IDENTITY FULL */
		ck_assert_str_eq(c->table, "ledger");
		ck_assert_str_eq(column(c, "id"), "1");
		break;
	case 29: /* TRUNCATE orders, ledger */
		ck_assert_str_eq(c->table, "orders");
		break;
	case 33: /* after ALTER TABLE ADD COLUMN: the new Relation's shape */
		ck_assert_uint_eq(c->ncolumns, 8);
		ck_assert_str_eq(column(c, "region"), "eu");
		ck_assert_str_eq(column(c, "payload"), "[]");
		break;
	case 36: /* an outbox message: the same columns as a row */
		ck_assert_str_eq(c->schema, "");
		ck_assert_str_eq(c->table, "outbox");
		ck_assert_ptr_null(c->invalid);
		ck_assert_int_eq(c->xid, 740);
		ck_assert_str_eq(column(c, "aggregateid"), "o-4");
		ck_assert_str_eq(column(c, "type"), "OrderPaid");
		/* a JSON value keeps its text as written */
		ck_assert_str_eq(column(c, "payload"), "{\"paid\" : true}");
		/* the message's own position */
		ck_assert_uint_eq(c->lsn, msgs[36].lsn);
		break;
	}
}

START_TEST(golden_stream_decodes_in_order)
{
	golden_msg_t msgs[64];
	size_t n = load_golden(msgs, 64);
	obx_config_t *conf;
	obx_decoder_t *dec = pgoutput_decoder(&conf);
	/* R and Y messages, other prefixes and a non-transactional message
	 * are nothing to route (N) */
	const char *expected = "BNINIICBICBICBUCBDCBNICBDCBNNTCBNICBMNCNBNIC";
	char kinds[64] = "";
	obx_change_t c;

	ck_assert_uint_eq(n, strlen(expected));
	for (size_t i = 0; i < n; i++) {
		ck_assert_msg(decode(dec, &msgs[i], &c) == OBX_OK,
			      "line %zu: %s", i + 1, err);
		kinds[i] = "NBIUDTCM"[c.kind];
		check_line(i, &c, msgs);
	}
	ck_assert_str_eq(kinds, expected);
	free_golden(msgs, n);
	obx_decoder_destroy(dec);
	obx_config_destroy(conf);
}
END_TEST

/* Every prefix of every captured message is refused with its LSN, never
 * read past (ASan watches the copies, which end where the prefix does). */
START_TEST(cut_messages_are_refused_naming_the_lsn)
{
	golden_msg_t msgs[64];
	size_t n = load_golden(msgs, 64);
	obx_config_t *conf;
	obx_decoder_t *dec = pgoutput_decoder(&conf);
	obx_change_t c;
	char lsn[32];

	for (size_t i = 0; i < n; i++) {
		/* the relations first, as the server sends them */
		ck_assert_int_eq(decode(dec, &msgs[i], &c), OBX_OK);
		for (size_t cut = 1; cut < msgs[i].len; cut++) {
			golden_msg_t m = msgs[i];
			m.data = malloc(cut);
			memcpy(m.data, msgs[i].data, cut);
			m.len = cut;
			obx_err_t e = decode(dec, &m, &c);
			free(m.data);
			/* a message's content may be cut to valid JSON: it
			 * is then a (bad or good) event, never a crash */
			if (msgs[i].data[0] == 'M' && e == OBX_OK)
				continue;
			ck_assert_msg(e == OBX_BAD_DATA,
				      "line %zu cut at %zu: accepted", i + 1,
				      cut);
			snprintf(lsn, sizeof(lsn), OBX_LSN_FMT,
				 OBX_LSN_ARGS(msgs[i].lsn));
			ck_assert_msg(strstr(err, lsn), "no LSN in %s", err);
		}
	}
	free_golden(msgs, n);
	obx_decoder_destroy(dec);
	obx_config_destroy(conf);
}
END_TEST

static void expect_bad(obx_decoder_t *dec, const char *bytes, size_t len,
		       const char *reason)
{
	obx_change_t c;
	ck_assert_int_eq(obx_decoder_decode(dec, bytes, len, 0x1ABCDEF0ULL, &c,
					    err, sizeof(err)),
			 OBX_BAD_DATA);
	ck_assert_msg(strstr(err, "0/1ABCDEF0"), "no LSN in: %s", err);
	ck_assert_msg(strstr(err, reason), "no \"%s\" in: %s", reason, err);
}

START_TEST(malformed_messages_name_lsn_and_reason)
{
	obx_config_t *conf;
	obx_decoder_t *dec = pgoutput_decoder(&conf);
	/* a relation 7 with one column "a" */
	static const char relation[] = "R\0\0\0\x07public\0t\0d\0\x01"
				       "\x01"
				       "a\0\0\0\0\x19\xff\xff\xff\xff";
	obx_change_t c;
	ck_assert_int_eq(obx_decoder_decode(dec, relation, sizeof(relation) - 1,
					    1, &c, err, sizeof(err)),
			 OBX_OK);
	expect_bad(dec, "Z", 1, "unknown message type 0x5a");
	expect_bad(dec, "I\0\0\0\x09N\0\x01n", 9, "relation 9");
	expect_bad(dec, "I\0\0\0\x07N\0\x02nn", 10, "has 2 columns");
	expect_bad(dec, "I\0\0\0\x07N\0\x01u", 9, "unchanged-TOAST");
	expect_bad(dec,
		   "I\0\0\0\x07N\0\x01"
		   "b\0\0\0\x01x",
		   13, "not text");
	expect_bad(dec, "I\0\0\0\x07N\0\x01t\0\0\0\x09xy", 14, "cut short");
	expect_bad(dec, "I\0\0\0\x07X\0\x01n", 9, "tuple tag 0x58");
	expect_bad(dec, "R\0\0\0\x08s\0t\0d\xff\xff", 12, "claims 65535");
	obx_decoder_destroy(dec);
	obx_config_destroy(conf);
}
END_TEST

START_TEST(start_options_ask_for_what_we_read)
{
	const char *pairs[] = { "plugin.name=pgoutput",
				"publication.name=orders_pub", NULL };
	obx_config_t *conf = test_config(pairs);
	obx_decoder_t *dec = obx_decoder_new(conf, err, sizeof(err));
	char opts[2048];
	ck_assert_int_eq(
	    obx_decoder_start_options(dec, NULL, opts, sizeof(opts)), OBX_OK);
	ck_assert_str_eq(opts, "(\"proto_version\" '1', \"publication_names\" "
			       "'orders_pub')");
	obx_decoder_destroy(dec);
	obx_config_destroy(conf);
	/* messages only when they can be events */
	dec = pgoutput_decoder(&conf);
	ck_assert_int_eq(
	    obx_decoder_start_options(dec, NULL, opts, sizeof(opts)), OBX_OK);
	ck_assert_ptr_nonnull(strstr(opts, ", \"messages\" 'true')"));
	obx_decoder_destroy(dec);
	obx_config_destroy(conf);
}
END_TEST

/*
 * One transactional message with `content` as each plugin sends it: a
 * pgoutput 'M' message, or a wal2json "M" line with the content as a JSON
 * string.
 */
static size_t message_bytes(const char *plugin, const char *content, char *buf,
			    size_t size)
{
	size_t len = strlen(content);
	if (strcmp(plugin, "wal2json") == 0) {
		int n = snprintf(buf, size,
				 "{\"action\":\"M\",\"xid\":5,\"lsn\":\"0/"
				 "10\",\"transactional\":true,\"prefix\":"
				 "\"outbox\",\"content\":\"");
		for (size_t i = 0; i < len; i++) {
			if (content[i] == '"' || content[i] == '\\')
				buf[n++] = '\\';
			buf[n++] = content[i];
		}
		n += snprintf(buf + n, size - (size_t)n, "\"}");
		return (size_t)n;
	}
	memcpy(buf, "M\x01\0\0\0\0\0\0\0\x10outbox\0", 17);
	buf[17] = (char)(len >> 24), buf[18] = (char)(len >> 16);
	buf[19] = (char)(len >> 8), buf[20] = (char)len;
	memcpy(buf + 21, content, len);
	return 21 + len;
}

static const char *const plugins[] = { "wal2json", "pgoutput" };

/* Looped over both plugins: the same message is the same change. */
START_TEST(outbox_messages_are_the_same_change_with_either_plugin)
{
	char plugin_opt[64], buf[1024];
	snprintf(plugin_opt, sizeof(plugin_opt), "plugin.name=%s", plugins[_i]);
	const char *pairs[] = { plugin_opt, "outbox.messages.prefix=outbox",
				NULL };
	obx_config_t *conf = test_config(pairs);
	obx_decoder_t *dec = obx_decoder_new(conf, err, sizeof(err));
	obx_change_t c;

	const char *good = "{\"id\": \"e-1\", \"aggregateid\": \"k\\u00fc\", "
			   "\"n\": 12.50, \"ok\": false, \"none\": null, "
			   "\"payload\": [1, {\"a\" :2}]}";
	size_t len = message_bytes(plugins[_i], good, buf, sizeof(buf));
	ck_assert_msg(obx_decoder_decode(dec, buf, len, 0x10, &c, err,
					 sizeof(err)) == OBX_OK,
		      "%s", err);
	ck_assert_int_eq(c.kind, OBX_CHANGE_MESSAGE);
	ck_assert_uint_eq(c.lsn, 0x10);
	ck_assert_uint_eq(c.ncolumns, 6);
	ck_assert_str_eq(column(&c, "id"), "e-1");
	ck_assert_str_eq(column(&c, "aggregateid"), "k\xc3\xbc");
	ck_assert_str_eq(column(&c, "n"), "12.50");
	ck_assert_str_eq(column(&c, "ok"), "false");
	ck_assert_ptr_null(column(&c, "none"));
	ck_assert_str_eq(column(&c, "payload"), "[1, {\"a\" :2}]");

	/* not a JSON object: a bad event carrying its bytes, not a bad
	 * stream */
	const char *bad[] = { "[1]", "{\"id\": ", "plain text" };
	for (size_t i = 0; i < OBX_ARRAY_LEN(bad); i++) {
		len = message_bytes(plugins[_i], bad[i], buf, sizeof(buf));
		ck_assert_int_eq(obx_decoder_decode(dec, buf, len, 0x10, &c,
						    err, sizeof(err)),
				 OBX_OK);
		ck_assert_int_eq(c.kind, OBX_CHANGE_MESSAGE);
		ck_assert_ptr_nonnull(c.invalid);
		ck_assert_ptr_nonnull(strstr(c.invalid, "not a JSON object"));
		ck_assert_str_eq(column(&c, "content"), bad[i]);
	}
	obx_decoder_destroy(dec);
	obx_config_destroy(conf);
}
END_TEST

Suite *decoder_pgoutput_suite(void)
{
	Suite *s = suite_create("decoder_pgoutput");
	TCase *tc = tcase_create("pgoutput");
	tcase_add_test(tc, golden_stream_decodes_in_order);
	tcase_add_test(tc, cut_messages_are_refused_naming_the_lsn);
	tcase_add_test(tc, malformed_messages_name_lsn_and_reason);
	tcase_add_test(tc, start_options_ask_for_what_we_read);
	suite_add_tcase(s, tc);
	tc = tcase_create("messages");
	tcase_add_loop_test(
	    tc, outbox_messages_are_the_same_change_with_either_plugin, 0,
	    (int)OBX_ARRAY_LEN(plugins));
	suite_add_tcase(s, tc);
	return s;
}
