/*
 * deadletter.h - the record a bad outbox row becomes on the dead letter
 * topic (SPEC section 5): the raw row as JSON,
 *   {"columns": {name: text or null}, "db", "schema", "table",
 *    "lsn": "X/Y", "txid", "error", ["truncated": [names]]}
 * No I/O; the pipeline produces it.  Thread-safe (no shared state).
 */
#ifndef OUTBOXD_DEADLETTER_H
#define OUTBOXD_DEADLETTER_H

#include <stddef.h>

#include "outboxd/decoder.h"

/* Dead letters of rows Kafka refused as too large keep this much of each
 * column, so that the dead letter itself fits. */
#define OBX_DEAD_LETTER_TRUNCATE 1024

/*
 * The dead letter of `change` from database `db`, for `reason`; column
 * values longer than max_value bytes are cut on a UTF-8 character boundary
 * and listed in "truncated" (SIZE_MAX: whole).  malloc'd; the caller frees
 * it.
 */
char *obx_dead_letter_json(const char *db, const obx_change_t *change,
			   const char *reason, size_t max_value);

#endif
