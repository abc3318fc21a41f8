/*
 * avro_fingerprint.h - Parsing Canonical Form and the CRC-64-AVRO
 * fingerprint, as the Avro specification ("Schema Resolution" / "Parsing
 * Canonical Form for Schemas") defines them.  Attributes that do not affect
 * parsing, such as doc, default and logicalType, are not part of the form.
 */
#ifndef OUTBOXD_AVRO_FINGERPRINT_H
#define OUTBOXD_AVRO_FINGERPRINT_H

#include <stddef.h>
#include <stdint.h>

/*
 * Returns the canonical form of a JSON schema text as a malloc'd string, or
 * NULL with errstr when the text is not a schema.
 */
char *obx_avro_canonical_form(const char *schema_json, size_t len, char *errstr,
			      size_t errstr_size);

/* CRC-64-AVRO (the Rabin fingerprint of the specification). */
uint64_t obx_avro_crc64(const void *data, size_t len);

#endif
