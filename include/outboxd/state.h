/*
 * state.h - the connector's durable memory in Kafka (SPEC section 7): one
 * record per connector in the compacted `state.topic`, saying which server
 * (system identifier, timeline) it streamed from through which slot, and up
 * to where Kafka had acknowledged everything.  Read at start, before
 * anything is streamed, so that a restart can tell a first start from a lost
 * slot or another server, and resume after what was already acknowledged.
 *
 * Record: key "<system identifier>/<database>/<slot>", value a JSON object
 * (obx_state_encode); readers ignore fields they do not know, so later
 * versions can add theirs (the exactly-once checkpoint).
 *
 * Errors: OBX_RETRY when Kafka cannot be reached or does not answer (the
 * caller retries: a state that cannot be read is never taken for a first
 * start); OBX_FATAL when the topic cannot be created or read for good (no
 * right to).  Blocking calls, for the pipeline's thread or a command.
 */
#ifndef OUTBOXD_STATE_H
#define OUTBOXD_STATE_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "outboxd/common.h"
#include "outboxd/config.h"

/* What the record's writer did to the slot. */
typedef enum {
	OBX_SLOT_STREAMED = 0, /* streamed; Kafka acknowledged up to lsn */
	OBX_SLOT_CREATED,      /* created at lsn (a first start, or a gap
				* the operator accepted) */
	OBX_SLOT_DROPPED,      /* dropped by `outboxd slot drop` */
	OBX_SLOT_RESET,	       /* moved to lsn by `outboxd slot reset` */
} obx_slot_event_t;

typedef struct {
	uint64_t system_id;
	char database[128];
	char slot[64];
	uint32_t timeline;
	obx_lsn_t lsn; /* see obx_slot_event_t */
	obx_slot_event_t event;
	int64_t written_us; /* wall clock */
} obx_state_record_t;

/* What the state topic holds for one slot of one database. */
typedef struct {
	bool found; /* a record for this very server */
	obx_state_record_t mine;
	bool other_found;	  /* a record for this slot on another server */
	obx_state_record_t other; /* the newest such */
} obx_state_view_t;

/* How long reading the state, or writing a record that must be there
 * before anything else happens, may take before it counts as failed. */
#define OBX_STATE_WAIT_MS 15000

/* "7312345/app/outboxd": the record's key, NUL-terminated. */
void obx_state_key(uint64_t system_id, const char *database, const char *slot,
		   char *key, size_t key_size);

/* The record's JSON value; malloc'd, the caller frees it. */
char *obx_state_encode(const obx_state_record_t *rec);

/* Parses a value; -1 when it is not a state record outboxd can read. */
int obx_state_decode(const char *value, size_t len, obx_state_record_t *rec);

/* "streamed", "created", ... */
const char *obx_slot_event_name(obx_slot_event_t event);

/*
 * Creates the topic when it is missing (compacted, one partition, the
 * cluster's default replication factor) and reads it to its end, filling
 * *view for this server's slot (system_id, database, conf->slot_name).
 * Waits up to timeout_ms, or until *stop (NULL: never) becomes non-zero:
 * then OBX_RETRY, as for a timeout.
 */
obx_err_t obx_state_read(const obx_config_t *conf, uint64_t system_id,
			 const char *database, int timeout_ms,
			 const volatile sig_atomic_t *stop,
			 obx_state_view_t *view, char *errstr,
			 size_t errstr_size);

/*
 * Writes one record with a producer of its own and waits up to timeout_ms
 * for Kafka's acknowledgement (for commands; the pipeline writes through
 * its own producer).
 */
obx_err_t obx_state_write(const obx_config_t *conf,
			  const obx_state_record_t *rec, int timeout_ms,
			  char *errstr, size_t errstr_size);

#endif
