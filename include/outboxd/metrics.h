/*
 * metrics.h - counters and gauges for /metrics (SPEC section 8), in the
 * Prometheus text format.
 *
 * Threads: the pipeline thread updates, the HTTP thread reads; every call
 * takes the registry's mutex, so any thread may call any function.
 */
#ifndef OUTBOXD_METRICS_H
#define OUTBOXD_METRICS_H

#include <stdbool.h>
#include <stdio.h>

#include "outboxd/common.h"
#include "outboxd/router.h"

typedef struct obx_metrics obx_metrics_t;

typedef enum {
	OBX_METRIC_PRODUCED = 0, /* handed to librdkafka */
	OBX_METRIC_ACKED,	 /* acknowledged by Kafka */
} obx_topic_metric_t;

obx_metrics_t *obx_metrics_new(void);
void obx_metrics_destroy(obx_metrics_t *m);

/*
 * Per-event counts, gathered without locking by the one thread that owns the
 * batch (the pipeline), and added to the registry by obx_metrics_merge(),
 * once per loop pass: per-event locking was a measurable share of the CPU.
 */
typedef struct obx_metrics_batch obx_metrics_batch_t;

obx_metrics_batch_t *obx_metrics_batch_new(void);
void obx_metrics_batch_destroy(obx_metrics_batch_t *b);

/* An outbox INSERT was read from the slot. */
void obx_metrics_batch_received(obx_metrics_batch_t *b);
void obx_metrics_batch_topic(obx_metrics_batch_t *b, const char *topic,
			     obx_topic_metric_t what);
/*
 * Seconds from the transaction's commit to Kafka's acknowledgement (end to
 * end), and from its arrival at outboxd to the acknowledgement (outboxd's
 * and Kafka's share; the difference is the server's decoding delay).
 */
void obx_metrics_batch_latency(obx_metrics_batch_t *b, double from_commit,
			       double from_receive);

/*
 * Time the pipeline slept: waiting for the server (nothing to read) or held
 * back by Kafka (max.inflight.events reached).  Tells an operator which side
 * a slow connector waits on.
 */
typedef enum {
	OBX_WAIT_SERVER = 0,
	OBX_WAIT_KAFKA,
	OBX_WAIT_REASONS
} obx_wait_reason_t;
void obx_metrics_batch_wait(obx_metrics_batch_t *b, obx_wait_reason_t why,
			    double seconds);

/* Adds the batch to the registry and empties it. */
void obx_metrics_merge(obx_metrics_t *m, obx_metrics_batch_t *b);
void obx_metrics_bad_event(obx_metrics_t *m, obx_bad_reason_t reason);
void obx_metrics_set_kafka_errors(obx_metrics_t *m, unsigned long total);
void obx_metrics_reconnect(obx_metrics_t *m);
/* Kafka acknowledged nothing for a while with events in flight. */
void obx_metrics_ack_stall(obx_metrics_t *m);
/* exactly-once: a Kafka transaction committed `seconds` after its first
 * event, with `events` events; or one was aborted. */
void obx_metrics_kafka_txn_committed(obx_metrics_t *m, double seconds,
				     size_t events);
void obx_metrics_kafka_txn_aborted(obx_metrics_t *m);
/* A connect resumed `bytes` of WAL after the slot's position (startpoint.h). */
void obx_metrics_resume_skipped(obx_metrics_t *m, uint64_t bytes);

/* The pipeline's state, set as it changes. */
void obx_metrics_set_streaming(obx_metrics_t *m, bool streaming);
/* An event waits for a missing topic (true, once per attempt), or no more
 * (false). */
void obx_metrics_topic_missing(obx_metrics_t *m, bool missing);
void obx_metrics_set_positions(obx_metrics_t *m, obx_lsn_t confirmed,
			       obx_lsn_t server_wal_end, size_t inflight);

/* The process loop is alive (for /healthz). */
void obx_metrics_tick(obx_metrics_t *m);
/* Seconds since the last tick. */
double obx_metrics_since_tick(obx_metrics_t *m);
bool obx_metrics_streaming(obx_metrics_t *m);

/* The slot's retained WAL (measured by the HTTP thread at scrape time);
 * negative when it could not be measured. */
void obx_metrics_set_retained(obx_metrics_t *m, double bytes);

/* Writes every metric in the Prometheus text exposition format. */
void obx_metrics_write(obx_metrics_t *m, FILE *out);

#endif
