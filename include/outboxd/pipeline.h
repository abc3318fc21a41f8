/*
 * pipeline.h - the loop that glues the modules together:
 *
 *   replication stream -> decoder -> router -> envelope -> producer
 *     -> delivery reports -> tracker -> status update (flush LSN)
 *
 * A pipeline outlives connections: the producer, its in-flight events and
 * the tracker survive a reconnect to PostgreSQL, so acks that arrive after a
 * reconnect still count.  A producer that failed fatally is replaced between
 * connections, with a fresh tracker: the slot resends what it had not
 * acknowledged.  Single-threaded, except obx_pipeline_kafka_reachable().
 */
#ifndef OUTBOXD_PIPELINE_H
#define OUTBOXD_PIPELINE_H

#include <signal.h>
#include <stdint.h>

#include "outboxd/config.h"
#include "outboxd/metrics.h"

typedef struct obx_pipeline obx_pipeline_t;

/*
 * Creates the producer and encoder; NULL with errstr on failure.  `metrics`
 * is borrowed and must outlive the pipeline.
 */
obx_pipeline_t *obx_pipeline_new(const obx_config_t *conf,
				 obx_metrics_t *metrics, char *errstr,
				 size_t errstr_size);

/* Flushes nothing: call obx_pipeline_run() to a clean stop first. */
void obx_pipeline_destroy(obx_pipeline_t *p);

/*
 * Streams over one replication connection until *stop becomes non-zero
 * (then drains Kafka, confirms what was acked, ends the copy and returns
 * OBX_OK) or until an error: OBX_RETRY means reconnect after a backoff, any
 * other error means stop (the message is in errstr and was not confirmed).
 */
obx_err_t obx_pipeline_run(obx_pipeline_t *p, volatile sig_atomic_t *stop,
			   char *errstr, size_t errstr_size);

/*
 * A stop requested between connections: waits up to shutdown.timeout.ms
 * for Kafka to acknowledge what is in flight and records it in the state
 * topic (the server is told at the next start).  OBX_OK when everything
 * drained; OBX_FATAL, with how many events stay unconfirmed in errstr,
 * otherwise.
 */
obx_err_t obx_pipeline_stop_disconnected(obx_pipeline_t *p, char *errstr,
					 size_t errstr_size);

/*
 * Waits until Kafka acknowledged every produced event or failed one, or
 * timeout_ms passed; used between connections and at exit.
 */
obx_err_t obx_pipeline_drain(obx_pipeline_t *p, int timeout_ms, char *errstr,
			     size_t errstr_size);

/* Whether Kafka answers within timeout_ms (false while the producer is being
 * replaced or an event waits for a missing topic); safe from any thread. */
bool obx_pipeline_kafka_reachable(obx_pipeline_t *p, int timeout_ms);

#endif
