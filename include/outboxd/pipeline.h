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
#include "outboxd/replication.h"

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

/*
 * The handling of one replication message, without reading from or writing
 * to PostgreSQL: a keepalive moves the known WAL end (and the idle
 * confirmation); XLogData is decoded, routed, encoded, produced and tracked.
 * *reply_requested says the server asked for a status update, which the
 * caller sends.  Errors as obx_pipeline_run().  obx_pipeline_run() calls it
 * for each message; tests feed recorded messages to it.
 */
obx_err_t obx_pipeline_handle_message(obx_pipeline_t *p,
				      const obx_repl_msg_t *msg,
				      bool *reply_requested, char *errstr,
				      size_t errstr_size);

/* The database events are attributed to (source.db); a connection sets it,
 * tests without one call this first. */
void obx_pipeline_set_database(obx_pipeline_t *p, const char *db);

/* The highest LSN that may be confirmed now (acknowledged by Kafka). */
obx_lsn_t obx_pipeline_confirmed(const obx_pipeline_t *p);

/* Events handed to Kafka and not acknowledged yet. */
size_t obx_pipeline_inflight(const obx_pipeline_t *p);

/* Serves Kafka's delivery reports for up to timeout_ms; then OBX_OK, or
 * what check_kafka says: OBX_FATAL for a failed delivery, OBX_RETRY for a
 * producer that must be replaced. */
obx_err_t obx_pipeline_serve_kafka(obx_pipeline_t *p, int timeout_ms,
				   char *errstr, size_t errstr_size);

/* The stream broke: an open transaction will come again, whole, and its
 * copy so far never confirms anything. */
void obx_pipeline_connection_lost(obx_pipeline_t *p);

/* Whether Kafka answers within timeout_ms (false while the producer is being
 * replaced or an event waits for a missing topic); safe from any thread. */
bool obx_pipeline_kafka_reachable(obx_pipeline_t *p, int timeout_ms);

#endif
