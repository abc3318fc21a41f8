/* fuzz_common.c - see fuzz_common.h. */
#include "fuzz_common.h"

#include <stdlib.h>

#include "outboxd/envelope.h"
#include "outboxd/log.h"
#include "outboxd/router.h"

static obx_config_t *conf;
static obx_router_t *router;
static obx_envelope_t *envelope;

/* At exit: avro-c keeps a value's strings behind pointers LeakSanitizer
 * cannot follow, so a live envelope reads as a leak. */
static void cleanup(void)
{
	obx_envelope_destroy(envelope);
	obx_router_destroy(router);
	obx_config_destroy(conf);
}

const obx_config_t *fuzz_config(const char *plugin)
{
	char err[512];

	if (conf)
		return conf;
	obx_log_setup(OBX_LOG_ERROR, OBX_LOG_TEXT);
	conf = obx_config_new();
	if (obx_config_set(conf, "database.url", "dbname=fuzz", "fuzz", err,
			   sizeof(err)) ||
	    obx_config_set(conf, "kafka.bootstrap.servers", "x:1", "fuzz", err,
			   sizeof(err)) ||
	    obx_config_set(conf, "plugin.name", plugin, "fuzz", err,
			   sizeof(err)) ||
	    obx_config_set(conf, "outbox.messages.prefix", "outbox", "fuzz",
			   err, sizeof(err)) ||
	    obx_config_set(conf, "table.fields.additional.placement",
			   "tenant:header,created_at:envelope", "fuzz", err,
			   sizeof(err)) ||
	    obx_config_validate(conf, err, sizeof(err)))
		abort();
	router = obx_router_new(conf, "fuzz");
	envelope = obx_envelope_new(err, sizeof(err));
	if (!envelope)
		abort();
	atexit(cleanup);
	return conf;
}

void fuzz_route_and_encode(const obx_change_t *change)
{
	obx_event_t event;
	char err[1024], reason[512];
	const void *bytes;
	size_t len;

	if (change->kind == OBX_CHANGE_NONE ||
	    change->kind == OBX_CHANGE_BEGIN ||
	    change->kind == OBX_CHANGE_COMMIT)
		return;
	if (obx_router_route(router, change, 0, &event, reason,
			     sizeof(reason)) == OBX_ROUTE_EVENT)
		obx_envelope_encode(envelope, &event, &bytes, &len, err,
				    sizeof(err));
}
