/*
 * test_pipeline.c - the pipeline's handling of replication messages, without
 * PostgreSQL, on librdkafka's in-process mock cluster: what is confirmed
 * when acks come out of order, when the stream breaks inside a
 * transaction, for each table.op.invalid.behavior, when Kafka refuses
 * produce requests, and with exactly-once, when Kafka transactions commit
 * and abort.  Also the dead letter's truncation.
 */
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "outboxd/deadletter.h"
#include "outboxd/metrics.h"
#include "outboxd/pipeline.h"
#include "suites.h"

#define TS "2026-11-21 20:35:21.352341+00"
/* Kafka's ApiKey of Produce requests (not in librdkafka's public headers) */
#define API_PRODUCE 0

static rd_kafka_t *mock_owner;
static rd_kafka_mock_cluster_t *mock;
static obx_config_t *conf;
static obx_metrics_t *metrics;
static obx_pipeline_t *pipe_;
static char err[1024];

/* A mock cluster of `brokers` with topics outbox.event.fast (leader 1)
 * and outbox.event.slow (leader `brokers`), and a pipeline producing to
 * it with the given settings. */
static void start(int brokers, const char *const *settings)
{
	char bootstrap[512];
	rd_kafka_conf_t *kconf = rd_kafka_conf_new();
	ck_assert_int_eq(
	    rd_kafka_conf_set(kconf, "log_level", "0", err, sizeof(err)), 0);
	mock_owner = rd_kafka_new(RD_KAFKA_PRODUCER, kconf, err, sizeof(err));
	ck_assert_ptr_nonnull(mock_owner);
	mock = rd_kafka_mock_cluster_new(mock_owner, brokers);
	ck_assert_ptr_nonnull(mock);
	rd_kafka_mock_topic_create(mock, "outbox.event.fast", 1, 1);
	rd_kafka_mock_topic_create(mock, "outbox.event.slow", 1, 1);
	rd_kafka_mock_partition_set_leader(mock, "outbox.event.fast", 0, 1);
	rd_kafka_mock_partition_set_leader(mock, "outbox.event.slow", 0,
					   brokers);

	const char *pairs[16];
	size_t n = 0;
	snprintf(bootstrap, sizeof(bootstrap), "kafka.bootstrap.servers=%s",
		 rd_kafka_mock_cluster_bootstraps(mock));
	pairs[n++] = bootstrap;
	pairs[n++] = "kafka.linger.ms=0";
	pairs[n++] = "kafka.message.timeout.ms=30000";
	for (; settings && *settings && n < 15; settings++)
		pairs[n++] = *settings;
	pairs[n] = NULL;
	conf = test_config(pairs);
	metrics = obx_metrics_new();
	pipe_ = obx_pipeline_new(conf, metrics, err, sizeof(err));
	ck_assert_msg(pipe_ != NULL, "%s", err);
	obx_pipeline_set_database(pipe_, "shop");
}

static void stop(void)
{
	obx_pipeline_destroy(pipe_);
	obx_metrics_destroy(metrics);
	obx_config_destroy(conf);
	rd_kafka_mock_cluster_destroy(mock);
	rd_kafka_destroy(mock_owner);
}

/* One wal2json message starting at `lsn`, handed to the pipeline. */
static obx_err_t feed(obx_lsn_t lsn, const char *json)
{
	obx_repl_msg_t msg = { .kind = OBX_REPL_DATA,
			       .wal_start = lsn,
			       .wal_end = lsn,
			       .data = json,
			       .len = strlen(json) };
	bool reply;
	return obx_pipeline_handle_message(pipe_, &msg, &reply, err,
					   sizeof(err));
}

/* The BEGIN ('B') or COMMIT ('C') of a transaction ending at commit_end. */
static obx_err_t feed_edge(char action, int xid, obx_lsn_t commit_end)
{
	char json[256];
	snprintf(json, sizeof(json),
		 "{\"action\":\"%c\",\"xid\":%d,\"timestamp\":\"" TS
		 "\",\"nextlsn\":\"0/%X\"}",
		 action, xid, (unsigned)commit_end);
	return feed(commit_end - (action == 'B' ? 0x80 : 0x10), json);
}

static obx_err_t feed_begin(int xid, obx_lsn_t commit_end)
{
	return feed_edge('B', xid, commit_end);
}

static obx_err_t feed_commit(int xid, obx_lsn_t commit_end)
{
	return feed_edge('C', xid, commit_end);
}

/* An INSERT (action I) or UPDATE (U) of an outbox row routed to
 * outbox.event.<aggregate>. */
static obx_err_t feed_row(char action, int xid, obx_lsn_t lsn,
			  const char *aggregate)
{
	char json[1024];
	snprintf(json, sizeof(json),
		 "{\"action\":\"%c\",\"xid\":%d,\"timestamp\":\"" TS
		 "\",\"schema\":\"public\",\"table\":\"outbox\",\"columns\":["
		 "{\"name\":\"id\",\"value\":\"e-%d-%X\"},"
		 "{\"name\":\"aggregatetype\",\"value\":\"%s\"},"
		 "{\"name\":\"aggregateid\",\"value\":\"k-1\"},"
		 "{\"name\":\"type\",\"value\":\"Tested\"},"
		 "{\"name\":\"payload\",\"value\":\"{}\"}]}",
		 action, xid, xid, (unsigned)lsn, aggregate);
	return feed(lsn, json);
}

/* A whole transaction with one event, committing at commit_end. */
static void feed_txn(int xid, obx_lsn_t commit_end, const char *aggregate)
{
	ck_assert_int_eq(feed_begin(xid, commit_end), OBX_OK);
	ck_assert_int_eq(feed_row('I', xid, commit_end - 0x40, aggregate),
			 OBX_OK);
	ck_assert_int_eq(feed_commit(xid, commit_end), OBX_OK);
}

/* Serves delivery reports for up to ms; the last status. */
static obx_err_t serve(int ms)
{
	obx_err_t e = OBX_OK;
	for (int waited = 0; waited < ms && e == OBX_OK; waited += 50)
		e = obx_pipeline_serve_kafka(pipe_, 50, err, sizeof(err));
	return e;
}

/* Serves until the confirmed LSN is `want` (or 30 s passed). */
static obx_lsn_t serve_until(obx_lsn_t want)
{
	for (int waited = 0; waited < 30000; waited += 50) {
		if (obx_pipeline_confirmed(pipe_) == want)
			break;
		ck_assert_msg(obx_pipeline_serve_kafka(pipe_, 50, err,
						       sizeof(err)) == OBX_OK,
			      "%s", err);
	}
	return obx_pipeline_confirmed(pipe_);
}

START_TEST(out_of_order_acks_confirm_only_a_finished_prefix)
{
	start(2, NULL);
	/* one event to each topic first: the producer id (asked of either
	 * broker) and both connections are in place before broker 2 slows
	 * down; a delayed producer id had held the fast ack too (CI) */
	feed_txn(699, 0x100, "slow");
	feed_txn(700, 0x180, "fast");
	ck_assert_uint_eq(serve_until(0x180), 0x180);
	/* broker 2 (the slow topic's leader) answers 10 s late: the fast
	 * topic's ack has 8 s to come first */
	rd_kafka_mock_broker_set_rtt(mock, 2, 10000);
	feed_txn(701, 0x200, "slow");
	feed_txn(702, 0x300, "fast");
	/* the later transaction is acked, the earlier one not yet */
	for (int waited = 0; waited < 8000; waited += 50)
		if (obx_pipeline_inflight(pipe_) == 1)
			break;
		else
			ck_assert_int_eq(serve(50), OBX_OK);
	ck_assert_uint_eq(obx_pipeline_inflight(pipe_), 1);
	ck_assert_uint_eq(obx_pipeline_confirmed(pipe_), 0x180);
	ck_assert_uint_eq(serve_until(0x300), 0x300);
	stop();
}
END_TEST

START_TEST(a_transaction_broken_off_is_never_confirmed)
{
	start(1, NULL);
	ck_assert_int_eq(feed_begin(703, 0x200), OBX_OK);
	ck_assert_int_eq(feed_row('I', 703, 0x1C0, "fast"), OBX_OK);
	obx_pipeline_connection_lost(pipe_);
	/* its event is acked, but the transaction never ended here */
	ck_assert_int_eq(serve(500), OBX_OK);
	ck_assert_uint_eq(obx_pipeline_inflight(pipe_), 0);
	ck_assert_uint_eq(obx_pipeline_confirmed(pipe_), 0);
	/* the server sends it again, whole */
	feed_txn(703, 0x200, "fast");
	ck_assert_uint_eq(serve_until(0x200), 0x200);
	stop();
}
END_TEST

/* Whether /metrics would show `sample` (a whole line's start). */
static bool metrics_show(const char *sample)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	obx_metrics_write(metrics, out);
	fclose(out);
	bool found = strstr(text, sample) != NULL;
	free(text);
	return found;
}

/* /metrics counts `txns` committed Kafka transactions of `events` in all. */
static void assert_committed(int txns, int events)
{
	char sample[128];
	snprintf(sample, sizeof(sample),
		 "outboxd_kafka_transactions_total{result=\"committed\"} %d\n",
		 txns);
	ck_assert_msg(metrics_show(sample), "no line %s", sample);
	snprintf(sample, sizeof(sample),
		 "outboxd_kafka_transaction_events_sum %d.000000\n", events);
	ck_assert_msg(metrics_show(sample), "no line %s", sample);
}

/* start() with delivery.guarantee=exactly-once and its state topic; a
 * Kafka transaction is due after `max_events` events, never by time. */
static void start_exactly_once(int brokers, const char *max_events)
{
	char setting[64];
	snprintf(setting, sizeof(setting), "transaction.max.events=%s",
		 max_events);
	const char *eos[] = { "delivery.guarantee=exactly-once",
			      "transaction.interval.ms=600000", setting, NULL };
	start(brokers, eos);
	rd_kafka_mock_topic_create(mock, "outboxd.state", 1, 1);
}

START_TEST(exactly_once_confirms_only_committed_kafka_transactions)
{
	start_exactly_once(1, "2");
	/* acknowledged, but its Kafka transaction is open: not confirmed */
	feed_txn(801, 0x200, "fast");
	ck_assert_int_eq(serve(1000), OBX_OK);
	ck_assert_uint_eq(obx_pipeline_confirmed(pipe_), 0);
	/* the second event makes the transaction due at its commit */
	feed_txn(802, 0x300, "fast");
	ck_assert_uint_eq(serve_until(0x300), 0x300);
	assert_committed(1, 2);
	/* a whole PostgreSQL transaction in the next Kafka transaction, and
	 * half of another: acknowledged, not committed, not confirmed */
	feed_txn(803, 0x400, "fast");
	ck_assert_int_eq(feed_begin(804, 0x500), OBX_OK);
	ck_assert_int_eq(feed_row('I', 804, 0x4C0, "fast"), OBX_OK);
	ck_assert_int_eq(serve(1000), OBX_OK);
	ck_assert_uint_eq(obx_pipeline_confirmed(pipe_), 0x300);
	/* the stream breaks: the Kafka transaction is aborted, and the
	 * server sends everything after the last commit again */
	obx_pipeline_connection_lost(pipe_);
	ck_assert_int_eq(serve(500), OBX_OK);
	ck_assert_uint_eq(obx_pipeline_confirmed(pipe_), 0x300);
	ck_assert(metrics_show(
	    "outboxd_kafka_transactions_total{result=\"aborted\"} 1\n"));
	feed_txn(803, 0x400, "fast");
	feed_txn(804, 0x500, "fast");
	ck_assert_uint_eq(serve_until(0x500), 0x500);
	assert_committed(2, 4);
	stop();
}
END_TEST

/* The last serve()'s outcome is a Kafka transaction aborted, to be sent
 * again from the last commit, with `aborts` counted so far. */
static void assert_aborted(obx_err_t e, int aborts)
{
	char sample[128];
	ck_assert_msg(e == OBX_RETRY, "%d: %s", e, err);
	ck_assert_ptr_nonnull(strstr(err, "the Kafka transaction was aborted"));
	snprintf(sample, sizeof(sample),
		 "outboxd_kafka_transactions_total{result=\"aborted\"} %d\n",
		 aborts);
	ck_assert_msg(metrics_show(sample), "no line %s", sample);
}

START_TEST(a_kafka_transaction_that_fails_is_aborted_and_sent_again)
{
	start_exactly_once(1, "1");
	feed_txn(901, 0x200, "fast");
	ck_assert_uint_eq(serve_until(0x200), 0x200);

	/* the broker lost our producer id: librdkafka fails the open
	 * transaction (abortable, with an epoch bump), which is noticed
	 * first by producing into it: librdkafka refuses (CI saw it after
	 * a sequence gap) */
	rd_kafka_mock_push_request_errors(
	    mock, API_PRODUCE, 1, RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID);
	ck_assert_int_eq(feed_begin(902, 0x2000), OBX_OK);
	/* rows every 100 ms, nothing served in between (feeding never
	 * polls), until one is refused: at once, or under valgrind later */
	obx_err_t e = OBX_OK;
	for (obx_lsn_t lsn = 0x300; e == OBX_OK && lsn < 0x1F00; lsn += 8) {
		e = feed_row('I', 902, lsn, "fast");
		usleep(100 * 1000);
	}
	assert_aborted(e, 1);
	ck_assert_uint_eq(obx_pipeline_confirmed(pipe_), 0x200);
	obx_pipeline_connection_lost(pipe_);

	/* again, noticed first by its failed delivery report */
	rd_kafka_mock_push_request_errors(
	    mock, API_PRODUCE, 1, RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID);
	ck_assert_int_eq(feed_begin(902, 0x2000), OBX_OK);
	ck_assert_int_eq(feed_row('I', 902, 0x300, "fast"), OBX_OK);
	assert_aborted(serve(10000), 2);
	ck_assert_uint_eq(obx_pipeline_confirmed(pipe_), 0x200);
	obx_pipeline_connection_lost(pipe_);

	/* the server sends everything after the last commit again: once */
	feed_txn(902, 0x2000, "fast");
	ck_assert_uint_eq(serve_until(0x2000), 0x2000);
	assert_committed(2, 2);
	stop();
}
END_TEST

START_TEST(each_invalid_operation_behavior)
{
	const char *behaviors[] = { "warn", "error", "fatal" };
	for (size_t i = 0; i < 3; i++) {
		char setting[64];
		snprintf(setting, sizeof(setting),
			 "table.op.invalid.behavior=%s", behaviors[i]);
		const char *settings[] = { setting, NULL };
		start(1, settings);
		ck_assert_int_eq(feed_begin(704, 0x200), OBX_OK);
		obx_err_t e = feed_row('U', 704, 0x1C0, "fast");
		if (i < 2) {
			/* logged and skipped: the commit confirms */
			ck_assert_int_eq(e, OBX_OK);
			ck_assert_int_eq(feed_commit(704, 0x200), OBX_OK);
			ck_assert_uint_eq(serve_until(0x200), 0x200);
		} else {
			ck_assert_int_eq(e, OBX_BAD_DATA);
			ck_assert_ptr_nonnull(strstr(
			    err, "UPDATE on outbox table public.outbox"));
			ck_assert_uint_eq(obx_pipeline_confirmed(pipe_), 0);
		}
		stop();
	}
}
END_TEST

START_TEST(refused_produce_requests_confirm_nothing)
{
	/* exactly-once too: a refused record is not the transaction's
	 * failure, to be sent again, but a stop */
	for (int eos = 0; eos < 2; eos++) {
		/* the refusals come from broker 1, the leader of the events'
		 * topic; the state topic's leader is broker 2 */
		if (eos) {
			start_exactly_once(2, "1");
		} else {
			start(2, NULL);
			rd_kafka_mock_topic_create(mock, "outboxd.state", 1, 1);
		}
		rd_kafka_mock_partition_set_leader(mock, "outboxd.state", 0, 2);
		/* retriable refusals: retried, then acked */
		rd_kafka_mock_broker_push_request_error_rtts(
		    mock, 1, API_PRODUCE, 2,
		    RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, 0,
		    RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, 0);
		feed_txn(705, 0x200, "fast");
		ck_assert_uint_eq(serve_until(0x200), 0x200);
		/* a final refusal: the delivery fails and nothing moves */
		rd_kafka_mock_broker_push_request_error_rtts(
		    mock, 1, API_PRODUCE, 1,
		    RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, 0);
		ck_assert_int_eq(feed_begin(706, 0x300), OBX_OK);
		ck_assert_int_eq(feed_row('I', 706, 0x2C0, "fast"), OBX_OK);
		/* exactly-once: the commit fails on it */
		obx_err_t e = feed_commit(706, 0x300);
		for (int waited = 0; waited < 10000 && e == OBX_OK;
		     waited += 50)
			e = obx_pipeline_serve_kafka(pipe_, 50, err,
						     sizeof(err));
		ck_assert_msg(e == OBX_FATAL, "%d: %s", e, err);
		ck_assert_ptr_nonnull(strstr(err, "a Kafka delivery failed"));
		ck_assert_uint_eq(obx_pipeline_confirmed(pipe_), 0x200);
		stop();
	}
}
END_TEST

START_TEST(dead_letters_are_cut_on_character_boundaries)
{
	/* 1,023 ASCII bytes, then two-byte characters: byte 1,024 is the
	 * middle of one */
	char big[3001];
	memset(big, 'a', 1023);
	for (size_t i = 1023; i + 1 < 3000; i += 2)
		memcpy(big + i, "\xc3\xa9", 2); /* é */
	big[2999] = 'z';
	big[3000] = '\0';
	obx_column_t columns[] = {
		{ .name = "payload", .value = big, .value_len = 3000 },
		{ .name = "aggregateid", .value = "k-1", .value_len = 3 },
		{ .name = "note", .value = NULL }
	};
	obx_change_t change = { .kind = OBX_CHANGE_INSERT,
				.lsn = 0x16B3748,
				.xid = 733,
				.schema = "public",
				.table = "outbox",
				.columns = columns,
				.ncolumns = 3 };
	char *text = obx_dead_letter_json("shop", &change, "too large",
					  OBX_DEAD_LETTER_TRUNCATE);
	json_t *doc = json_loads(text, 0, NULL); /* rejects broken UTF-8 */
	ck_assert_ptr_nonnull(doc);
	const char *payload = json_string_value(
	    json_object_get(json_object_get(doc, "columns"), "payload"));
	ck_assert_uint_eq(strlen(payload), 1023); /* not into the é */
	ck_assert(json_is_null(
	    json_object_get(json_object_get(doc, "columns"), "note")));
	json_t *cut = json_object_get(doc, "truncated");
	ck_assert_uint_eq(json_array_size(cut), 1);
	ck_assert_str_eq(json_string_value(json_array_get(cut, 0)), "payload");
	ck_assert_str_eq(json_string_value(json_object_get(doc, "lsn")),
			 "0/016B3748");
	ck_assert_str_eq(json_string_value(json_object_get(doc, "db")), "shop");
	json_decref(doc);
	free(text);

	/* whole: no "truncated" */
	text = obx_dead_letter_json("shop", &change, "bad", (size_t)-1);
	doc = json_loads(text, 0, NULL);
	ck_assert_ptr_null(json_object_get(doc, "truncated"));
	ck_assert_uint_eq(strlen(json_string_value(json_object_get(
			      json_object_get(doc, "columns"), "payload"))),
			  3000);
	json_decref(doc);
	free(text);
}
END_TEST

Suite *pipeline_suite(void)
{
	Suite *s = suite_create("pipeline");
	TCase *tc = tcase_create("mock cluster");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, out_of_order_acks_confirm_only_a_finished_prefix);
	tcase_add_test(tc, a_transaction_broken_off_is_never_confirmed);
	tcase_add_test(tc,
		       exactly_once_confirms_only_committed_kafka_transactions);
	tcase_add_test(
	    tc, a_kafka_transaction_that_fails_is_aborted_and_sent_again);
	tcase_add_test(tc, each_invalid_operation_behavior);
	tcase_add_test(tc, refused_produce_requests_confirm_nothing);
	tcase_add_test(tc, dead_letters_are_cut_on_character_boundaries);
	suite_add_tcase(s, tc);
	return s;
}
