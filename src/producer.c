/* producer.c - librdkafka producer with delivery reports on an fd. */
#include "outboxd/producer.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "outboxd/kafka_client.h"
#include "outboxd/log.h"
#include "outboxd/name_map.h"

/* How long the first event of a new topic waits for the topic's metadata,
 * and at most for the brokers' verdict on creating it or for its
 * max.message.bytes: both usually come within milliseconds, but a loaded
 * test machine most likely took more than 2 s once, and an answer that
 * comes too late turns a refused topic into one retried until
 * message.timeout.ms */
#define TOPIC_METADATA_WAIT_MS 500
/* How long a topic missing from the brokers' metadata is asked for again
 * before it counts as missing: an auto-created topic shows up by then. */
#define MISSING_TOPIC_WAIT_US 1500000
#define TOPIC_CONFIG_WAIT_MS  10000
/*
 * A topic's max.message.bytes is asked for when the topic is first used,
 * without waiting.  Only a record at least this large waits for the answer
 * while it is due: smaller ones cannot exceed any limit a topic is given in
 * practice, and must not pay a round trip (or, on a cluster that does not
 * answer DescribeConfigs, the timeout).
 */
#define SIZE_CHECK_WAIT_FLOOR 16384
/* how long destroying a producer waits for librdkafka to report back the
 * messages it purged (local work: no broker is waited for) */
#define PURGE_WAIT_MS 2000

/* What the producer knows of one topic (the value of obx_producer.topics). */
typedef struct {
	rd_kafka_topic_t *rkt; /* NULL when refused */
	char *refused;	       /* why the brokers refuse the topic, or NULL */
	/* the topic's max.message.bytes on the brokers, 0 when unknown or
	 * when batches are compressed (the limit applies to the compressed
	 * batch, whose size is not known here) */
	int64_t max_batch_bytes;
	rd_kafka_queue_t *config; /* its DescribeConfigs answer, while due */
} topic_slot_t;

struct obx_producer {
	rd_kafka_t *rk;
	obx_name_map_t *topics; /* topic name -> topic_slot_t */
	rd_kafka_queue_t *main_queue;
	int wake[2]; /* librdkafka writes to [1] when the main queue fills */
	obx_delivery_cb on_delivery;
	void *ctx;
	int64_t poll_now_us; /* 0 until the current poll's first report */
	bool fatal;
	/* why the producer failed when librdkafka does not say (a topic that
	 * vanished under queued messages); else rd_kafka_fatal_error() */
	char failure[512];
	bool compressed;      /* compression.type is not none */
	atomic_ulong errors;  /* read from any thread */
	char last_error[512]; /* written by error_cb, in obx_producer_poll() */
	int last_error_code;  /* rd_kafka_resp_err_t of last_error */
	bool txn_ready; /* init_transactions() done: older instances fenced */
	bool txn_open;
	/* librdkafka ended the open transaction under us (an abortable error:
	 * a lost producer id, a sequence gap); txn_failure says how */
	bool txn_failed;
	char txn_failure[512];
	bool fenced;  /* another instance with our transactional.id took over */
	bool closing; /* destroyed, or failed mid-abort: reports go to no one */
};

/*
 * A failed delivery that is the open transaction's failure, not the
 * record's: librdkafka purged the message when the transaction failed, or
 * failed it for the producer id or sequence the transaction depends on
 * (an epoch bump follows).  Any other refusal is the record's, as without
 * transactions.
 */
static bool txn_failure_code(rd_kafka_resp_err_t err)
{
	switch (err) {
	case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
	case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
	case RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID:
	case RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER:
	case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_ID_MAPPING:
	case RD_KAFKA_RESP_ERR_INVALID_TXN_STATE:
		return true;
	default:
		return false;
	}
}

/* The first sign that librdkafka ended the open transaction. */
static void txn_failed(obx_producer_t *p, const char *how,
		       rd_kafka_resp_err_t err)
{
	if (p->txn_failed)
		return;
	p->txn_failed = true;
	snprintf(p->txn_failure, sizeof(p->txn_failure), "%s (%s)", how,
		 rd_kafka_err2str(err));
}

/* The brokers do not know the topic (deleted, or never created with
 * auto-creation off): an infrastructure fault, never the record's. */
static bool topic_missing(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
	       err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
	       err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION;
}

static void delivery_report(rd_kafka_t *rk, const rd_kafka_message_t *msg,
			    void *opaque)
{
	obx_producer_t *p = opaque;
	char fatal_reason[512];
	if (p->closing)
		return;
	if (!p->poll_now_us)
		p->poll_now_us = obx_wallclock_us();
	/* the reports of messages a fatal error failed may be served before
	 * the error itself: the producer is unusable from the first of them */
	if (msg->err && !p->fatal &&
	    rd_kafka_fatal_error(rk, fatal_reason, sizeof(fatal_reason))) {
		obx_error("kafka: fatal error: %s", fatal_reason);
		p->fatal = true;
	}
	/* the topic was deleted under queued messages: not the records'
	 * fault, and they are gone from this producer; the slot still has
	 * them, so the producer is replaced and they are read again */
	if (topic_missing(msg->err) && !p->fatal) {
		snprintf(p->failure, sizeof(p->failure),
			 "topic \"%s\" disappeared under queued events (%s)",
			 rd_kafka_topic_name(msg->rkt),
			 rd_kafka_err2str(msg->err));
		p->fatal = true;
	}
	/* the transaction's failure, told by obx_producer_txn_failed(): its
	 * messages come again after the abort, and none of them was the
	 * cause */
	if (msg->err && p->txn_open && !p->fatal &&
	    txn_failure_code(msg->err)) {
		txn_failed(p, "a delivery in it failed", msg->err);
		return;
	}
	p->on_delivery(
	    p->ctx, msg->_private, rd_kafka_topic_name(msg->rkt), msg->err == 0,
	    msg->err ? rd_kafka_err2str(msg->err) : NULL, p->poll_now_us);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	obx_producer_t *p = opaque;
	char fatal_reason[512];

	atomic_fetch_add(&p->errors, 1);
	snprintf(p->last_error, sizeof(p->last_error), "%s", reason);
	p->last_error_code = err;
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_fatal_error(rk, fatal_reason, sizeof(fatal_reason));
		if (!p->fatal) /* else a delivery report said it first */
			obx_error("kafka: fatal error: %s", fatal_reason);
		p->fatal = true;
		return;
	}
	/* transient: librdkafka reconnects and retries by itself */
	obx_warn("kafka: %s", reason);
}

obx_err_t obx_producer_check_durability(const obx_config_t *conf, char *errstr,
					size_t errstr_size)
{
	/* read back through librdkafka: it resolves aliases (e.g.
	 * request.required.acks) and spellings ("all", "true", "1") */
	rd_kafka_conf_t *kconf = obx_kafka_conf_new(conf, errstr, errstr_size);
	if (!kconf)
		return OBX_OK; /* the producer reports the bad key itself */
	static const struct {
		const char *key, *durable, *why;
	} rules[] = {
		{ "acks", "-1",
		  "a record is acknowledged before every in-sync replica has "
		  "it, so a broker failure can lose it after outboxd "
		  "confirmed it: use all (the default)" },
		{ "enable.idempotence", "true",
		  "retries can then duplicate and reorder records within a "
		  "partition: use true (the default)" },
		{ "delivery.report.only.error", "false",
		  "outboxd confirms an event only on its delivery report, so "
		  "it would never confirm anything: use false (the default)" },
	};
	obx_err_t result = OBX_OK;
	for (size_t i = 0; i < OBX_ARRAY_LEN(rules) && result == OBX_OK; i++) {
		char value[64];
		obx_kafka_conf_value(kconf, rules[i].key, value, sizeof(value));
		if (*value && strcmp(value, rules[i].durable) != 0) {
			obx_errf(errstr, errstr_size,
				 "kafka.%s=%s is refused: %s", rules[i].key,
				 value, rules[i].why);
			result = OBX_CONFIG;
		}
	}
	rd_kafka_conf_destroy(kconf);
	return result;
}

/* A non-blocking, close-on-exec pipe (pipe2() is a GNU extension). */
static bool wake_pipe(int fds[2])
{
	if (pipe(fds) < 0)
		return false;
	for (int i = 0; i < 2; i++) {
		int flags = fcntl(fds[i], F_GETFL);
		if (flags < 0 ||
		    fcntl(fds[i], F_SETFL, flags | O_NONBLOCK) < 0 ||
		    fcntl(fds[i], F_SETFD, FD_CLOEXEC) < 0) {
			close(fds[0]);
			close(fds[1]);
			fds[0] = fds[1] = -1;
			return false;
		}
	}
	return true;
}

obx_producer_t *obx_producer_new(const obx_config_t *conf,
				 obx_delivery_cb on_delivery, void *ctx,
				 char *errstr, size_t errstr_size)
{
	rd_kafka_conf_t *kconf = obx_kafka_conf_new(conf, errstr, errstr_size);
	char err[512];
	if (!kconf)
		return NULL;
	obx_producer_t *p = obx_xcalloc(1, sizeof(*p));
	p->on_delivery = on_delivery;
	p->ctx = ctx;
	p->wake[0] = p->wake[1] = -1;
	obx_kafka_warn_scram(kconf);
	rd_kafka_conf_set_opaque(kconf, p);
	rd_kafka_conf_set_dr_msg_cb(kconf, delivery_report);
	rd_kafka_conf_set_error_cb(kconf, error_cb);

	p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kconf, err, sizeof(err));
	if (!p->rk) {
		obx_errf(errstr, errstr_size,
			 "could not create the Kafka producer: %s", err);
		rd_kafka_conf_destroy(kconf);
		free(p);
		return NULL;
	}
	/* non-blocking: a busy pipeline drains it only when it sleeps, so
	 * wake-ups may pile up; a full pipe drops them (it is readable,
	 * which is all they say) instead of blocking librdkafka's thread */
	if (!wake_pipe(p->wake)) {
		obx_errf(errstr, errstr_size, "could not create a pipe");
		rd_kafka_destroy(p->rk);
		free(p);
		return NULL;
	}
	p->main_queue = rd_kafka_queue_get_main(p->rk);
	rd_kafka_queue_io_event_enable(p->main_queue, p->wake[1], "1", 1);

	char codec[32];
	obx_kafka_conf_value(rd_kafka_conf(p->rk), "compression.type", codec,
			     sizeof(codec));
	p->compressed = *codec && strcmp(codec, "none") != 0;
	p->topics = obx_name_map_new();
	return p;
}

/* Another producer with our transactional.id took over. */
static bool fenced_error(rd_kafka_resp_err_t code)
{
	return code == RD_KAFKA_RESP_ERR__FENCED ||
	       code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
	       code == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

/* The error of a transaction call; frees it. */
static obx_err_t txn_error(obx_producer_t *p, rd_kafka_error_t *error,
			   const char *what, char *errstr, size_t errstr_size)
{
	obx_err_t err = OBX_RETRY;
	if (fenced_error(rd_kafka_error_code(error))) {
		p->fenced = true;
		err = OBX_FATAL;
	} else if (rd_kafka_error_is_fatal(error)) {
		err = OBX_FATAL;
	}
	obx_errf(errstr, errstr_size, "%s: %s", what,
		 rd_kafka_error_string(error));
	rd_kafka_error_destroy(error);
	return err;
}

obx_err_t obx_producer_txn_init(obx_producer_t *p, int timeout_ms, char *errstr,
				size_t errstr_size)
{
	if (p->txn_ready)
		return OBX_OK;
	/* the coordinator answers CONCURRENT_TRANSACTIONS (librdkafka asks
	 * again) until the older producers' transactions are complete:
	 * an open one aborted, a commit in doubt committed, their markers
	 * written */
	rd_kafka_error_t *error = rd_kafka_init_transactions(p->rk, timeout_ms);
	if (error)
		return txn_error(p, error, "could not start Kafka transactions",
				 errstr, errstr_size);
	p->txn_ready = true;
	return OBX_OK;
}

bool obx_producer_txn_ready(const obx_producer_t *p)
{
	return p->txn_ready;
}

obx_err_t obx_producer_txn_begin(obx_producer_t *p, int timeout_ms,
				 char *errstr, size_t errstr_size)
{
	if (p->txn_open)
		return OBX_OK;
	obx_err_t err =
	    obx_producer_txn_init(p, timeout_ms, errstr, errstr_size);
	if (err != OBX_OK)
		return err;
	rd_kafka_error_t *error = rd_kafka_begin_transaction(p->rk);
	if (error)
		return txn_error(p, error,
				 "could not begin a Kafka transaction", errstr,
				 errstr_size);
	p->txn_open = true;
	p->txn_failed = false;
	return OBX_OK;
}

obx_err_t obx_producer_txn_commit(obx_producer_t *p, int timeout_ms,
				  char *errstr, size_t errstr_size)
{
	int64_t deadline = obx_now_us() + OBX_MS_TO_US(timeout_ms);
	for (;;) {
		rd_kafka_error_t *error =
		    rd_kafka_commit_transaction(p->rk, timeout_ms);
		if (!error) {
			p->txn_open = false;
			return OBX_OK;
		}
		if (rd_kafka_error_is_retriable(error) &&
		    obx_now_us() < deadline) {
			rd_kafka_error_destroy(error);
			continue;
		}
		/* an abortable failure is the caller's to abort
		 * (obx_producer_txn_abort), with its reports discarded */
		return txn_error(p, error,
				 "could not commit the Kafka transaction",
				 errstr, errstr_size);
	}
}

bool obx_producer_txn_abort(obx_producer_t *p, int timeout_ms)
{
	if (!p->txn_open)
		return false;
	rd_kafka_error_t *error = rd_kafka_abort_transaction(p->rk, timeout_ms);
	if (error) {
		char why[512];
		txn_error(p, error, "could not abort the Kafka transaction",
			  why, sizeof(why));
		obx_warn("%s", why);
		/* its messages may still be in flight, and librdkafka is left
		 * mid-abort: unusable (obx_producer_status() says so), and its
		 * reports from now on go to no one */
		if (!p->fatal)
			snprintf(p->failure, sizeof(p->failure), "%s", why);
		p->fatal = true;
		p->closing = true;
	}
	p->txn_open = false;
	/* the purged messages' delivery reports, served now (flush() would
	 * not: nothing is left in the queue) while the caller discards them */
	while (rd_kafka_poll(p->rk, 0) > 0)
		;
	return true;
}

bool obx_producer_txn_open(const obx_producer_t *p)
{
	return p->txn_open;
}

bool obx_producer_txn_failed(const obx_producer_t *p, char *why,
			     size_t why_size)
{
	if (!p->txn_open || !p->txn_failed)
		return false;
	snprintf(why, why_size, "the Kafka transaction failed: %s",
		 p->txn_failure);
	return true;
}

bool obx_producer_fenced(const obx_producer_t *p)
{
	return p->fenced;
}

static void free_topic_slot(void *value)
{
	topic_slot_t *slot = value;
	if (slot->rkt)
		rd_kafka_topic_destroy(slot->rkt);
	if (slot->config)
		rd_kafka_queue_destroy(slot->config);
	free(slot->refused);
	free(slot);
}

void obx_producer_destroy(obx_producer_t *p)
{
	if (!p)
		return;
	/* Nothing may be in flight when librdkafka terminates: 2.0.2 freed
	 * memory twice in a broker thread when destroyed with fenced
	 * ProduceRequests in flight (test_exactly_once's oversized
	 * transaction under ASan: 3 of 4 runs; none of 5 purged first).
	 * Purged, the messages fail locally, at once. */
	p->closing = true;
	if (rd_kafka_outq_len(p->rk) > 0) {
		rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE |
					  RD_KAFKA_PURGE_F_INFLIGHT);
		rd_kafka_flush(p->rk, PURGE_WAIT_MS);
	}
	obx_name_map_destroy(p->topics, free_topic_slot);
	rd_kafka_queue_io_event_enable(p->main_queue, -1, NULL, 0);
	rd_kafka_queue_destroy(p->main_queue);
	rd_kafka_destroy(p->rk);
	close(p->wake[0]);
	close(p->wake[1]);
	free(p);
}

/* Asks for one resource's configuration; the answer arrives on the queue
 * returned (the caller destroys it). */
static rd_kafka_queue_t *request_config(obx_producer_t *p, bool broker,
					const char *name, int timeout_ms)
{
	char err[256];
	rd_kafka_ConfigResource_t *resource = rd_kafka_ConfigResource_new(
	    broker ? RD_KAFKA_RESOURCE_BROKER : RD_KAFKA_RESOURCE_TOPIC, name);
	rd_kafka_AdminOptions_t *options =
	    rd_kafka_AdminOptions_new(p->rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
	rd_kafka_queue_t *queue = rd_kafka_queue_new(p->rk);
	if (!resource || !options || !queue ||
	    rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, err,
						      sizeof(err)))
		abort();
	rd_kafka_DescribeConfigs(p->rk, &resource, 1, options, queue);
	rd_kafka_AdminOptions_destroy(options);
	rd_kafka_ConfigResource_destroy(resource);
	return queue;
}

/* The value of `key` in a DescribeConfigs answer (event NULL: none came). */
static obx_err_t config_answer(rd_kafka_event_t *event, const char *key,
			       char *value, size_t value_size, char *errstr,
			       size_t errstr_size)
{
	const rd_kafka_DescribeConfigs_result_t *res =
	    event ? rd_kafka_event_DescribeConfigs_result(event) : NULL;
	size_t nresources = 0, nentries = 0;
	const rd_kafka_ConfigResource_t **resources =
	    res ? rd_kafka_DescribeConfigs_result_resources(res, &nresources)
		: NULL;
	if (!event) {
		obx_errf(errstr, errstr_size, "no answer in time");
		return OBX_RETRY;
	}
	if (rd_kafka_event_error(event)) {
		obx_errf(errstr, errstr_size, "%s",
			 rd_kafka_event_error_string(event));
		return OBX_RETRY;
	}
	if (nresources != 1) {
		obx_errf(errstr, errstr_size, "an empty answer");
		return OBX_RETRY;
	}
	if (rd_kafka_ConfigResource_error(resources[0])) {
		obx_errf(errstr, errstr_size, "%s",
			 rd_kafka_err2str(
			     rd_kafka_ConfigResource_error(resources[0])));
		return OBX_RETRY;
	}
	const rd_kafka_ConfigEntry_t **entries =
	    rd_kafka_ConfigResource_configs(resources[0], &nentries);
	for (size_t i = 0; i < nentries; i++) {
		const char *v = rd_kafka_ConfigEntry_value(entries[i]);
		if (v &&
		    strcmp(rd_kafka_ConfigEntry_name(entries[i]), key) == 0) {
			snprintf(value, value_size, "%s", v);
			return OBX_OK;
		}
	}
	obx_errf(errstr, errstr_size, "the cluster did not report %s", key);
	return OBX_RETRY;
}

obx_err_t obx_producer_describe_config(obx_producer_t *p, bool broker,
				       const char *name, const char *key,
				       char *value, size_t value_size,
				       int timeout_ms, char *errstr,
				       size_t errstr_size)
{
	rd_kafka_queue_t *queue = request_config(p, broker, name, timeout_ms);
	rd_kafka_event_t *event = rd_kafka_queue_poll(queue, timeout_ms + 500);
	obx_err_t result =
	    config_answer(event, key, value, value_size, errstr, errstr_size);
	if (event)
		rd_kafka_event_destroy(event);
	rd_kafka_queue_destroy(queue);
	return result;
}

/*
 * Takes in the answer to a topic's max.message.bytes request, waiting up
 * to wait_ms for it.  Without an answer by then, or on an error (no
 * DescribeConfigs right), the limit stays unknown: the brokers' answer to
 * the produce request decides.
 */
static void collect_topic_limit(topic_slot_t *slot, const char *topic,
				int wait_ms)
{
	char value[32], err[256];
	rd_kafka_event_t *event = rd_kafka_queue_poll(slot->config, wait_ms);
	if (!event && wait_ms == 0)
		return; /* still pending */
	if (config_answer(event, "max.message.bytes", value, sizeof(value), err,
			  sizeof(err)) == OBX_OK)
		slot->max_batch_bytes = strtoll(value, NULL, 10);
	else
		obx_debug("kafka: max.message.bytes of topic \"%s\" unknown "
			  "(%s)",
			  topic, err);
	if (event)
		rd_kafka_event_destroy(event);
	rd_kafka_queue_destroy(slot->config);
	slot->config = NULL;
}

/* Topics the brokers keep for themselves: they refuse records for them. */
static bool kafka_internal_topic(const char *topic)
{
	static const char *const internal[] = { "__consumer_offsets",
						"__transaction_state",
						"__share_group_state" };
	for (size_t i = 0; i < OBX_ARRAY_LEN(internal); i++)
		if (strcmp(topic, internal[i]) == 0)
			return true;
	return false;
}

obx_topic_verdict_t obx_producer_validate_topic(obx_producer_t *p,
						const char *topic,
						int timeout_ms, char *reason,
						size_t reason_size)
{
	return obx_kafka_create_topic(p->rk, topic, -1, true, NULL, timeout_ms,
				      reason, reason_size);
}

/*
 * A topic that does not exist yet, whose name the brokers refuse (e.g. one
 * that collides with an existing topic's: '.' and '_' are the same to
 * Kafka's metrics), would otherwise be retried as a missing topic until
 * message.timeout.ms.  OBX_BAD_DATA with the brokers' reason; OBX_OK in
 * every other case: then auto-creation decides.
 */
static obx_err_t validate_new_topic(obx_producer_t *p, const char *topic,
				    char *errstr, size_t errstr_size)
{
	char why[512];
	if (obx_producer_validate_topic(p, topic, TOPIC_CONFIG_WAIT_MS, why,
					sizeof(why)) != OBX_TOPIC_REFUSED)
		return OBX_OK;
	obx_errf(errstr, errstr_size, "the brokers refuse the topic \"%s\": %s",
		 topic, why);
	return OBX_BAD_DATA;
}

/* What the brokers say of a topic. */
typedef enum {
	TOPIC_EXISTS,
	TOPIC_MISSING,	  /* they answered: no such topic (yet) */
	TOPIC_LEADERLESS, /* it exists, a partition has no leader yet */
	TOPIC_REFUSED,	  /* they refuse its name; reason in errstr */
	TOPIC_NO_ANSWER,  /* unreachable or slow: nothing is known */
} topic_answer_t;

static topic_answer_t ask_topic(obx_producer_t *p, rd_kafka_topic_t *rkt,
				const char *topic, char *errstr,
				size_t errstr_size)
{
	const struct rd_kafka_metadata *md = NULL;
	/* a timeout or an error is not fatal: librdkafka retries by itself */
	rd_kafka_resp_err_t err =
	    rd_kafka_metadata(p->rk, 0, rkt, &md, TOPIC_METADATA_WAIT_MS);
	if (err || !md || md->topic_cnt != 1) {
		if (md)
			rd_kafka_metadata_destroy(md);
		return TOPIC_NO_ANSWER;
	}
	rd_kafka_resp_err_t state = md->topics[0].err;
	bool exists = md->topics[0].partition_cnt > 0;
	bool leaders = true;
	for (int i = 0; i < md->topics[0].partition_cnt; i++)
		if (md->topics[0].partitions[i].leader < 0 ||
		    md->topics[0].partitions[i].err)
			leaders = false;
	rd_kafka_metadata_destroy(md);
	if (state == RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION) {
		obx_errf(errstr, errstr_size,
			 "the brokers refuse the topic \"%s\": %s", topic,
			 rd_kafka_err2str(state));
		return TOPIC_REFUSED;
	}
	if (exists)
		return leaders ? TOPIC_EXISTS : TOPIC_LEADERLESS;
	/* an auto-created topic is announced without partitions first */
	return state == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
		   ? TOPIC_MISSING
		   : TOPIC_NO_ANSWER;
}

/*
 * Fetches a new topic's metadata (librdkafka would otherwise wait for its
 * next periodic scan) and checks that the brokers accept the topic.  A
 * topic the brokers say does not exist is asked for again for about a
 * second (that first request made them create it, when they auto-create
 * topics); still missing, it is OBX_RETRY with the reason: an
 * infrastructure fault to wait out, never the record's.  Brokers that do
 * not answer leave it to librdkafka, which waits for them.
 *
 * A topic just created is announced before its partitions have leaders, and
 * librdkafka 2.0 keeps a partition it was told is leaderless without one
 * until its next full refresh (topic.metadata.refresh.interval.ms, 5
 * minutes; librdkafka issue #891): the last answer it sees here must name
 * every leader, so a leaderless one is asked for again too.
 */
static obx_err_t fetch_topic_state(obx_producer_t *p, rd_kafka_topic_t *rkt,
				   const char *topic, char *errstr,
				   size_t errstr_size)
{
	topic_answer_t answer = ask_topic(p, rkt, topic, errstr, errstr_size);
	if (answer == TOPIC_REFUSED)
		return OBX_BAD_DATA;
	if (answer != TOPIC_MISSING && answer != TOPIC_LEADERLESS)
		return OBX_OK;
	if (answer == TOPIC_MISSING) {
		obx_err_t refused =
		    validate_new_topic(p, topic, errstr, errstr_size);
		if (refused != OBX_OK)
			return refused;
	}
	/* every 100 ms: asking after 5 ms, doubling, saved ~100 ms per new
	 * topic but twice let an event wait minutes in CI (see
	 * docs/performance.md); until that is understood, this pace */
	int64_t deadline = obx_now_us() + MISSING_TOPIC_WAIT_US;
	while ((answer == TOPIC_MISSING || answer == TOPIC_LEADERLESS) &&
	       obx_now_us() < deadline) {
		struct timespec nap = { 0, 100 * 1000000L };
		nanosleep(&nap, NULL);
		answer = ask_topic(p, rkt, topic, errstr, errstr_size);
	}
	if (answer == TOPIC_REFUSED)
		return OBX_BAD_DATA;
	if (answer != TOPIC_MISSING)
		return OBX_OK;
	obx_errf(errstr, errstr_size,
		 "topic \"%s\" does not exist and the brokers do not create it",
		 topic);
	return OBX_RETRY;
}

/*
 * librdkafka's handle for a topic, kept for the producer's life: looking a
 * topic up by name in every produce call costs a lock and a scan.  A new
 * topic's metadata is fetched at once; librdkafka would otherwise ask for it
 * only on its next periodic scan, holding the topic's first events for up
 * to a second.  A topic the brokers refuse (a name they reject, one that
 * collides with an existing topic's, an internal topic) is bad data.
 */
static obx_err_t topic_slot(obx_producer_t *p, const char *topic,
			    topic_slot_t **out, char *errstr,
			    size_t errstr_size)
{
	topic_slot_t *known = obx_name_map_get(p->topics, topic);
	if (known && known->refused) {
		obx_errf(errstr, errstr_size, "%s", known->refused);
		return OBX_BAD_DATA;
	}
	if (known) {
		*out = known;
		return OBX_OK;
	}
	obx_err_t refused = OBX_OK;
	rd_kafka_topic_t *rkt = NULL;
	if (kafka_internal_topic(topic)) {
		obx_errf(errstr, errstr_size,
			 "\"%s\" is an internal Kafka topic: the brokers "
			 "refuse records for it",
			 topic);
		refused = OBX_BAD_DATA;
	} else if (!(rkt = rd_kafka_topic_new(p->rk, topic, NULL))) {
		obx_errf(errstr, errstr_size,
			 "kafka rejected the topic \"%s\": %s", topic,
			 rd_kafka_err2str(rd_kafka_last_error()));
		refused = OBX_BAD_DATA;
	} else {
		int64_t asked = obx_now_us();
		refused = fetch_topic_state(p, rkt, topic, errstr, errstr_size);
		obx_debug("topic \"%s\": the brokers answered in %.1f ms",
			  topic, (double)(obx_now_us() - asked) / 1000);
	}
	if (refused == OBX_RETRY) {
		/* missing: asked again on the next call, not remembered */
		rd_kafka_topic_destroy(rkt);
		return refused;
	}
	topic_slot_t *slot = obx_xcalloc(1, sizeof(*slot));
	obx_name_map_put(p->topics, topic, slot);
	if (refused != OBX_OK) {
		/* remembered: the next event for it fails at once */
		if (rkt)
			rd_kafka_topic_destroy(rkt);
		slot->refused = obx_xstrdup(errstr);
		return refused;
	}
	slot->rkt = rkt;
	/* asked now, waited for only by records that may be too large */
	if (!p->compressed)
		slot->config =
		    request_config(p, false, topic, TOPIC_CONFIG_WAIT_MS);
	*out = slot;
	return OBX_OK;
}

static size_t varint_size(int64_t v)
{
	uint64_t zigzag = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
	size_t n = 1;
	while (zigzag >= 0x80) {
		zigzag >>= 7;
		n++;
	}
	return n;
}

/* The size of a record batch (format v2, uncompressed) holding only this
 * record: what the brokers compare with max.message.bytes. */
static size_t single_record_batch_size(size_t key_len, const void *value,
				       size_t value_len,
				       const obx_kv_t *headers, size_t nheaders)
{
	const size_t batch_header = 61;
	int64_t vlen = value ? (int64_t)value_len : -1;
	size_t body = 1 /* attributes */ + 1 /* timestamp delta 0 */ +
		      1 /* offset delta 0 */ + varint_size((int64_t)key_len) +
		      key_len + varint_size(vlen) + (value ? value_len : 0) +
		      varint_size((int64_t)nheaders);
	for (size_t i = 0; i < nheaders; i++) {
		size_t name_len = strlen(headers[i].name);
		int64_t hlen =
		    headers[i].value ? (int64_t)headers[i].value_len : -1;
		body += varint_size((int64_t)name_len) + name_len +
			varint_size(hlen) +
			(headers[i].value ? headers[i].value_len : 0);
	}
	return batch_header + varint_size((int64_t)body) + body;
}

obx_err_t obx_producer_send(obx_producer_t *p, const char *topic,
			    const void *key, size_t key_len, const void *value,
			    size_t value_len, const obx_kv_t *headers,
			    size_t nheaders, void *msg_opaque, char *errstr,
			    size_t errstr_size)
{
	topic_slot_t *slot;
	obx_err_t refused = topic_slot(p, topic, &slot, errstr, errstr_size);
	if (refused != OBX_OK)
		return refused;
	if (slot->max_batch_bytes > 0 || slot->config) {
		size_t size = single_record_batch_size(
		    key_len, value, value_len, headers, nheaders);
		if (slot->config)
			collect_topic_limit(slot, topic,
					    size >= SIZE_CHECK_WAIT_FLOOR
						? TOPIC_CONFIG_WAIT_MS + 500
						: 0);
		if (slot->max_batch_bytes > 0 &&
		    (int64_t)size > slot->max_batch_bytes) {
			obx_errf(errstr, errstr_size,
				 "the record is too large for topic \"%s\": "
				 "%zu bytes, over the brokers' "
				 "max.message.bytes of %lld",
				 topic, size, (long long)slot->max_batch_bytes);
			return OBX_BAD_DATA;
		}
	}
	rd_kafka_headers_t *hdrs = rd_kafka_headers_new(nheaders);
	for (size_t i = 0; i < nheaders; i++)
		rd_kafka_header_add(
		    hdrs, headers[i].name, -1, headers[i].value,
		    headers[i].value ? (ssize_t)headers[i].value_len : 0);

	rd_kafka_resp_err_t err = rd_kafka_producev(
	    p->rk, RD_KAFKA_V_RKT(slot->rkt),
	    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
	    RD_KAFKA_V_KEY(key, key_len),
	    RD_KAFKA_V_VALUE((void *)value, value ? value_len : 0),
	    RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(msg_opaque),
	    RD_KAFKA_V_END);
	if (!err)
		return OBX_OK; /* librdkafka owns hdrs now */
	rd_kafka_headers_destroy(hdrs);

	if (topic_missing(err)) {
		/* ask again now: librdkafka's own refresh of a topic it
		 * knows as missing comes only every few minutes */
		const struct rd_kafka_metadata *md = NULL;
		(void)rd_kafka_metadata(p->rk, 0, slot->rkt, &md,
					TOPIC_METADATA_WAIT_MS);
		if (md)
			rd_kafka_metadata_destroy(md);
		obx_errf(errstr, errstr_size,
			 "topic \"%s\" does not exist and the brokers do not "
			 "create it (%s)",
			 topic, rd_kafka_err2str(err));
		return OBX_RETRY;
	}
	switch (err) {
	case RD_KAFKA_RESP_ERR__QUEUE_FULL:
		*errstr = '\0';
		return OBX_RETRY;
	case RD_KAFKA_RESP_ERR__STATE:
		if (!p->txn_open)
			break;
		/* an abortable error ended the transaction (librdkafka logged
		 * it: TXNERR) before its failed deliveries were served */
		txn_failed(p, "librdkafka refuses to produce into it", err);
		obx_producer_txn_failed(p, errstr, errstr_size);
		return OBX_RETRY;
	case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
	case RD_KAFKA_RESP_ERR__INVALID_ARG:
	case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
		obx_errf(errstr, errstr_size,
			 "kafka rejected the message for "
			 "topic \"%s\": %s",
			 topic, rd_kafka_err2str(err));
		return OBX_BAD_DATA;
	default:
		break;
	}
	obx_errf(errstr, errstr_size, "could not produce to topic \"%s\": %s",
		 topic, rd_kafka_err2str(err));
	return OBX_FATAL;
}

void obx_producer_clear_event(obx_producer_t *p)
{
	char drain[64];
	while (read(p->wake[0], drain, sizeof(drain)) > 0)
		;
}

void obx_producer_poll(obx_producer_t *p, int timeout_ms)
{
	p->poll_now_us = 0;
	rd_kafka_poll(p->rk, timeout_ms);
}

void obx_producer_send_now(obx_producer_t *p, int timeout_ms)
{
	p->poll_now_us = 0;
	/* while flush() runs, librdkafka treats linger.ms as expired */
	(void)rd_kafka_flush(p->rk, timeout_ms);
}

unsigned long obx_producer_error_count(const obx_producer_t *p)
{
	return atomic_load(&((obx_producer_t *)p)->errors);
}

void obx_producer_dump(obx_producer_t *p, FILE *out)
{
	rd_kafka_dump(out, p->rk);
}

bool obx_producer_reachable(obx_producer_t *p, int timeout_ms)
{
	const struct rd_kafka_metadata *md = NULL;
	/* all_topics=0, no topic: the brokers and the topics librdkafka
	 * knows locally, whose answer it takes in (leaders included) */
	rd_kafka_resp_err_t err =
	    rd_kafka_metadata(p->rk, 0, NULL, &md, timeout_ms);
	if (md)
		rd_kafka_metadata_destroy(md);
	return err == RD_KAFKA_RESP_ERR_NO_ERROR;
}

bool obx_producer_wait_reachable(obx_producer_t *p, int timeout_ms)
{
	int64_t deadline = obx_now_us() + OBX_MS_TO_US(timeout_ms);
	do {
		if (obx_producer_reachable(p, 500))
			return true;
		obx_producer_poll(p, 0); /* serves the errors that say why */
		/* retrying will not change the answer; a TLS alert (e.g. an
		 * mTLS listener refusing a client without certificate) comes
		 * as a transport error that names OpenSSL's routines */
		if (p->last_error_code == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
		    p->last_error_code == RD_KAFKA_RESP_ERR__SSL ||
		    strstr(p->last_error, "SSL routines"))
			return false;
	} while (obx_now_us() < deadline);
	return false;
}

int obx_producer_event_fd(const obx_producer_t *p)
{
	return p->wake[0];
}

static void probe_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg,
			   void *opaque)
{
	(void)rk;
	*(rd_kafka_resp_err_t *)opaque = msg->err;
}

static void probe_error(rd_kafka_t *rk, int err, const char *reason,
			void *opaque)
{
	/* the probe's delivery report says enough */
	(void)rk, (void)err, (void)reason, (void)opaque;
}

obx_err_t obx_producer_probe_write(const obx_config_t *conf, const char *topic,
				   int timeout_ms, char *errstr,
				   size_t errstr_size)
{
	char timeout[32], err[512];
	rd_kafka_conf_t *kconf = obx_kafka_conf_new(conf, errstr, errstr_size);
	if (!kconf)
		return OBX_RETRY;
	/* acks=2 is no valid setting for a broker: after the Write ACL check
	 * it refuses the whole request (INVALID_REQUIRED_ACKS), so nothing is
	 * ever written; one plain request, no producer id, no retry */
	snprintf(timeout, sizeof(timeout), "%d", timeout_ms);
	const char *overrides[][2] = {
		{ "enable.idempotence", "false" },
		{ "acks", "2" },
		{ "retries", "0" },
		{ "linger.ms", "0" },
		{ "message.timeout.ms", timeout },
		{ "log_level", "0" },
	};
	for (size_t i = 0; i < OBX_ARRAY_LEN(overrides); i++)
		if (rd_kafka_conf_set(kconf, overrides[i][0], overrides[i][1],
				      err, sizeof(err)) != RD_KAFKA_CONF_OK)
			abort();
	rd_kafka_resp_err_t answer = RD_KAFKA_RESP_ERR__TIMED_OUT;
	rd_kafka_conf_set_opaque(kconf, &answer);
	rd_kafka_conf_set_dr_msg_cb(kconf, probe_delivery);
	rd_kafka_conf_set_error_cb(kconf, probe_error);
	rd_kafka_t *rk =
	    rd_kafka_new(RD_KAFKA_PRODUCER, kconf, err, sizeof(err));
	if (!rk) {
		rd_kafka_conf_destroy(kconf);
		obx_errf(errstr, errstr_size, "%s", err);
		return OBX_RETRY;
	}
	rd_kafka_resp_err_t e = rd_kafka_producev(
	    rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE("probe", 5),
	    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
	if (!e)
		rd_kafka_flush(rk, timeout_ms + 1000);
	rd_kafka_destroy(rk);
	answer = e ? e : answer;

	switch (answer) {
	case RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS:
		return OBX_OK;
	case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
		obx_errf(errstr, errstr_size,
			 "this principal may not write to it (%s): grant it "
			 "the Write ACL on topic \"%s\"",
			 rd_kafka_err2str(answer), topic);
		return OBX_BAD_DATA;
	case RD_KAFKA_RESP_ERR_NO_ERROR:
		obx_errf(errstr, errstr_size,
			 "the brokers accepted acks=2: a probe record was "
			 "written to it");
		return OBX_OK;
	default:
		obx_errf(errstr, errstr_size, "the probe failed: %s",
			 rd_kafka_err2str(answer));
		return OBX_RETRY;
	}
}

int obx_producer_topic_exists(obx_producer_t *p, const char *topic,
			      int timeout_ms, int32_t *broker_id)
{
	const struct rd_kafka_metadata *md = NULL;
	/* all topics: asking for one by name would auto-create it */
	if (rd_kafka_metadata(p->rk, 1, NULL, &md, timeout_ms) || !md)
		return -1;
	int exists = 0;
	for (int i = 0; i < md->topic_cnt; i++)
		if (strcmp(md->topics[i].topic, topic) == 0 &&
		    md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
			exists = 1;
	if (broker_id)
		*broker_id = md->broker_cnt ? md->brokers[0].id : -1;
	rd_kafka_metadata_destroy(md);
	return exists;
}

const char *obx_producer_last_error(const obx_producer_t *p)
{
	return p->last_error;
}

obx_err_t obx_producer_status(obx_producer_t *p, char *errstr,
			      size_t errstr_size)
{
	char reason[512];
	if (!p->fatal)
		return OBX_OK;
	if (*p->failure) {
		snprintf(reason, sizeof(reason), "%s", p->failure);
	} else {
		if (fenced_error(
			rd_kafka_fatal_error(p->rk, reason, sizeof(reason))))
			p->fenced = true;
	}
	obx_errf(errstr, errstr_size, "kafka producer failed: %s", reason);
	return OBX_FATAL;
}
