/*
 * fuzz_wal2json.c - feeds arbitrary bytes to the wal2json decoder as one
 * replication message, and whatever decodes on through the router and the
 * Avro envelope, as the pipeline would (fuzz_common.c).  Built as a libFuzzer
 * target with -Dfuzzing=true (clang), and as a corpus replayer (replay_main.c)
 * that the normal test suite runs.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static obx_decoder_t *decoder;

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
	char err[1024];

	if (!decoder) {
		decoder =
		    obx_decoder_new(fuzz_config("wal2json"), err, sizeof(err));
		if (!decoder)
			abort();
	}
	if (obx_decoder_decode(decoder, (const char *)data, size, 0x1234,
			       &change, err, sizeof(err)) != OBX_OK)
		return 0;
	check_against_jansson(data, size, &change);
	fuzz_route_and_encode(&change);
	return 0;
}
