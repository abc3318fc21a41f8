/*
 * http.h - /metrics, /healthz and /readyz (SPEC section 8) on http.listen,
 * served by libmicrohttpd on its own thread.
 *
 *   /metrics  Prometheus text: obx_metrics_write() plus the slot's retained
 *             WAL, measured at scrape time
 *   /healthz  200 while the process loop ticks (within `liveness_s`)
 *   /readyz   200 while streaming from the slot and Kafka answers
 *
 * Threads: libmicrohttpd serves every request on one internal thread
 * (MHD_USE_INTERNAL_POLLING_THREAD), so the source callbacks never run
 * concurrently with one another, but they do run concurrently with the
 * pipeline's thread: whatever they read of it must allow that (the metrics
 * take their mutex, obx_pipeline_kafka_reachable() the producer's lock).
 * obx_http_start() and obx_http_stop() belong to the main thread; stop
 * returns once the HTTP thread ended, after which the sources may go.
 */
#ifndef OUTBOXD_HTTP_H
#define OUTBOXD_HTTP_H

#include <stdbool.h>

#include "outboxd/metrics.h"

typedef struct {
	obx_metrics_t *metrics;
	/* Kafka answers a metadata request in time */
	bool (*kafka_reachable)(void *ctx);
	/* the slot's retained WAL in bytes, or < 0 if unknown */
	double (*retained_wal_bytes)(void *ctx);
	void *ctx;
	double liveness_s;
} obx_http_sources_t;

typedef struct obx_http obx_http_t;

/* Listens on "host:port" (":port" means all addresses); NULL on error. */
obx_http_t *obx_http_start(const char *listen, const obx_http_sources_t *src,
			   char *errstr, size_t errstr_size);
void obx_http_stop(obx_http_t *http);

#endif
