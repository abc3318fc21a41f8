/* test_config.c - option table: defaults, file, environment, validation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "outboxd/config.h"
#include "suites.h"

static char err[1024];

static char *write_temp(const char *text)
{
	static char path[64];
	strcpy(path, "/tmp/outboxd-test-XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (int)strlen(text));
	close(fd);
	return path;
}

static const char *kafka_value(const obx_config_t *c, const char *key)
{
	for (size_t i = 0; i < c->nkafka; i++)
		if (strcmp(c->kafka[i].key, key) == 0)
			return c->kafka[i].value;
	return NULL;
}

START_TEST(defaults_follow_the_spec)
{
	obx_config_t *c = obx_config_new();
	ck_assert_str_eq(c->slot_name, "outboxd");
	ck_assert(c->slot_create);
	ck_assert_str_eq(c->state_topic, "outboxd.state");
	ck_assert_int_eq(c->shutdown_timeout_ms, 90000);
	ck_assert_str_eq(c->table_include_list, "public.outbox");
	ck_assert_str_eq(c->field_event_key, "aggregateid");
	ck_assert_str_eq(c->route_topic_replacement,
			 "outbox.event.${routedByValue}");
	ck_assert_ptr_null(c->field_event_timestamp);
	ck_assert_int_eq(c->errors_bad_event, OBX_BAD_EVENT_DLQ);
	ck_assert_int_eq(c->op_invalid_behavior, OBX_INVALID_OP_WARN);
	ck_assert_int_eq(c->max_inflight_events, 10000);
	ck_assert_int_eq(c->status_interval_ms, 10000);
	ck_assert_str_eq(obx_config_plugin(c), "wal2json");
	obx_config_destroy(c);
}
END_TEST

START_TEST(file_sets_keys_and_kafka_passthrough)
{
	obx_config_t *c = obx_config_new();
	char *path = write_temp("# comment\n! also a comment\n\n"
				"database.url = host=/tmp dbname=shop\n"
				"slot.name=orders_slot\n"
				"  max.inflight.events =  500  \n"
				"kafka.bootstrap.servers = 127.0.0.1:9092\n"
				"kafka.linger.ms = 5\n"
				"kafka.acks = 1\n");
	ck_assert_int_eq(obx_config_load_file(c, path, err, sizeof(err)),
			 OBX_OK);
	ck_assert_int_eq(obx_config_validate(c, err, sizeof(err)), OBX_OK);
	ck_assert_str_eq(c->database_url, "host=/tmp dbname=shop");
	ck_assert_str_eq(c->slot_name, "orders_slot");
	ck_assert_int_eq(c->max_inflight_events, 500);
	ck_assert_str_eq(kafka_value(c, "linger.ms"), "5");
	/* the user's choice wins over our default; other defaults fill in */
	ck_assert_str_eq(kafka_value(c, "acks"), "1");
	ck_assert_str_eq(kafka_value(c, "enable.idempotence"), "true");
	ck_assert_str_eq(kafka_value(c, "partitioner"), "murmur2_random");
	unlink(path);
	obx_config_destroy(c);
}
END_TEST

START_TEST(unknown_key_names_the_closest_and_the_line)
{
	obx_config_t *c = obx_config_new();
	char *path = write_temp("slot.name = a\nslot.nmae = b\n");
	ck_assert_int_eq(obx_config_load_file(c, path, err, sizeof(err)),
			 OBX_CONFIG);
	ck_assert_ptr_nonnull(strstr(err, ":2:"));
	ck_assert_ptr_nonnull(strstr(err, "\"slot.nmae\""));
	ck_assert_ptr_nonnull(strstr(err, "did you mean \"slot.name\""));
	unlink(path);
	obx_config_destroy(c);
}
END_TEST

START_TEST(bad_values_are_rejected_with_the_key)
{
	obx_config_t *c = obx_config_new();
	ck_assert_int_eq(obx_config_set(c, "max.inflight.events", "0", "t", err,
					sizeof(err)),
			 OBX_CONFIG);
	ck_assert_ptr_nonnull(strstr(err, "max.inflight.events"));
	ck_assert_int_eq(
	    obx_config_set(c, "slot.create", "maybe", "t", err, sizeof(err)),
	    OBX_CONFIG);
	ck_assert_int_eq(obx_config_set(c, "errors.bad.event", "ignore", "t",
					err, sizeof(err)),
			 OBX_CONFIG);
	ck_assert_ptr_nonnull(strstr(err, "dlq, fail, skip"));
	obx_config_destroy(c);
}
END_TEST

START_TEST(environment_overrides_file)
{
	obx_config_t *c = obx_config_new();
	char *env[] = { "OUTBOXD_SLOT_NAME=from_env",
			"OUTBOXD_KAFKA_BOOTSTRAP_SERVERS=k:1",
			"OUTBOXD_DATABASE_URL=dbname=x",
			/* Kubernetes service variables are not ours */
			"OUTBOXD_SERVICE_HOST=10.0.0.1", "PATH=/bin", NULL };
	ck_assert_int_eq(
	    obx_config_set(c, "slot.name", "from_file", "t", err, sizeof(err)),
	    OBX_OK);
	ck_assert_int_eq(obx_config_load_env(c, env, err, sizeof(err)), OBX_OK);
	ck_assert_int_eq(obx_config_validate(c, err, sizeof(err)), OBX_OK);
	ck_assert_str_eq(c->slot_name, "from_env");
	ck_assert_str_eq(kafka_value(c, "bootstrap.servers"), "k:1");
	obx_config_destroy(c);
}
END_TEST

START_TEST(validation_requires_url_and_bootstrap)
{
	obx_config_t *c = obx_config_new();
	ck_assert_int_eq(obx_config_validate(c, err, sizeof(err)), OBX_CONFIG);
	ck_assert_ptr_nonnull(strstr(err, "database.url"));
	ck_assert_ptr_nonnull(strstr(err, "OUTBOXD_DATABASE_URL"));
	obx_config_set(c, "database.url", "dbname=x", "t", err, sizeof(err));
	ck_assert_int_eq(obx_config_validate(c, err, sizeof(err)), OBX_CONFIG);
	ck_assert_ptr_nonnull(strstr(err, "kafka.bootstrap.servers"));
	obx_config_set(c, "kafka.bootstrap.servers", "k:1", "t", err,
		       sizeof(err));
	obx_config_set(c, "slot.name", "Bad-Name", "t", err, sizeof(err));
	ck_assert_int_eq(obx_config_validate(c, err, sizeof(err)), OBX_CONFIG);
	ck_assert_ptr_nonnull(strstr(err, "slot.name"));
	obx_config_destroy(c);
}
END_TEST

START_TEST(tables_and_additional_fields_are_parsed)
{
	obx_config_t *c = obx_config_new();
	obx_config_set(c, "database.url", "dbname=x", "t", err, sizeof(err));
	obx_config_set(c, "kafka.bootstrap.servers", "k:1", "t", err,
		       sizeof(err));
	obx_config_set(c, "table.include.list", "outbox, billing.events", "t",
		       err, sizeof(err));
	obx_config_set(c, "table.fields.additional.placement",
		       "tenant:header, region:envelope:geo", "t", err,
		       sizeof(err));
	ck_assert_int_eq(obx_config_validate(c, err, sizeof(err)), OBX_OK);
	ck_assert_uint_eq(c->ntables, 2);
	ck_assert_str_eq(c->tables[0].schema, "public");
	ck_assert_str_eq(c->tables[0].table, "outbox");
	ck_assert_str_eq(c->tables[1].schema, "billing");
	ck_assert_str_eq(c->tables[1].table, "events");
	ck_assert_uint_eq(c->nadditional, 2);
	ck_assert_str_eq(c->additional[0].alias, "tenant");
	ck_assert_int_eq(c->additional[0].placement, OBX_PLACE_HEADER);
	ck_assert_str_eq(c->additional[1].column, "region");
	ck_assert_str_eq(c->additional[1].alias, "geo");
	ck_assert_int_eq(c->additional[1].placement, OBX_PLACE_ENVELOPE);

	obx_config_set(c, "table.fields.additional.placement", "x:footer", "t",
		       err, sizeof(err));
	ck_assert_int_eq(obx_config_validate(c, err, sizeof(err)), OBX_CONFIG);
	ck_assert_ptr_nonnull(strstr(err, "x:footer"));
	obx_config_set(c, "table.fields.additional.placement", "", "t", err,
		       sizeof(err));
	obx_config_set(c, "table.include.list", "public.out'box", "t", err,
		       sizeof(err));
	ck_assert_int_eq(obx_config_validate(c, err, sizeof(err)), OBX_CONFIG);
	obx_config_destroy(c);
}
END_TEST

/* A minimal valid configuration with this table.include.list. */
static obx_config_t *config_with_tables(const char *list)
{
	obx_config_t *c = obx_config_new();
	obx_config_set(c, "database.url", "dbname=x", "t", err, sizeof(err));
	obx_config_set(c, "kafka.bootstrap.servers", "k:1", "t", err,
		       sizeof(err));
	obx_config_set(c, "table.include.list", list, "t", err, sizeof(err));
	return c;
}

/* As PostgreSQL resolves them: unquoted names fold to lower case, quoted
 * ones keep theirs; wal2json compares names exactly. */
START_TEST(table_names_resolve_like_postgresql)
{
	const struct {
		const char *list, *schema, *table;
	} ok[] = {
		{ "public.Outbox", "public", "outbox" },
		{ "Billing.OUTBOX", "billing", "outbox" },
		{ "public.\"Outbox\"", "public", "Outbox" },
		{ "\"Billing\".events_$1", "Billing", "events_$1" },
		{ "Outbox", "public", "outbox" },
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		obx_config_t *c = config_with_tables(ok[i].list);
		ck_assert_msg(obx_config_validate(c, err, sizeof(err)) ==
				  OBX_OK,
			      "%s: %s", ok[i].list, err);
		ck_assert_str_eq(c->tables[0].schema, ok[i].schema);
		ck_assert_str_eq(c->tables[0].table, ok[i].table);
		obx_config_destroy(c);
	}
	const char *bad[] = { "public.\"Out box\"",
			      "public.\"Outbox",
			      "public.",
			      ".outbox",
			      "a.b.c",
			      "public.1outbox" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		obx_config_t *c = config_with_tables(bad[i]);
		ck_assert_msg(obx_config_validate(c, err, sizeof(err)) ==
				  OBX_CONFIG,
			      "%s accepted", bad[i]);
		ck_assert_ptr_nonnull(strstr(err, "table.include.list"));
		obx_config_destroy(c);
	}
}
END_TEST

START_TEST(reference_lists_every_key)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	obx_config_write_reference(out);
	fclose(out);
	const char *keys[] = { "database.url",
			       "slot.name",
			       "table.op.invalid.behavior",
			       "errors.bad.event",
			       "max.inflight.events",
			       "kafka.*" };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		ck_assert_msg(strstr(text, keys[i]), "missing %s", keys[i]);
	free(text);
}
END_TEST

START_TEST(millisecond_settings_convert_in_64_bits)
{
	/* the largest values the settings allow, held in 32-bit types */
	int32_t day_ms = 86400000;
	ck_assert_int_eq(OBX_MS_TO_US(day_ms), 86400000000LL);
	const char *pairs[] = { "shutdown.timeout.ms=86400000",
				"heartbeat.interval.ms=86400000", NULL };
	obx_config_t *c = test_config(pairs);
	ck_assert_int_eq(OBX_MS_TO_US(c->shutdown_timeout_ms), 86400000000LL);
	ck_assert_int_eq(OBX_MS_TO_US(c->heartbeat_interval_ms), 86400000000LL);
	obx_config_destroy(c);
}
END_TEST

START_TEST(mapped_columns_come_from_the_option_table)
{
	const char *pairs[] = {
		"table.field.event.key=account",
		"table.field.event.timestamp=created_at",
		"table.fields.additional.placement=tenant:header", NULL
	};
	obx_config_t *c = test_config(pairs);
	ck_assert_uint_eq(c->ncolumns, OBX_COL_FIXED + 1);
	ck_assert_str_eq(c->columns[OBX_COL_KEY].column, "account");
	ck_assert_str_eq(c->columns[OBX_COL_KEY].option,
			 "table.field.event.key");
	ck_assert(!c->columns[OBX_COL_KEY].nullable);
	ck_assert_str_eq(c->columns[OBX_COL_ROUTE].column, "aggregatetype");
	ck_assert(c->columns[OBX_COL_PAYLOAD].nullable);
	ck_assert_str_eq(c->columns[OBX_COL_TIMESTAMP].column, "created_at");
	ck_assert_str_eq(c->columns[OBX_COL_FIXED].column, "tenant");
	ck_assert(c->columns[OBX_COL_FIXED].nullable);
	obx_config_destroy(c);

	/* unset timestamp: no column */
	c = test_config(NULL);
	ck_assert_ptr_null(c->columns[OBX_COL_TIMESTAMP].column);
	obx_config_destroy(c);
}
END_TEST

START_TEST(a_debezium_connector_config_translates_line_by_line)
{
	obx_config_t *c = obx_config_new();
	char *path = write_temp(
	    "name=outbox\n"
	    "connector.class=io.debezium.connector.postgresql."
	    "PostgresConnector\n"
	    "plugin.name=pgoutput\n"
	    "slot.name=dbz\n"
	    "publication.name=dbz_publication\n"
	    "publication.autocreate.mode=disabled\n"
	    "table.include.list=public.outbox\n"
	    "snapshot.mode=no_data\n"
	    "tombstones.on.delete=false\n"
	    "topic.prefix=shop\n"
	    "transforms=outbox\n"
	    "transforms.outbox.type=io.debezium.transforms.outbox.EventRouter\n"
	    "transforms.outbox.route.topic.replacement=ev.${routedByValue}\n"
	    "transforms.outbox.table.field.event.key=aggregate_id\n"
	    "transforms.outbox.table.fields.additional.placement="
	    "type:header:eventType\n"
	    "database.url = dbname=shop\n"
	    "kafka.bootstrap.servers = 127.0.0.1:9092\n");
	ck_assert_msg(obx_config_load_file(c, path, err, sizeof(err)) == OBX_OK,
		      "%s", err);
	ck_assert_int_eq(obx_config_validate(c, err, sizeof(err)), OBX_OK);
	ck_assert_int_eq(c->plugin_name, OBX_PLUGIN_PGOUTPUT);
	ck_assert_str_eq(c->publication_name, "dbz_publication");
	ck_assert_int_eq(c->publication_autocreate_mode,
			 OBX_PUBLICATION_DISABLED);
	ck_assert_str_eq(c->route_topic_replacement, "ev.${routedByValue}");
	ck_assert_str_eq(c->field_event_key, "aggregate_id");
	unlink(path);
	/* what outboxd does not do is refused, naming the line */
	const char *refused[][2] = {
		{ "snapshot.mode=initial\n", "\"no_data\"" },
		{ "transforms.outbox.type=my.Router\n", "EventRouter" },
		{ "transforms.outbox.table.expand.json.payload=true\n",
		  "\"table.expand.json.payload\" has no counterpart" },
	};
	for (size_t i = 0; i < OBX_ARRAY_LEN(refused); i++) {
		path = write_temp(refused[i][0]);
		ck_assert_int_eq(
		    obx_config_load_file(c, path, err, sizeof(err)),
		    OBX_CONFIG);
		ck_assert_msg(strstr(err, refused[i][1]) && strstr(err, ":1:"),
			      "%s", err);
		unlink(path);
	}
	obx_config_destroy(c);
}
END_TEST

/* A config with the connection keys and `pairs` set on top. */
static obx_config_t *config_with(const char *const (*pairs)[2], size_t n)
{
	obx_config_t *c = obx_config_new();
	ck_assert_int_eq(obx_config_set(c, "database.url", "dbname=shop", "t",
					err, sizeof(err)),
			 OBX_OK);
	ck_assert_int_eq(obx_config_set(c, "kafka.bootstrap.servers",
					"127.0.0.1:9092", "t", err,
					sizeof(err)),
			 OBX_OK);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(obx_config_set(c, pairs[i][0], pairs[i][1], "t",
					     err, sizeof(err)) == OBX_OK,
			      "%s", err);
	return c;
}

START_TEST(payload_values_have_no_envelope_to_place_fields_in)
{
	const char *const pairs[][2] = {
		{ "value.format", "payload" },
		{ "table.fields.additional.placement",
		  "tenant:header:tenantId,region:envelope" },
	};
	obx_config_t *c = config_with(pairs, OBX_ARRAY_LEN(pairs));
	ck_assert_int_eq(obx_config_validate(c, err, sizeof(err)), OBX_CONFIG);
	ck_assert_msg(strstr(err, "\"region\" is placed in the envelope") &&
			  strstr(err, "region:header"),
		      "%s", err);
	ck_assert_int_eq(obx_config_set(c, "table.fields.additional.placement",
					"tenant:header:tenantId", "t", err,
					sizeof(err)),
			 OBX_OK);
	ck_assert_int_eq(obx_config_validate(c, err, sizeof(err)), OBX_OK);
	ck_assert_int_eq(c->value_format, OBX_VALUE_PAYLOAD);
	obx_config_destroy(c);
}
END_TEST

START_TEST(registry_values_need_a_registry_and_take_java_strategy_names)
{
	const char *const pairs[][2] = { { "value.format", "avro-registry" } };
	obx_config_t *c = config_with(pairs, OBX_ARRAY_LEN(pairs));
	ck_assert_int_eq(obx_config_validate(c, err, sizeof(err)), OBX_CONFIG);
	ck_assert_msg(strstr(err, "\"schema.registry.url\""), "%s", err);
	ck_assert_int_eq(obx_config_set(c, "schema.registry.url",
					"http://a:8081, http://b:8081/", "t",
					err, sizeof(err)),
			 OBX_OK);
	ck_assert_int_eq(obx_config_validate(c, err, sizeof(err)), OBX_OK);
	ck_assert_int_eq(c->value_format, OBX_VALUE_AVRO_REGISTRY);
	ck_assert_int_eq(c->subject_strategy, OBX_SUBJECT_TOPIC);
	ck_assert(c->auto_register_schemas);
	/* as Confluent's Java serializer spells them, or short */
	ck_assert_int_eq(
	    obx_config_set(c, "value.subject.name.strategy",
			   "io.confluent.kafka.serializers.subject."
			   "TopicRecordNameStrategy",
			   "t", err, sizeof(err)),
	    OBX_OK);
	ck_assert_int_eq(c->subject_strategy, OBX_SUBJECT_TOPIC_RECORD);
	ck_assert_int_eq(obx_config_set(c, "value.subject.name.strategy",
					"RecordNameStrategy", "t", err,
					sizeof(err)),
			 OBX_OK);
	ck_assert_int_eq(c->subject_strategy, OBX_SUBJECT_RECORD);
	ck_assert_int_eq(obx_config_set(c, "value.subject.name.strategy",
					"TopicIdStrategy", "t", err,
					sizeof(err)),
			 OBX_CONFIG);
	ck_assert_msg(strstr(err, "TopicNameStrategy"), "%s", err);
	obx_config_destroy(c);
}
END_TEST

START_TEST(exactly_once_takes_the_slot_as_its_transactional_id)
{
	const char *const pairs[][2] = {
		{ "slot.name", "orders" },
		{ "delivery.guarantee", "exactly-once" },
	};
	obx_config_t *c = config_with(pairs, OBX_ARRAY_LEN(pairs));
	ck_assert_int_eq(obx_config_validate(c, err, sizeof(err)), OBX_OK);
	ck_assert_int_eq(c->delivery_guarantee, OBX_EXACTLY_ONCE);
	const char *id = NULL;
	for (size_t i = 0; i < c->nkafka; i++)
		if (strcmp(c->kafka[i].key, "transactional.id") == 0)
			id = c->kafka[i].value;
	ck_assert_ptr_nonnull(id);
	ck_assert_str_eq(id, "outboxd-orders");
	obx_config_destroy(c);

	/* a transactional producer without transactions is refused */
	const char *const alone[][2] = { { "kafka.transactional.id", "mine" } };
	c = config_with(alone, OBX_ARRAY_LEN(alone));
	ck_assert_int_eq(obx_config_validate(c, err, sizeof(err)), OBX_CONFIG);
	ck_assert_msg(strstr(err, "delivery.guarantee=exactly-once"), "%s",
		      err);
	obx_config_destroy(c);
}
END_TEST

Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("parse");
	tcase_add_test(tc, defaults_follow_the_spec);
	tcase_add_test(tc, millisecond_settings_convert_in_64_bits);
	tcase_add_test(tc, mapped_columns_come_from_the_option_table);
	tcase_add_test(tc, file_sets_keys_and_kafka_passthrough);
	tcase_add_test(tc, unknown_key_names_the_closest_and_the_line);
	tcase_add_test(tc, bad_values_are_rejected_with_the_key);
	tcase_add_test(tc, environment_overrides_file);
	tcase_add_test(tc, a_debezium_connector_config_translates_line_by_line);
	suite_add_tcase(s, tc);
	tc = tcase_create("validate");
	tcase_add_test(tc, validation_requires_url_and_bootstrap);
	tcase_add_test(tc, tables_and_additional_fields_are_parsed);
	tcase_add_test(tc, table_names_resolve_like_postgresql);
	tcase_add_test(tc, reference_lists_every_key);
	tcase_add_test(tc, payload_values_have_no_envelope_to_place_fields_in);
	tcase_add_test(
	    tc, registry_values_need_a_registry_and_take_java_strategy_names);
	tcase_add_test(tc, exactly_once_takes_the_slot_as_its_transactional_id);
	suite_add_tcase(s, tc);
	return s;
}
