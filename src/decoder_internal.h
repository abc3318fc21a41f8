/*
 * decoder_internal.h - what a plugin decoder provides to decoder.c.
 * Not a public header: only decoder*.c include it.
 */
#ifndef OUTBOXD_DECODER_INTERNAL_H
#define OUTBOXD_DECODER_INTERNAL_H

#include "outboxd/decoder.h"

typedef struct {
	const char *plugin;
	void *(*create)(const obx_config_t *conf, char *errstr,
			size_t errstr_size);
	void (*destroy)(void *state);
	obx_err_t (*start_options)(const void *state, const bool *partitioned,
				   char *buf, size_t size);
	obx_err_t (*decode)(void *state, const char *data, size_t len,
			    obx_lsn_t lsn, obx_change_t *out, char *errstr,
			    size_t errstr_size);
} obx_decoder_ops_t;

extern const obx_decoder_ops_t obx_wal2json_decoder;

#endif
