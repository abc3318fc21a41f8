/*
 * fuzz_common.h - what the decoder fuzz targets share: one config (an
 * additional placement and outbox messages on, so those paths are fuzzed
 * too) and the router and Avro envelope a decoded change goes through, as
 * in the pipeline.  Single-threaded, set up once per process.
 */
#ifndef OUTBOXD_FUZZ_COMMON_H
#define OUTBOXD_FUZZ_COMMON_H

#include "outboxd/config.h"
#include "outboxd/decoder.h"

/* The config for `plugin`, created on first use; aborts on error. */
const obx_config_t *fuzz_config(const char *plugin);

/* Routes a decoded change and encodes the event it makes, if any. */
void fuzz_route_and_encode(const obx_change_t *change);

#endif
