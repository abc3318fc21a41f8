/* test_router.c - column mapping, topic routing and rejections. */
#include <string.h>

#include "outboxd/router.h"
#include "suites.h"

static char reason[512];

static size_t len_or_zero(const char *s)
{
	return s ? strlen(s) : 0;
}

#define COL(n, v)                                                              \
	{                                                                      \
		n, v, len_or_zero(v)                                           \
	}

static obx_change_t insert(const obx_column_t *cols, size_t n)
{
	obx_change_t c = { 0 };
	c.kind = OBX_CHANGE_INSERT;
	c.xid = 42;
	c.lsn = 0x1000;
	c.schema = "public";
	c.table = "outbox";
	c.columns = cols;
	c.ncolumns = n;
	return c;
}

static const char *header(const obx_event_t *ev, const char *name)
{
	for (size_t i = 0; i < ev->nheaders; i++)
		if (strcmp(ev->headers[i].name, name) == 0)
			return ev->headers[i].value;
	ck_abort_msg("no header %s", name);
	return NULL;
}

START_TEST(insert_maps_columns_and_topic)
{
	obx_config_t *conf = test_config(NULL);
	obx_router_t *r = obx_router_new(conf, "shop");
	obx_column_t cols[] = { COL("id", "e-1"), COL("aggregatetype", "order"),
				COL("aggregateid", "o-7"),
				COL("type", "Created"),
				COL("payload", "{\"x\":1}") };
	obx_change_t c = insert(cols, 5);
	obx_event_t ev;

	ck_assert_int_eq(
	    obx_router_route(r, &c, 123, &ev, reason, sizeof(reason)),
	    OBX_ROUTE_EVENT);
	ck_assert_str_eq(ev.topic, "outbox.event.order");
	ck_assert_str_eq(ev.key, "o-7");
	ck_assert_uint_eq(ev.key_len, 3);
	ck_assert_str_eq(ev.payload, "{\"x\":1}");
	ck_assert_int_eq(ev.timestamp_us, 123);
	ck_assert_str_eq(ev.db, "shop");
	ck_assert_int_eq(ev.xid, 42);
	ck_assert_uint_eq(ev.lsn, 0x1000);
	ck_assert_uint_eq(ev.nheaders, 3);
	ck_assert_str_eq(header(&ev, "id"), "e-1");
	ck_assert_str_eq(header(&ev, "eventType"), "Created");
	ck_assert_str_eq(header(&ev, "aggregateType"), "order");
	ck_assert(!ev.tombstone);
	obx_router_destroy(r);
	obx_config_destroy(conf);
}
END_TEST

START_TEST(custom_columns_template_and_extras)
{
	const char *pairs[] = { "table.include.list=billing.events",
				"table.field.event.id=event_id",
				"table.field.event.key=account",
				"table.field.event.type=kind",
				"table.field.event.payload=body",
				"table.field.event.timestamp=occurred_at",
				"route.by.field=domain",
				"route.topic.replacement=${routedByValue}."
				"events.${routedByValue}",
				"table.fields.additional.placement=tenant:"
				"header,region:envelope:geo,"
				"note:envelope",
				NULL };
	obx_config_t *conf = test_config(pairs);
	obx_router_t *r = obx_router_new(conf, "db");
	obx_column_t cols[] = { COL("event_id", "1"),
				COL("domain", "pay"),
				COL("account", "a-1"),
				COL("kind", "Paid"),
				COL("body", NULL),
				COL("tenant", "t9"),
				COL("region", "eu"),
				COL("note", NULL),
				COL("occurred_at", "2000-01-01 00:00:01+00") };
	obx_change_t c = insert(cols, 9);
	obx_event_t ev;

	c.schema = "billing";
	c.table = "events";
	ck_assert_int_eq(
	    obx_router_route(r, &c, 5, &ev, reason, sizeof(reason)),
	    OBX_ROUTE_EVENT);
	ck_assert_str_eq(ev.topic, "pay.events.pay");
	ck_assert_str_eq(ev.key, "a-1");
	ck_assert_ptr_null(ev.payload);
	ck_assert_int_eq(ev.timestamp_us, 946684801000000LL);
	ck_assert_uint_eq(ev.nheaders, 4);
	ck_assert_str_eq(header(&ev, "tenant"), "t9");
	/* NULL envelope fields are left out of the string map */
	ck_assert_uint_eq(ev.nfields, 1);
	ck_assert_str_eq(ev.fields[0].name, "geo");
	ck_assert_str_eq(ev.fields[0].value, "eu");

	/* a table that is not in the list is noise */
	c.schema = "public";
	c.table = "outbox";
	ck_assert_int_eq(
	    obx_router_route(r, &c, 5, &ev, reason, sizeof(reason)),
	    OBX_ROUTE_IGNORE);
	obx_router_destroy(r);
	obx_config_destroy(conf);
}
END_TEST

START_TEST(tombstone_on_empty_payload)
{
	const char *pairs[] = { "route.tombstone.on.empty.payload=true", NULL };
	obx_config_t *conf = test_config(pairs);
	obx_router_t *r = obx_router_new(conf, "db");
	obx_column_t cols[] = { COL("id", "e"), COL("aggregatetype", "a"),
				COL("aggregateid", "k"), COL("type", "t"),
				COL("payload", NULL) };
	obx_change_t c = insert(cols, 5);
	obx_event_t ev;
	ck_assert_int_eq(
	    obx_router_route(r, &c, 0, &ev, reason, sizeof(reason)),
	    OBX_ROUTE_EVENT);
	ck_assert(ev.tombstone);
	obx_router_destroy(r);
	obx_config_destroy(conf);
}
END_TEST

START_TEST(operations_other_than_insert)
{
	obx_config_t *conf = test_config(NULL);
	obx_router_t *r = obx_router_new(conf, "db");
	obx_column_t cols[] = { COL("id", "e") };
	obx_change_t c = insert(cols, 1);
	obx_event_t ev;

	c.kind = OBX_CHANGE_UPDATE;
	ck_assert_int_eq(
	    obx_router_route(r, &c, 0, &ev, reason, sizeof(reason)),
	    OBX_ROUTE_INVALID_OP);
	ck_assert_ptr_nonnull(
	    strstr(reason, "UPDATE on outbox table public.outbox"));
	c.kind = OBX_CHANGE_TRUNCATE;
	ck_assert_int_eq(
	    obx_router_route(r, &c, 0, &ev, reason, sizeof(reason)),
	    OBX_ROUTE_INVALID_OP);
	ck_assert_ptr_nonnull(strstr(reason, "TRUNCATE"));
	c.kind = OBX_CHANGE_DELETE;
	ck_assert_int_eq(
	    obx_router_route(r, &c, 0, &ev, reason, sizeof(reason)),
	    OBX_ROUTE_IGNORE);
	c.table = "orders";
	c.kind = OBX_CHANGE_UPDATE;
	ck_assert_int_eq(
	    obx_router_route(r, &c, 0, &ev, reason, sizeof(reason)),
	    OBX_ROUTE_IGNORE);
	obx_router_destroy(r);
	obx_config_destroy(conf);
}
END_TEST

static void expect_bad(obx_router_t *r, obx_column_t *cols, size_t n,
		       const char *why)
{
	obx_change_t c = insert(cols, n);
	obx_event_t ev;
	ck_assert_int_eq(
	    obx_router_route(r, &c, 0, &ev, reason, sizeof(reason)),
	    OBX_ROUTE_BAD_EVENT);
	ck_assert_msg(strstr(reason, why), "no \"%s\" in \"%s\"", why, reason);
}

START_TEST(rows_that_cannot_be_records)
{
	obx_config_t *conf = test_config(NULL);
	obx_router_t *r = obx_router_new(conf, "db");
	char long_type[300];
	memset(long_type, 'a', sizeof(long_type) - 1);
	long_type[sizeof(long_type) - 1] = '\0';

	obx_column_t null_key[] = { COL("id", "e"), COL("aggregatetype", "a"),
				    COL("aggregateid", NULL), COL("type", "t"),
				    COL("payload", "{}") };
	expect_bad(r, null_key, 5,
		   "\"aggregateid\" (table.field.event.key) is NULL");
	obx_column_t null_route[] = { COL("id", "e"),
				      COL("aggregatetype", NULL),
				      COL("aggregateid", "k"), COL("type", "t"),
				      COL("payload", "{}") };
	expect_bad(r, null_route, 5, "route.by.field");
	obx_column_t bad_topic[] = { COL("id", "e"),
				     COL("aggregatetype", "a b/c"),
				     COL("aggregateid", "k"), COL("type", "t"),
				     COL("payload", "{}") };
	expect_bad(r, bad_topic, 5, "not a valid Kafka topic name");
	obx_column_t long_topic[] = { COL("id", "e"),
				      COL("aggregatetype", long_type),
				      COL("aggregateid", "k"), COL("type", "t"),
				      COL("payload", "{}") };
	expect_bad(r, long_topic, 5, "not a valid Kafka topic name");
	obx_column_t missing[] = { COL("id", "e"), COL("aggregatetype", "a"),
				   COL("aggregateid", "k"), COL("type", "t") };
	expect_bad(r, missing, 4,
		   "\"payload\" (table.field.event.payload) is missing");
	obx_router_destroy(r);
	obx_config_destroy(conf);
}
END_TEST

START_TEST(topic_name_rule)
{
	ck_assert(obx_topic_name_valid("outbox.event.Order-1_x", 22));
	ck_assert(!obx_topic_name_valid("", 0));
	ck_assert(!obx_topic_name_valid(".", 1));
	ck_assert(!obx_topic_name_valid("..", 2));
	ck_assert(!obx_topic_name_valid("ü", strlen("ü")));
}
END_TEST

Suite *router_suite(void)
{
	Suite *s = suite_create("router");
	TCase *tc = tcase_create("mapping");
	tcase_add_test(tc, insert_maps_columns_and_topic);
	tcase_add_test(tc, custom_columns_template_and_extras);
	tcase_add_test(tc, tombstone_on_empty_payload);
	suite_add_tcase(s, tc);
	tc = tcase_create("rejections");
	tcase_add_test(tc, operations_other_than_insert);
	tcase_add_test(tc, rows_that_cannot_be_records);
	tcase_add_test(tc, topic_name_rule);
	suite_add_tcase(s, tc);
	return s;
}
