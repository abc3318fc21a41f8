/*
 * registry.h - the schema registry client of value.format=avro-registry
 * (SPEC section 4): which id a Confluent-compatible registry gives the
 * envelope schema under a topic's subject.
 *
 * The first event of a topic registers the schema under its subject
 * (POST /subjects/{subject}/versions; the registry answers with the existing
 * id when the schema is already there) or, with auto.register.schemas=false,
 * looks it up (POST /subjects/{subject}).  The id is then cached by topic for
 * the process's life: the hot path makes no registry call.
 *
 * Errors, with errstr naming the subject, the URL and the registry's own
 * message:
 *   OBX_RETRY  no registry could be reached, or it answered 5xx, 408 or 429
 *              (every URL of schema.registry.url is tried in turn, starting
 *              with the last one that answered): wait and ask again;
 *   OBX_FATAL  an answer no retry changes: 409 (the subject's compatibility
 *              rules refuse the schema), 401/403 (credentials), 404 without
 *              auto-registration (not registered), 422 (schema refused).
 *
 * Threads: one thread at a time (the pipeline's, or a command's).
 * Ownership: the registry copies what it needs from conf and schema_json.
 */
#ifndef OUTBOXD_REGISTRY_H
#define OUTBOXD_REGISTRY_H

#include <stdint.h>

#include "outboxd/common.h"
#include "outboxd/config.h"

typedef struct obx_registry obx_registry_t;

/* schema_json: the schema as registered (schemas/envelope.avsc), a named
 * record (its full name is the subject of the record name strategies).
 * NULL with the reason when the configuration or the schema is unusable. */
obx_registry_t *obx_registry_new(const obx_config_t *conf,
				 const char *schema_json, char *errstr,
				 size_t errstr_size);
void obx_registry_destroy(obx_registry_t *r);

/* The subject of a topic's values, by value.subject.name.strategy. */
void obx_registry_subject(const obx_registry_t *r, const char *topic, char *out,
			  size_t out_size);

/* The schema id for events of `topic` (see above for the errors). */
obx_err_t obx_registry_schema_id(obx_registry_t *r, const char *topic,
				 uint32_t *id, char *errstr,
				 size_t errstr_size);

/*
 * For `check`: whether the registry answers (GET /subjects) and whether
 * every subject there that this connector writes to (a topic of
 * route_template, whose ${routedByValue} stands for any aggregate type)
 * accepts the schema (POST /compatibility/subjects/{s}/versions/latest);
 * with auto.register.schemas=false, also that each has it registered.
 * OBX_OK with a summary in `found`; otherwise the errors above.
 */
obx_err_t obx_registry_check(obx_registry_t *r, const char *route_template,
			     char *found, size_t found_size, char *errstr,
			     size_t errstr_size);

#endif
