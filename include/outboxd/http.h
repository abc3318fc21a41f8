/*
 * http.h - /metrics, /healthz and /readyz (SPEC section 8) on http.listen,
 * served by libmicrohttpd on its own thread.
 *
 *   /metrics  Prometheus text: obx_metrics_write() plus the slot's retained
 *             WAL, measured at scrape time
 *   /healthz  200 while the process loop ticks (within `liveness_s`)
 *   /readyz   200 while streaming from the slot and Kafka answers
 *
 * The callbacks run on the HTTP thread: they must be thread-safe.
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
