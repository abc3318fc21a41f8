/*
 * fuzz_wal2json.c - feeds arbitrary bytes to the wal2json decoder as one
 * replication message, and whatever decodes on through the router and the
 * Avro envelope, as the pipeline would.  Built as a libFuzzer target with
 * -Dfuzzing=true (clang), and as a corpus replayer (replay_main.c) that the
 * normal test suite runs.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/*
 * Differential check: whatever our scanner accepts, jansson must parse too,
 * and every string column we return must equal jansson's reading of it.
 * One divergence is deliberate: jansson refuses numbers beyond 64-bit
 * integers or doubles, while we keep a number's exact text (numeric(30)
 * columns need that).
 */
static void check_against_jansson(const uint8_t *data, size_t size,
				  const obx_change_t *change)
{
	json_error_t jerr;
	json_t *root = json_loadb((const char *)data, size, 0, &jerr);

	if (!root &&
	    (strstr(jerr.text, "too big") || strstr(jerr.text, "overflow")))
		return;
	if (!root) {
		fprintf(stderr, "accepted, jansson rejects: %s\n", jerr.text);
		abort();
	}
	const char *list =
	    change->kind == OBX_CHANGE_DELETE ? "identity" : "columns";
	json_t *columns = json_object_get(root, list);
	for (size_t i = 0; i < change->ncolumns && json_is_array(columns);
	     i++) {
		json_t *v =
		    json_object_get(json_array_get(columns, i), "value");
		const obx_column_t *c = &change->columns[i];
		if (json_is_string(v) &&
		    (!c->value || c->value_len != json_string_length(v) ||
		     memcmp(c->value, json_string_value(v), c->value_len))) {
			fprintf(stderr, "column %zu differs from jansson\n", i);
			abort();
		}
	}
	json_decref(root);
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
	check_against_jansson(data, size, &change);
	if (change.kind == OBX_CHANGE_NONE || change.kind == OBX_CHANGE_BEGIN ||
	    change.kind == OBX_CHANGE_COMMIT)
		return 0;
	if (obx_router_route(router, &change, 0, &event, reason,
			     sizeof(reason)) == OBX_ROUTE_EVENT)
		obx_envelope_encode(envelope, &event, &bytes, &len, err,
				    sizeof(err));
	return 0;
}
