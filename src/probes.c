/* probes.c - Kafka reachability and retained WAL for the HTTP thread. */
#include "outboxd/probes.h"

#include <stdlib.h>

#include "outboxd/admin.h"

/* Scrapes within this long reuse the last retained-WAL reading. */
#define RETAINED_CACHE_US (5 * 1000000LL)
/* How long /readyz waits for Kafka's answer. */
#define KAFKA_PROBE_MS 2000

struct obx_probes {
	const obx_config_t *conf;
	obx_pipeline_t *pipeline;
	obx_admin_t *admin; /* the HTTP thread's own connection */
	double retained;
	int64_t retained_at_us;
};

obx_probes_t *obx_probes_new(const obx_config_t *conf, obx_pipeline_t *pipeline)
{
	obx_probes_t *probes = obx_xcalloc(1, sizeof(*probes));
	probes->conf = conf;
	probes->pipeline = pipeline;
	probes->retained = -1;
	return probes;
}

void obx_probes_destroy(obx_probes_t *probes)
{
	if (!probes)
		return;
	obx_admin_destroy(probes->admin);
	free(probes);
}

static bool kafka_reachable(void *ctx)
{
	obx_probes_t *probes = ctx;
	return obx_pipeline_kafka_reachable(probes->pipeline, KAFKA_PROBE_MS);
}

static double retained_wal_bytes(void *ctx)
{
	obx_probes_t *g = ctx;
	obx_slot_info_t info;
	char err[512];

	if (g->retained_at_us &&
	    obx_now_us() - g->retained_at_us < RETAINED_CACHE_US)
		return g->retained;
	g->retained_at_us = obx_now_us();

	if (g->admin && !obx_admin_ok(g->admin)) {
		obx_admin_destroy(g->admin);
		g->admin = NULL;
	}
	if (!g->admin)
		g->admin = obx_admin_connect(g->conf, "outboxd-metrics", err,
					     sizeof(err));
	if (!g->admin ||
	    obx_admin_slot_info(g->admin, g->conf->slot_name, &info, err,
				sizeof(err)) != OBX_OK ||
	    !info.exists)
		return g->retained = -1;
	return g->retained = (double)info.retained_bytes;
}

obx_http_sources_t obx_probes_sources(obx_probes_t *probes,
				      obx_metrics_t *metrics, double liveness_s)
{
	return (obx_http_sources_t){ .metrics = metrics,
				     .kafka_reachable = kafka_reachable,
				     .retained_wal_bytes = retained_wal_bytes,
				     .ctx = probes,
				     .liveness_s = liveness_s };
}
