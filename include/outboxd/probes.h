/*
 * probes.h - what the HTTP endpoints read about the running connector:
 * whether Kafka answers (through the pipeline's producer) and the slot's
 * retained WAL (over a normal connection of its own, read at most once per
 * 5 s so that a busy scraper does not load the server).
 *
 * Threads: created and destroyed on the main thread (after obx_http_stop);
 * the sources are called on the HTTP thread only, one call at a time.
 * Borrows conf and pipeline, which must outlive it.
 */
#ifndef OUTBOXD_PROBES_H
#define OUTBOXD_PROBES_H

#include "outboxd/config.h"
#include "outboxd/http.h"
#include "outboxd/metrics.h"
#include "outboxd/pipeline.h"

typedef struct obx_probes obx_probes_t;

obx_probes_t *obx_probes_new(const obx_config_t *conf,
			     obx_pipeline_t *pipeline);
void obx_probes_destroy(obx_probes_t *probes);

/* The sources for obx_http_start(), reading through `probes`. */
obx_http_sources_t obx_probes_sources(obx_probes_t *probes,
				      obx_metrics_t *metrics,
				      double liveness_s);

#endif
