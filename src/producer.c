/* producer.c - librdkafka producer with delivery reports on an fd. */
#include "outboxd/producer.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "outboxd/log.h"

struct obx_producer {
	rd_kafka_t *rk;
	rd_kafka_queue_t *main_queue;
	int wake[2]; /* librdkafka writes to [1] when the main queue fills */
	obx_delivery_cb on_delivery;
	void *ctx;
	bool fatal;
	atomic_ulong errors; /* read from any thread */
};

static void delivery_report(rd_kafka_t *rk, const rd_kafka_message_t *msg,
			    void *opaque)
{
	obx_producer_t *p = opaque;
	(void)rk;
	p->on_delivery(p->ctx, msg->_private, rd_kafka_topic_name(msg->rkt),
		       msg->err == 0,
		       msg->err ? rd_kafka_err2str(msg->err) : NULL);
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
	rd_kafka_queue_io_event_enable(p->main_queue, -1, NULL, 0);
	rd_kafka_queue_destroy(p->main_queue);
	rd_kafka_destroy(p->rk);
	close(p->wake[0]);
	close(p->wake[1]);
	free(p);
}

obx_err_t obx_producer_send(obx_producer_t *p, const char *topic,
			    const void *key, size_t key_len, const void *value,
			    size_t value_len, const obx_kv_t *headers,
			    size_t nheaders, void *msg_opaque, char *errstr,
			    size_t errstr_size)
{
	rd_kafka_headers_t *hdrs = rd_kafka_headers_new(nheaders);
	for (size_t i = 0; i < nheaders; i++)
		rd_kafka_header_add(
		    hdrs, headers[i].name, -1, headers[i].value,
		    headers[i].value ? (ssize_t)headers[i].value_len : 0);

	rd_kafka_resp_err_t err = rd_kafka_producev(
	    p->rk, RD_KAFKA_V_TOPIC(topic),
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

static void drain_wake_pipe(obx_producer_t *p)
{
	char drain[64];
	while (read(p->wake[0], drain, sizeof(drain)) > 0)
		;
}

void obx_producer_poll(obx_producer_t *p, int timeout_ms)
{
	drain_wake_pipe(p);
	rd_kafka_poll(p->rk, timeout_ms);
}

void obx_producer_send_now(obx_producer_t *p, int timeout_ms)
{
	drain_wake_pipe(p);
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
