/*
 * envelope.h - the Avro envelope of SPEC section 4, in single-object
 * encoding: C3 01, the schema's 8-byte little-endian CRC-64-AVRO fingerprint
 * of its Parsing Canonical Form, then the binary datum; or in a schema
 * registry's framing (Confluent's wire format): a zero byte, the schema's
 * registry id as 4 big-endian bytes, then the same datum.
 *
 * One output buffer is reused for every event.
 * Ownership: the bytes returned by obx_envelope_encode() belong to the
 * envelope and stay valid until the next encode or destroy.  Single-threaded.
 */
#ifndef OUTBOXD_ENVELOPE_H
#define OUTBOXD_ENVELOPE_H

#include "outboxd/common.h"
#include "outboxd/router.h"

#define OBX_ENVELOPE_HEADER_SIZE	  10
#define OBX_ENVELOPE_REGISTRY_HEADER_SIZE 5

typedef struct obx_envelope obx_envelope_t;

/* The schema text from schemas/envelope.avsc, NUL-terminated. */
const char *obx_envelope_schema_json(void);

obx_envelope_t *obx_envelope_new(char *errstr, size_t errstr_size);
void obx_envelope_destroy(obx_envelope_t *env);

/* The fingerprint written after C3 01. */
uint64_t obx_envelope_fingerprint(const obx_envelope_t *env);

/* Encodes one event; always OBX_OK (the schema was checked at creation). */
obx_err_t obx_envelope_encode(obx_envelope_t *env, const obx_event_t *event,
			      const void **out, size_t *out_len, char *errstr,
			      size_t errstr_size);

/* Encodes one event in the registry's framing, with the id the registry
 * gave the schema (registry.h). */
void obx_envelope_encode_registered(obx_envelope_t *env, const obx_event_t *ev,
				    uint32_t schema_id, const void **out,
				    size_t *out_len);

#endif
