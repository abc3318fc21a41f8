/*
 * config.h - the connector's configuration (SPEC section 6).
 *
 * One table of options (config.c) drives parsing, validation, the
 * OUTBOXD_* environment overrides and the generated reference
 * (obx_config_write_reference).  Values come, lowest priority first, from the
 * defaults, the properties file, then the environment.
 */
#ifndef OUTBOXD_CONFIG_H
#define OUTBOXD_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include "outboxd/common.h"
#include "outboxd/log.h"

typedef enum {
	OBX_INVALID_OP_WARN = 0,
	OBX_INVALID_OP_ERROR,
	OBX_INVALID_OP_FATAL,
} obx_invalid_op_t;

typedef enum {
	OBX_BAD_EVENT_DLQ = 0,
	OBX_BAD_EVENT_FAIL,
	OBX_BAD_EVENT_SKIP,
} obx_bad_event_t;

/* delivery.guarantee */
typedef enum {
	OBX_AT_LEAST_ONCE = 0,
	OBX_EXACTLY_ONCE, /* Kafka transactions with a checkpoint */
} obx_delivery_guarantee_t;

/* value.format */
typedef enum {
	OBX_VALUE_AVRO = 0,
	OBX_VALUE_PAYLOAD,
	OBX_VALUE_AVRO_REGISTRY, /* the envelope in a schema registry's framing
				  */
} obx_value_format_t;

/* value.subject.name.strategy: the registry subject of a topic's values */
typedef enum {
	OBX_SUBJECT_TOPIC = 0,	  /* <topic>-value */
	OBX_SUBJECT_RECORD,	  /* io.outboxd.Envelope */
	OBX_SUBJECT_TOPIC_RECORD, /* <topic>-io.outboxd.Envelope */
} obx_subject_strategy_t;

typedef enum {
	OBX_PLACE_HEADER = 0,
	OBX_PLACE_ENVELOPE,
} obx_placement_t;

/* table.fields.additional.placement, one entry per column. */
typedef struct {
	char *column;
	obx_placement_t placement;
	char *alias; /* name in the header/envelope; == column when not given */
} obx_additional_field_t;

/* A schema-qualified table of table.include.list. */
typedef struct {
	char *schema;
	char *table;
} obx_table_name_t;

/* plugin.name */
typedef enum {
	OBX_PLUGIN_WAL2JSON = 0,
	OBX_PLUGIN_PGOUTPUT,
} obx_plugin_t;

/* publication.autocreate.mode */
typedef enum {
	OBX_PUBLICATION_FILTERED = 0,
	OBX_PUBLICATION_DISABLED,
} obx_publication_mode_t;

/* The outbox table's columns the connector reads, in this order in
 * obx_config_t.columns; the additional placement columns follow. */
typedef enum {
	OBX_COL_ID,
	OBX_COL_KEY,
	OBX_COL_TYPE,
	OBX_COL_ROUTE,
	OBX_COL_PAYLOAD,
	OBX_COL_TIMESTAMP,
	OBX_COL_FIXED /* the first additional column */
} obx_column_role_t;

/* One column the connector reads from an outbox row. */
typedef struct {
	const char *option; /* the key that names it */
	const char *column; /* NULL: not configured (the timestamp) */
	bool nullable;	    /* a NULL value is allowed */
} obx_mapped_column_t;

/* A kafka.* key with the prefix removed, passed to librdkafka. */
typedef struct {
	char *key;
	char *value;
} obx_kafka_prop_t;

typedef struct obx_config {
	char *database_url;
	obx_plugin_t plugin_name;
	char *slot_name;
	bool slot_create;
	char *state_topic;
	char *publication_name;
	obx_publication_mode_t publication_autocreate_mode;
	char *outbox_messages_prefix; /* NULL: messages are not events */
	char *table_include_list;
	char *field_event_id;
	char *field_event_key;
	char *field_event_type;
	char *field_event_payload;
	char *field_event_timestamp; /* NULL: use the commit time */
	char *route_by_field;
	char *route_topic_replacement;
	bool route_tombstone_on_empty_payload;
	char *fields_additional_placement;
	obx_invalid_op_t op_invalid_behavior;
	obx_value_format_t value_format;
	char *schema_registry_url;	 /* comma-separated, tried in turn */
	char *schema_registry_user_info; /* user:password for basic auth */
	char *schema_registry_ca_location;
	char *schema_registry_certificate_location;
	char *schema_registry_key_location;
	long schema_registry_timeout_ms;
	obx_subject_strategy_t subject_strategy;
	bool auto_register_schemas;
	obx_bad_event_t errors_bad_event;
	char *errors_dlq_topic;
	long max_inflight_events;
	obx_delivery_guarantee_t delivery_guarantee;
	long transaction_interval_ms;
	long transaction_max_events;
	long status_interval_ms;
	long shutdown_timeout_ms;
	long replication_timeout_ms;
	char *heartbeat_action_query;
	long heartbeat_interval_ms;
	char *http_listen;
	obx_log_level_t log_level;
	obx_log_format_t log_format;
	long stats_interval_ms;

	/* derived from the strings above by validation */
	obx_table_name_t *tables;
	size_t ntables;
	obx_additional_field_t *additional;
	size_t nadditional;
	/* every column read from an outbox row (obx_column_role_t order,
	 * then the additional ones): the router, `check` and validation
	 * iterate this one list */
	obx_mapped_column_t *columns;
	size_t ncolumns;
	obx_kafka_prop_t *kafka;
	size_t nkafka;
} obx_config_t;

/* A config with every default set; never NULL (aborts on OOM). */
obx_config_t *obx_config_new(void);
void obx_config_destroy(obx_config_t *conf);

/*
 * Sets one key; "kafka.*" keys are collected for librdkafka.  `where` names
 * the origin for messages ("outboxd.properties:12", "$OUTBOXD_SLOT_NAME").
 * Unknown keys are an error naming the closest known key.
 */
obx_err_t obx_config_set(obx_config_t *conf, const char *key, const char *value,
			 const char *where, char *errstr, size_t errstr_size);

/* Reads a properties file: `key = value` lines, `#`/`!` comments. */
obx_err_t obx_config_load_file(obx_config_t *conf, const char *path,
			       char *errstr, size_t errstr_size);

/*
 * Applies OUTBOXD_<KEY> variables from envp (NULL-terminated "K=V" strings).
 * Variables that name no option are ignored: Kubernetes injects
 * OUTBOXD_SERVICE_HOST and friends for a Service called "outboxd".
 */
obx_err_t obx_config_load_env(obx_config_t *conf, char *const *envp,
			      char *errstr, size_t errstr_size);

/* Checks required keys and cross-field rules, fills the derived fields. */
obx_err_t obx_config_validate(obx_config_t *conf, char *errstr,
			      size_t errstr_size);

/* Markdown reference of every option, from the option table. */
void obx_config_write_reference(FILE *out);

/* The value of a kafka.* setting (key without the prefix), or NULL when it
 * is not set (librdkafka's default applies). */
const char *obx_config_kafka(const obx_config_t *conf, const char *key);

/* Name of the plugin selected by plugin.name. */
const char *obx_config_plugin(const obx_config_t *conf);

#endif
