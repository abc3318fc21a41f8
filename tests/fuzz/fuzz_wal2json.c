/*
 * fuzz_wal2json.c - feeds arbitrary bytes to the wal2json decoder as one
 * replication message, and whatever decodes on through the router and the
 * Avro envelope, as the pipeline would.  Built as a libFuzzer target with
 * -Dfuzzing=true (clang), and as a corpus replayer (replay_main.c) that the
 * normal test suite runs.
 */
#include <stdint.h>
#include <stdlib.h>

#include "outboxd/decoder.h"
#include "outboxd/envelope.h"
#include "outboxd/log.h"
#include "outboxd/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static obx_config_t *conf;
static obx_decoder_t *decoder;
static obx_router_t *router;
static obx_envelope_t *envelope;

static void setup(void)
{
	char err[512];

	obx_log_setup(OBX_LOG_ERROR, OBX_LOG_TEXT);
	conf = obx_config_new();
	if (obx_config_set(conf, "database.url", "dbname=fuzz", "fuzz", err,
			   sizeof(err)) ||
	    obx_config_set(conf, "kafka.bootstrap.servers", "x:1", "fuzz", err,
			   sizeof(err)) ||
	    obx_config_set(conf, "table.fields.additional.placement",
			   "tenant:header,created_at:envelope", "fuzz", err,
			   sizeof(err)) ||
	    obx_config_validate(conf, err, sizeof(err)))
		abort();
	decoder = obx_decoder_new(conf, err, sizeof(err));
	router = obx_router_new(conf, "fuzz");
	envelope = obx_envelope_new(err, sizeof(err));
	if (!decoder || !envelope)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	obx_change_t change;
	obx_event_t event;
	char err[1024], reason[512];
	const void *bytes;
	size_t len;

	if (!conf)
		setup();
	if (obx_decoder_decode(decoder, (const char *)data, size, 0x1234,
			       &change, err, sizeof(err)) != OBX_OK)
		return 0;
	if (change.kind == OBX_CHANGE_NONE || change.kind == OBX_CHANGE_BEGIN ||
	    change.kind == OBX_CHANGE_COMMIT)
		return 0;
	if (obx_router_route(router, &change, 0, &event, reason,
			     sizeof(reason)) == OBX_ROUTE_EVENT)
		obx_envelope_encode(envelope, &event, &bytes, &len, err,
				    sizeof(err));
	return 0;
}
