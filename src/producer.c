/* producer.c - librdkafka producer with delivery reports on an fd. */
#include "outboxd/producer.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "outboxd/log.h"

/* How long the first event of a new topic waits for the topic's metadata. */
#define TOPIC_METADATA_WAIT_MS 500

/* An open-addressing map from topic name to librdkafka's topic handle. */
typedef struct {
	char *name;
	uint64_t hash;
	rd_kafka_topic_t *rkt;
} topic_slot_t;

struct obx_producer {
	rd_kafka_t *rk;
	topic_slot_t *topics;
	size_t topics_cap, ntopics; /* capacity: a power of two */
	rd_kafka_queue_t *main_queue;
	int wake[2]; /* librdkafka writes to [1] when the main queue fills */
	obx_delivery_cb on_delivery;
	void *ctx;
	int64_t poll_now_us; /* 0 until the current poll's first report */
	bool fatal;
	atomic_ulong errors; /* read from any thread */
};

static void delivery_report(rd_kafka_t *rk, const rd_kafka_message_t *msg,
			    void *opaque)
{
	obx_producer_t *p = opaque;
	(void)rk;
	if (!p->poll_now_us)
		p->poll_now_us = obx_wallclock_us();
	p->on_delivery(
	    p->ctx, msg->_private, rd_kafka_topic_name(msg->rkt), msg->err == 0,
	    msg->err ? rd_kafka_err2str(msg->err) : NULL, p->poll_now_us);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	obx_producer_t *p = opaque;
	char fatal_reason[512];

	atomic_fetch_add(&p->errors, 1);
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_fatal_error(rk, fatal_reason, sizeof(fatal_reason));
		obx_error("kafka: fatal error: %s", fatal_reason);
		p->fatal = true;
		return;
	}
	/* transient: librdkafka reconnects and retries by itself */
	obx_warn("kafka: %s", reason);
}

static void log_cb(const rd_kafka_t *rk, int level, const char *facility,
		   const char *buf)
{
	(void)rk;
	/* syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug */
	obx_log_level_t ours = level <= 3   ? OBX_LOG_ERROR
			       : level == 4 ? OBX_LOG_WARN
			       : level <= 6 ? OBX_LOG_INFO
					    : OBX_LOG_DEBUG;
	obx_log(ours, "kafka: %s: %s", facility, buf);
}

obx_producer_t *obx_producer_new(const obx_config_t *conf,
				 obx_delivery_cb on_delivery, void *ctx,
				 char *errstr, size_t errstr_size)
{
	obx_producer_t *p = calloc(1, sizeof(*p));
	rd_kafka_conf_t *kconf = rd_kafka_conf_new();
	char err[512];

	if (!p)
		abort();
	p->on_delivery = on_delivery;
	p->ctx = ctx;
	p->wake[0] = p->wake[1] = -1;
	for (size_t i = 0; i < conf->nkafka; i++) {
		if (rd_kafka_conf_set(kconf, conf->kafka[i].key,
				      conf->kafka[i].value, err,
				      sizeof(err)) != RD_KAFKA_CONF_OK) {
			obx_errf(errstr, errstr_size, "kafka.%s: %s",
				 conf->kafka[i].key, err);
			rd_kafka_conf_destroy(kconf);
			free(p);
			return NULL;
		}
	}
	rd_kafka_conf_set_opaque(kconf, p);
	rd_kafka_conf_set_dr_msg_cb(kconf, delivery_report);
	rd_kafka_conf_set_error_cb(kconf, error_cb);
	rd_kafka_conf_set_log_cb(kconf, log_cb);

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
	if (pipe2(p->wake, O_NONBLOCK | O_CLOEXEC) < 0) {
		obx_errf(errstr, errstr_size, "could not create a pipe");
		rd_kafka_destroy(p->rk);
		free(p);
		return NULL;
	}
	p->main_queue = rd_kafka_queue_get_main(p->rk);
	rd_kafka_queue_io_event_enable(p->main_queue, p->wake[1], "1", 1);
	return p;
}

void obx_producer_destroy(obx_producer_t *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->topics_cap; i++) {
		if (p->topics[i].name) {
			rd_kafka_topic_destroy(p->topics[i].rkt);
			free(p->topics[i].name);
		}
	}
	free(p->topics);
	rd_kafka_queue_io_event_enable(p->main_queue, -1, NULL, 0);
	rd_kafka_queue_destroy(p->main_queue);
	rd_kafka_destroy(p->rk);
	close(p->wake[0]);
	close(p->wake[1]);
	free(p);
}

static topic_slot_t *find_slot(topic_slot_t *table, size_t cap,
			       const char *name, uint64_t hash)
{
	for (size_t i = hash & (cap - 1);; i = (i + 1) & (cap - 1))
		if (!table[i].name ||
		    (table[i].hash == hash && strcmp(table[i].name, name) == 0))
			return &table[i];
}

static void grow_topics(obx_producer_t *p)
{
	size_t cap = p->topics_cap ? p->topics_cap * 2 : 16;
	topic_slot_t *table = calloc(cap, sizeof(*table));
	if (!table)
		abort();
	for (size_t i = 0; i < p->topics_cap; i++)
		if (p->topics[i].name)
			*find_slot(table, cap, p->topics[i].name,
				   p->topics[i].hash) = p->topics[i];
	free(p->topics);
	p->topics = table;
	p->topics_cap = cap;
}

/*
 * librdkafka's handle for a topic, kept for the producer's life: looking a
 * topic up by name in every produce call costs a lock and a scan.  A new
 * topic's metadata is fetched at once; librdkafka would otherwise ask for it
 * only on its next periodic scan, holding the topic's first events for up
 * to a second.
 */
static rd_kafka_topic_t *topic_handle(obx_producer_t *p, const char *topic)
{
	uint64_t hash = obx_hash_str(topic);
	if (p->topics_cap) {
		topic_slot_t *slot =
		    find_slot(p->topics, p->topics_cap, topic, hash);
		if (slot->name)
			return slot->rkt;
	}
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(p->rk, topic, NULL);
	if (!rkt)
		return NULL;
	const struct rd_kafka_metadata *md = NULL;
	/* a timeout or an error is not fatal: librdkafka retries by itself */
	(void)rd_kafka_metadata(p->rk, 0, rkt, &md, TOPIC_METADATA_WAIT_MS);
	if (md)
		rd_kafka_metadata_destroy(md);
	if ((p->ntopics + 1) * 2 > p->topics_cap)
		grow_topics(p);
	topic_slot_t *slot = find_slot(p->topics, p->topics_cap, topic, hash);
	if (!(slot->name = strdup(topic)))
		abort();
	slot->hash = hash;
	slot->rkt = rkt;
	p->ntopics++;
	return rkt;
}

obx_err_t obx_producer_send(obx_producer_t *p, const char *topic,
			    const void *key, size_t key_len, const void *value,
			    size_t value_len, const obx_kv_t *headers,
			    size_t nheaders, void *msg_opaque, char *errstr,
			    size_t errstr_size)
{
	rd_kafka_topic_t *rkt = topic_handle(p, topic);
	if (!rkt) {
		obx_errf(errstr, errstr_size,
			 "kafka rejected the topic \"%s\": %s", topic,
			 rd_kafka_err2str(rd_kafka_last_error()));
		return OBX_BAD_DATA;
	}
	rd_kafka_headers_t *hdrs = rd_kafka_headers_new(nheaders);
	for (size_t i = 0; i < nheaders; i++)
		rd_kafka_header_add(
		    hdrs, headers[i].name, -1, headers[i].value,
		    headers[i].value ? (ssize_t)headers[i].value_len : 0);

	rd_kafka_resp_err_t err = rd_kafka_producev(
	    p->rk, RD_KAFKA_V_RKT(rkt),
	    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
	    RD_KAFKA_V_KEY(key, key_len),
	    RD_KAFKA_V_VALUE((void *)value, value ? value_len : 0),
	    RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(msg_opaque),
	    RD_KAFKA_V_END);
	if (!err)
		return OBX_OK; /* librdkafka owns hdrs now */
	rd_kafka_headers_destroy(hdrs);

	switch (err) {
	case RD_KAFKA_RESP_ERR__QUEUE_FULL:
		return OBX_RETRY;
	case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
	case RD_KAFKA_RESP_ERR__INVALID_ARG:
	case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
	case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
		obx_errf(errstr, errstr_size,
			 "kafka rejected the message for "
			 "topic \"%s\": %s",
			 topic, rd_kafka_err2str(err));
		return OBX_BAD_DATA;
	default:
		obx_errf(errstr, errstr_size,
			 "could not produce to topic \"%s\": %s", topic,
			 rd_kafka_err2str(err));
		return OBX_FATAL;
	}
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

bool obx_producer_reachable(obx_producer_t *p, int timeout_ms)
{
	const struct rd_kafka_metadata *md = NULL;
	/* all_topics=0, no topic: only brokers, cheap */
	rd_kafka_resp_err_t err =
	    rd_kafka_metadata(p->rk, 0, NULL, &md, timeout_ms);
	if (md)
		rd_kafka_metadata_destroy(md);
	return err == RD_KAFKA_RESP_ERR_NO_ERROR;
}

int obx_producer_event_fd(const obx_producer_t *p)
{
	return p->wake[0];
}

obx_err_t obx_producer_status(obx_producer_t *p, char *errstr,
			      size_t errstr_size)
{
	char reason[512];
	if (!p->fatal)
		return OBX_OK;
	rd_kafka_fatal_error(p->rk, reason, sizeof(reason));
	obx_errf(errstr, errstr_size, "kafka producer failed: %s", reason);
	return OBX_FATAL;
}
