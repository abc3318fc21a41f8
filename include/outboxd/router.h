/*
 * router.h - decides what a change means for the outbox (SPEC sections 2-3):
 * an event to publish, a change to ignore, an operation that is not allowed
 * on an outbox table, or a row that cannot become a valid record.
 *
 * Ownership: an obx_event_t points into the change it came from and into
 * router-owned buffers; it is valid until the next obx_router_route() call
 * or until the change's decoder moves on.  Every string in it is
 * NUL-terminated.  Single-threaded.
 */
#ifndef OUTBOXD_ROUTER_H
#define OUTBOXD_ROUTER_H

#include <stdbool.h>

#include "outboxd/config.h"
#include "outboxd/decoder.h"

/* A header or envelope field; value == NULL is SQL NULL. */
typedef struct {
	const char *name;
	const char *value;
	size_t value_len;
} obx_kv_t;

typedef struct {
	const char *topic;
	const char *key;
	size_t key_len;
	const char *id;
	size_t id_len;
	const char *type;
	size_t type_len;
	const char *aggregate_type;
	size_t aggregate_type_len;
	const char *payload; /* NULL: SQL NULL */
	size_t payload_len;
	bool tombstone; /* publish a null value
			   (route.tombstone.on.empty.payload) */
	int64_t timestamp_us;
	/* source */
	const char *db;
	const char *schema;
	const char *table;
	obx_lsn_t lsn;
	int64_t xid;
	const obx_kv_t *headers; /* id, eventType, aggregateType, then extras */
	size_t nheaders;
	const obx_kv_t *fields; /* envelope extras, SQL NULLs left out */
	size_t nfields;
} obx_event_t;

/* Why a row cannot become a record (a metrics label). */
typedef enum {
	OBX_BAD_NULL_COLUMN = 0,
	OBX_BAD_MISSING_COLUMN,
	OBX_BAD_INVALID_TOPIC,
	OBX_BAD_REJECTED_BY_KAFKA, /* set by the caller, not the router */
	OBX_BAD_OTHER,
	OBX_BAD_REASONS
} obx_bad_reason_t;

typedef enum {
	OBX_ROUTE_EVENT = 0,  /* publish *event */
	OBX_ROUTE_IGNORE,     /* not an outbox change, or a DELETE (cleanup) */
	OBX_ROUTE_INVALID_OP, /* UPDATE/TRUNCATE on an outbox table */
	OBX_ROUTE_BAD_EVENT,  /* an outbox INSERT that cannot be a record */
} obx_route_t;

typedef struct obx_router obx_router_t;

/* `db` is the database name stamped into source.db; copied. */
obx_router_t *obx_router_new(const obx_config_t *conf, const char *db);
void obx_router_destroy(obx_router_t *router);

/* True when schema.table is one of table.include.list. */
bool obx_router_is_outbox_table(const obx_router_t *router, const char *schema,
				const char *table);

/*
 * Routes a row change.  commit_time_us is the transaction's commit time,
 * used when table.field.event.timestamp is unset or NULL.  For
 * OBX_ROUTE_INVALID_OP and OBX_ROUTE_BAD_EVENT, reason says why, naming the
 * column; the caller adds the LSN and applies the configured policy.
 */
obx_route_t obx_router_route(obx_router_t *router, const obx_change_t *change,
			     int64_t commit_time_us, obx_event_t *event,
			     char *reason, size_t reason_size);

/* The class of the last OBX_ROUTE_BAD_EVENT's reason. */
obx_bad_reason_t obx_router_bad_reason(const obx_router_t *router);

/* Kafka's rule for topic names: 1-249 of [a-zA-Z0-9._-], not "." or "..". */
bool obx_topic_name_valid(const char *topic, size_t len);

#endif
