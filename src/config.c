/*
 * config.c - the option table and everything generated from it: parsing,
 * validation, environment overrides and the reference documentation.
 */
#include "outboxd/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "outboxd/log.h"

typedef enum {
	OPT_STRING,
	OPT_BOOL,
	OPT_INT,
	OPT_ENUM,
} option_type_t;

enum {
	OPT_REQUIRED = 1 << 0,	 /* no default: must be set */
	OPT_SECRET = 1 << 1,	 /* never echoed back in messages */
	OPT_NOT_EMPTY = 1 << 2,	 /* may not be set to "" */
	OPT_NULLABLE = 1 << 3,	 /* a column whose value may be NULL */
	OPT_JAVA_CLASS = 1 << 4, /* an enum whose choices may carry a Java
				  * package (a.b.Choice), as Java clients
				  * spell them */
};
/* The option names the outbox column of this role (obx_column_role_t);
 * the roles sit above the other flags' bits. */
#define OPT_COLUMN(role)    ((unsigned)((role) + 1) << 8)
#define OPT_COLUMN_ROLE(fl) ((int)((fl) >> 8) - 1)

/* One row per option: everything parsing, validation, the environment
 * and the reference need. */
typedef struct {
	const char *name;
	option_type_t type;
	long min, max;		    /* OPT_INT bounds */
	const char *const *choices; /* OPT_ENUM, NULL-terminated; the field
				     * is the enum, in this order */
	size_t offset;		    /* into obx_config_t */
	const char *default_value;  /* NULL: unset (or OPT_REQUIRED) */
	unsigned flags;
	const char *help;
} option_t;

static const char *const plugin_choices[] = { "wal2json", "pgoutput", NULL };
static const char *const autocreate_choices[] = { "filtered", "disabled",
						  NULL };
static const char *const invalid_op_choices[] = { "warn", "error", "fatal",
						  NULL };
static const char *const bad_event_choices[] = { "dlq", "fail", "skip", NULL };
static const char *const value_format_choices[] = { "avro", "payload",
						    "avro-registry", NULL };
static const char *const guarantee_choices[] = { "at-least-once",
						 "exactly-once", NULL };
static const char *const subject_strategy_choices[] = {
	"TopicNameStrategy", "RecordNameStrategy", "TopicRecordNameStrategy",
	NULL
};
static const char *const log_level_choices[] = { "debug", "info", "warn",
						 "error", NULL };
static const char *const log_format_choices[] = { "text", "json", NULL };

#define STR(field)	   OPT_STRING, 0, 0, NULL, offsetof(obx_config_t, field)
#define BOOL(field)	   OPT_BOOL, 0, 0, NULL, offsetof(obx_config_t, field)
#define INT(field, lo, hi) OPT_INT, lo, hi, NULL, offsetof(obx_config_t, field)
/* an enum field is written as an int: every one of them is int-sized */
#define ENUM(field, choices)                                                   \
	OPT_ENUM, 0, 0, choices, offsetof(obx_config_t, field)

static option_t options[] = {
	{ "database.url", STR(database_url), NULL, OPT_REQUIRED | OPT_SECRET,
	  "libpq connection string or URI of the database with the outbox "
	  "tables; libpq environment variables and the passfile work too" },
	{ "plugin.name", ENUM(plugin_name, plugin_choices), "wal2json", 0,
	  "logical decoding output plugin: pgoutput (built into PostgreSQL, "
	  "protocol version 1) or wal2json (the extension, format-version "
	  "2)" },
	{ "slot.name", STR(slot_name), "outboxd", 0,
	  "logical replication slot (lower-case letters, digits, underscore)" },
	{ "slot.create", BOOL(slot_create), "true", 0,
	  "create the slot at start if it is missing and the state topic has "
	  "no record of this connector (a first start); a slot lost after "
	  "that is recreated only by `outboxd slot create --yes`" },
	{ "state.topic", STR(state_topic), "outboxd.state", OPT_NOT_EMPTY,
	  "compacted Kafka topic where the connector records what it has "
	  "streamed (system identifier, timeline, confirmed LSN); created "
	  "with the cluster's replication factor when missing" },
	{ "publication.name", STR(publication_name), "outboxd", 0,
	  "pgoutput only: the publication on the outbox tables (1-63 "
	  "lower-case letters, digits and underscores)" },
	{ "publication.autocreate.mode",
	  ENUM(publication_autocreate_mode, autocreate_choices), "filtered", 0,
	  "pgoutput only: filtered (create the publication on exactly the "
	  "outbox tables when missing, add a missing outbox table to it) or "
	  "disabled (never change it; a missing publication or table is an "
	  "error)" },
	{ "outbox.messages.prefix", STR(outbox_messages_prefix), NULL, 0,
	  "when set, a transactional logical decoding message with this "
	  "prefix, written by pg_logical_emit_message(true, prefix, json), "
	  "is an event: its JSON object carries the outbox columns by the "
	  "same names; unset: messages are ignored" },
	{ "table.include.list", STR(table_include_list), "public.outbox", 0,
	  "comma-separated outbox tables, schema-qualified (a bare name means "
	  "public.name); names resolve as in SQL: unquoted ones fold to lower "
	  "case, \"Quoted\" ones keep theirs; each must exist at start" },
	{ "table.field.event.id", STR(field_event_id), "id",
	  OPT_NOT_EMPTY | OPT_COLUMN(OBX_COL_ID),
	  "column with the event id (header `id`, envelope `id`)" },
	{ "table.field.event.key", STR(field_event_key), "aggregateid",
	  OPT_NOT_EMPTY | OPT_COLUMN(OBX_COL_KEY),
	  "column with the aggregate id: the Kafka message key" },
	{ "table.field.event.type", STR(field_event_type), "type",
	  OPT_NOT_EMPTY | OPT_COLUMN(OBX_COL_TYPE),
	  "column with the event type (header `eventType`)" },
	{ "table.field.event.payload", STR(field_event_payload), "payload",
	  OPT_NOT_EMPTY | OPT_COLUMN(OBX_COL_PAYLOAD) | OPT_NULLABLE,
	  "column with the event body, kept as JSON text" },
	{ "table.field.event.timestamp", STR(field_event_timestamp), NULL,
	  OPT_COLUMN(OBX_COL_TIMESTAMP) | OPT_NULLABLE,
	  "column with the event time; when unset the commit time is used" },
	{ "route.by.field", STR(route_by_field), "aggregatetype",
	  OPT_NOT_EMPTY | OPT_COLUMN(OBX_COL_ROUTE),
	  "column whose value replaces ${routedByValue} in the topic" },
	{ "route.topic.replacement", STR(route_topic_replacement),
	  "outbox.event.${routedByValue}", OPT_NOT_EMPTY,
	  "topic name template" },
	{ "route.tombstone.on.empty.payload",
	  BOOL(route_tombstone_on_empty_payload), "false", 0,
	  "send a null value (tombstone) when the payload column is NULL or "
	  "empty" },
	{ "table.fields.additional.placement", STR(fields_additional_placement),
	  NULL, 0,
	  "extra columns: `col:header[:alias]` or `col:envelope[:alias]`, "
	  "comma-separated" },
	{ "table.op.invalid.behavior",
	  ENUM(op_invalid_behavior, invalid_op_choices), "warn", 0,
	  "UPDATE or TRUNCATE on an outbox table: warn (log, skip), error (log "
	  "at error, skip) or fatal (stop without confirming)" },
	{ "value.format", ENUM(value_format, value_format_choices), "avro", 0,
	  "the record value: avro (the envelope, Avro single-object "
	  "encoding), avro-registry (the envelope in Confluent's schema "
	  "registry framing: a zero byte, the schema id in 4 bytes, the "
	  "datum; needs schema.registry.url) or payload (the payload "
	  "column's text exactly, as Debezium's outbox router writes it with "
	  "StringConverter; a NULL payload is a null value)" },
	{ "schema.registry.url", STR(schema_registry_url), NULL, 0,
	  "the schema registry (Confluent's REST API) for "
	  "value.format=avro-registry; several URLs, comma-separated, are "
	  "tried in turn" },
	{ "schema.registry.basic.auth.user.info",
	  STR(schema_registry_user_info), NULL, OPT_SECRET,
	  "user:password for the registry's HTTP basic authentication" },
	{ "schema.registry.ssl.ca.location", STR(schema_registry_ca_location),
	  NULL, 0,
	  "CA certificates (PEM file) that sign the registry's certificate; "
	  "unset: the system's" },
	{ "schema.registry.ssl.certificate.location",
	  STR(schema_registry_certificate_location), NULL, 0,
	  "client certificate (PEM) for a registry that asks for one" },
	{ "schema.registry.ssl.key.location", STR(schema_registry_key_location),
	  NULL, OPT_SECRET, "the client certificate's private key (PEM)" },
	{ "schema.registry.request.timeout.ms",
	  INT(schema_registry_timeout_ms, 100, 600000), "10000", 0,
	  "one registry request, connection included; a registry that does "
	  "not answer is retried with backoff" },
	{ "value.subject.name.strategy",
	  ENUM(subject_strategy, subject_strategy_choices), "TopicNameStrategy",
	  OPT_JAVA_CLASS,
	  "the registry subject of a topic's values: TopicNameStrategy "
	  "(<topic>-value), RecordNameStrategy (io.outboxd.Envelope) or "
	  "TopicRecordNameStrategy (<topic>-io.outboxd.Envelope); Confluent's "
	  "class names (io.confluent.kafka.serializers.subject.*) are "
	  "accepted" },
	{ "auto.register.schemas", BOOL(auto_register_schemas), "true", 0,
	  "register the envelope schema under its subject at the subject's "
	  "first event; false: look it up, and stop (exit 1) when the "
	  "registry does not have it" },
	{ "errors.bad.event", ENUM(errors_bad_event, bad_event_choices), "dlq",
	  0,
	  "a row that cannot become a record: dlq (to errors.dlq.topic), fail "
	  "(stop, exit 3) or skip (log at error, data loss)" },
	{ "errors.dlq.topic", STR(errors_dlq_topic), "outbox.dlq",
	  OPT_NOT_EMPTY, "dead letter topic for errors.bad.event=dlq" },
	{ "delivery.guarantee", ENUM(delivery_guarantee, guarantee_choices),
	  "at-least-once", 0,
	  "at-least-once (events after the confirmed LSN may come again after "
	  "a crash) or exactly-once (Kafka transactions with a checkpoint in "
	  "the state topic: read_committed consumers see every event once)" },
	{ "transaction.interval.ms", INT(transaction_interval_ms, 1, 600000),
	  "500", 0,
	  "exactly-once: commit the open Kafka transaction at the first "
	  "PostgreSQL commit after this long (and whenever caught up)" },
	{ "transaction.max.events", INT(transaction_max_events, 1, 100000000),
	  "50000", 0,
	  "exactly-once: commit the open Kafka transaction at the first "
	  "PostgreSQL commit after this many events" },
	{ "max.inflight.events", INT(max_inflight_events, 1, 100000000),
	  "10000", 0,
	  "backpressure: stop reading the slot while this many events await "
	  "Kafka's acknowledgement" },
	{ "status.interval.ms", INT(status_interval_ms, 100, 3600000), "10000",
	  0,
	  "send a standby status update to the server at least this often; "
	  "keep it below the server's wal_sender_timeout" },
	{ "replication.timeout.ms", INT(replication_timeout_ms, 1000, 3600000),
	  "60000", 0,
	  "reconnect when the server sent nothing for this long (a stalled "
	  "network); must exceed status.interval.ms" },
	{ "shutdown.timeout.ms", INT(shutdown_timeout_ms, 0, 86400000), "90000",
	  0,
	  "on SIGTERM, wait this long for Kafka to acknowledge the events in "
	  "flight (also while disconnected); exit 1 if it does not, with "
	  "nothing confirmed past them; keep it below the pod's grace period" },
	{ "heartbeat.action.query", STR(heartbeat_action_query), NULL, 0,
	  "SQL run every heartbeat.interval.ms on a normal connection" },
	{ "heartbeat.interval.ms", INT(heartbeat_interval_ms, 0, 86400000), "0",
	  0, "0 disables the heartbeat" },
	{ "http.listen", STR(http_listen), "127.0.0.1:8080", 0,
	  "address:port for /metrics, /healthz, /readyz; empty disables" },
	{ "log.level", ENUM(log_level, log_level_choices), "info", 0,
	  "debug, info, warn or error" },
	{ "log.format", ENUM(log_format, log_format_choices), "text", 0,
	  "text or json (one JSON object per line)" },
	{ "stats.interval.ms", INT(stats_interval_ms, 0, 86400000), "10000", 0,
	  "log a progress line (events received/acked, rate, confirmed LSN) "
	  "this often; 0 disables" },
};

/* librdkafka settings we choose unless the user sets them (SPEC 6). */
static const struct {
	const char *key;
	const char *value;
} kafka_defaults[] = {
	{ "acks", "all" },
	{ "enable.idempotence", "true" },
	{ "partitioner", "murmur2_random" },
	/* measured (bench/, docs/performance.md): lingers only while
	 * catching up (the pipeline sends at once when caught up); 1 ms
	 * left ~3 events per request with 32 partitions, 20 ms gained
	 * nothing more and took more memory */
	{ "linger.ms", "5" },
};

#define FIELD(conf, opt, type) ((type *)((char *)(conf) + (opt)->offset))

static const option_t *find_option(const char *name)
{
	for (size_t i = 0; i < OBX_ARRAY_LEN(options); i++)
		if (strcmp(options[i].name, name) == 0)
			return &options[i];
	return NULL;
}

static int parse_bool(const char *value, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < OBX_ARRAY_LEN(yes); i++) {
		if (strcasecmp(value, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(value, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

static obx_err_t set_option(obx_config_t *conf, const option_t *opt,
			    const char *value, const char *where, char *errstr,
			    size_t errstr_size)
{
	/* a secret's value is never repeated in an error message */
	const char *shown = opt->flags & OPT_SECRET ? "(hidden)" : value;

	switch (opt->type) {
	case OPT_STRING: {
		char **field = FIELD(conf, opt, char *);
		free(*field);
		*field = *value ? obx_xstrdup(value) : NULL;
		return OBX_OK;
	}
	case OPT_BOOL:
		if (parse_bool(value, FIELD(conf, opt, bool)) < 0) {
			obx_errf(
			    errstr, errstr_size,
			    "%s: invalid value \"%s\" for \"%s\": expected "
			    "true or false",
			    where, shown, opt->name);
			return OBX_CONFIG;
		}
		return OBX_OK;
	case OPT_INT: {
		char *end;
		errno = 0;
		long v = strtol(value, &end, 10);
		if (errno || end == value || *end || v < opt->min ||
		    v > opt->max) {
			obx_errf(
			    errstr, errstr_size,
			    "%s: invalid value \"%s\" for \"%s\": expected "
			    "an integer from %ld to %ld",
			    where, shown, opt->name, opt->min, opt->max);
			return OBX_CONFIG;
		}
		*FIELD(conf, opt, long) = v;
		return OBX_OK;
	}
	case OPT_ENUM: {
		const char *choice = value;
		if ((opt->flags & OPT_JAVA_CLASS) && strrchr(value, '.'))
			choice = strrchr(value, '.') + 1;
		for (int i = 0; opt->choices[i]; i++) {
			if (strcmp(opt->choices[i], choice) == 0) {
				*FIELD(conf, opt, int) = i;
				return OBX_OK;
			}
		}
		char choices[256] = "";
		for (int i = 0; opt->choices[i]; i++) {
			strncat(choices, i ? ", " : "",
				sizeof(choices) - strlen(choices) - 1);
			strncat(choices, opt->choices[i],
				sizeof(choices) - strlen(choices) - 1);
		}
		obx_errf(errstr, errstr_size,
			 "%s: invalid value \"%s\" for \"%s\": expected one of "
			 "%s",
			 where, shown, opt->name, choices);
		return OBX_CONFIG;
	}
	}
	return OBX_FATAL;
}

obx_config_t *obx_config_new(void)
{
	obx_config_t *conf = obx_xcalloc(1, sizeof(*conf));
	char err[256];

	for (size_t i = 0; i < OBX_ARRAY_LEN(options); i++) {
		const char *def = options[i].default_value;
		/* the built-in defaults are valid: a failure is a bug here */
		if (def && set_option(conf, &options[i], def, "default", err,
				      sizeof(err)) != OBX_OK)
			abort();
	}
	/* kafka_defaults are added by validation, under the user's keys */
	return conf;
}

static void free_derived(obx_config_t *conf)
{
	for (size_t i = 0; i < conf->ntables; i++) {
		free(conf->tables[i].schema);
		free(conf->tables[i].table);
	}
	free(conf->tables);
	conf->tables = NULL;
	conf->ntables = 0;
	for (size_t i = 0; i < conf->nadditional; i++) {
		free(conf->additional[i].column);
		free(conf->additional[i].alias);
	}
	free(conf->additional);
	conf->additional = NULL;
	conf->nadditional = 0;
	free(conf->columns);
	conf->columns = NULL;
	conf->ncolumns = 0;
}

void obx_config_destroy(obx_config_t *conf)
{
	if (!conf)
		return;
	for (size_t i = 0; i < OBX_ARRAY_LEN(options); i++)
		if (options[i].type == OPT_STRING)
			free(*FIELD(conf, &options[i], char *));
	free_derived(conf);
	for (size_t i = 0; i < conf->nkafka; i++) {
		free(conf->kafka[i].key);
		free(conf->kafka[i].value);
	}
	free(conf->kafka);
	free(conf);
}

/* The key most similar to `key`, or NULL when none is close. */
static const char *closest_key(const char *key)
{
	const char *best = NULL;
	size_t best_distance = SIZE_MAX;

	for (size_t i = 0; i < OBX_ARRAY_LEN(options); i++) {
		size_t d = obx_edit_distance(key, options[i].name);
		if (d < best_distance) {
			best_distance = d;
			best = options[i].name;
		}
	}
	/* more than half the key changed is not a typo, it is another key */
	return best_distance <= strlen(key) / 2 + 1 ? best : NULL;
}

const char *obx_config_kafka(const obx_config_t *conf, const char *key)
{
	for (size_t i = 0; i < conf->nkafka; i++)
		if (strcmp(conf->kafka[i].key, key) == 0)
			return conf->kafka[i].value;
	return NULL;
}

static void kafka_put(obx_config_t *conf, const char *key, const char *value)
{
	for (size_t i = 0; i < conf->nkafka; i++) {
		if (strcmp(conf->kafka[i].key, key) == 0) {
			free(conf->kafka[i].value);
			conf->kafka[i].value = obx_xstrdup(value);
			return;
		}
	}
	conf->kafka = obx_xrealloc(conf->kafka,
				   (conf->nkafka + 1) * sizeof(*conf->kafka));
	conf->kafka[conf->nkafka].key = obx_xstrdup(key);
	conf->kafka[conf->nkafka].value = obx_xstrdup(value);
	conf->nkafka++;
}

/* Debezium connector settings that say what outboxd is, or that have no
 * effect on what it publishes: accepted as long as they say the same. */
static const struct {
	const char *key;
	const char *value; /* NULL: any value */
} debezium_keys[] = {
	{ "connector.class",
	  "io.debezium.connector.postgresql.PostgresConnector" },
	{ "transforms.*.type", "io.debezium.transforms.outbox.EventRouter" },
	{ "transforms", NULL },
	{ "name", NULL },
	{ "tasks.max", "1" },
	{ "topic.prefix", NULL },	  /* no topic of the router uses it */
	{ "tombstones.on.delete", NULL }, /* a DELETE is never an event */
	{ "snapshot.mode", "no_data" },	  /* outboxd never snapshots */
};

/*
 * A line of a Debezium connector configuration: `transforms.<alias>.<key>`
 * is the router's <key>, which outboxd names alike; the settings above are
 * accepted when they say what outboxd does.  *handled is false for any
 * other key.
 */
static obx_err_t set_debezium_key(obx_config_t *conf, const char *key,
				  const char *value, const char *where,
				  bool *handled, char *errstr,
				  size_t errstr_size)
{
	char pattern[256];
	const char *alias_end = NULL;
	*handled = false;
	if (strncmp(key, "transforms.", 11) == 0)
		alias_end = strchr(key + 11, '.');
	snprintf(pattern, sizeof(pattern), "%s",
		 alias_end ? "transforms.*." : key);
	if (alias_end) {
		const option_t *opt = find_option(alias_end + 1);
		if (opt) {
			*handled = true;
			return set_option(conf, opt, value, where, errstr,
					  errstr_size);
		}
		snprintf(pattern, sizeof(pattern), "transforms.*.%s",
			 alias_end + 1);
	}
	for (size_t i = 0; i < OBX_ARRAY_LEN(debezium_keys); i++) {
		if (strcmp(debezium_keys[i].key, pattern) != 0)
			continue;
		*handled = true;
		if (!debezium_keys[i].value ||
		    strcmp(debezium_keys[i].value, value) == 0)
			return OBX_OK;
		obx_errf(errstr, errstr_size,
			 "%s: Debezium's \"%s\" = \"%s\" is not what outboxd "
			 "does (it is \"%s\"); see "
			 "docs/migrating-from-debezium.md",
			 where, key, value, debezium_keys[i].value);
		return OBX_CONFIG;
	}
	if (alias_end) {
		*handled = true;
		obx_errf(errstr, errstr_size,
			 "%s: Debezium's router setting \"%s\" has no "
			 "counterpart in outboxd; see "
			 "docs/migrating-from-debezium.md",
			 where, alias_end + 1);
		return OBX_CONFIG;
	}
	return OBX_OK;
}

obx_err_t obx_config_set(obx_config_t *conf, const char *key, const char *value,
			 const char *where, char *errstr, size_t errstr_size)
{
	if (strncmp(key, "kafka.", 6) == 0 && key[6]) {
		kafka_put(conf, key + 6, value);
		return OBX_OK;
	}
	bool debezium;
	obx_err_t err = set_debezium_key(conf, key, value, where, &debezium,
					 errstr, errstr_size);
	if (debezium)
		return err;
	const option_t *opt = find_option(key);
	if (!opt) {
		const char *near = closest_key(key);
		if (near)
			obx_errf(
			    errstr, errstr_size,
			    "%s: unknown configuration key \"%s\" (did you "
			    "mean \"%s\"?)",
			    where, key, near);
		else
			obx_errf(errstr, errstr_size,
				 "%s: unknown configuration key \"%s\"", where,
				 key);
		return OBX_CONFIG;
	}
	return set_option(conf, opt, value, where, errstr, errstr_size);
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

obx_err_t obx_config_load_file(obx_config_t *conf, const char *path,
			       char *errstr, size_t errstr_size)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	unsigned lineno = 0;
	obx_err_t err = OBX_OK;

	if (!f) {
		obx_errf(errstr, errstr_size,
			 "could not open configuration file \"%s\": %s", path,
			 strerror(errno));
		return OBX_CONFIG;
	}
	while (err == OBX_OK && getline(&line, &cap, f) != -1) {
		char where[512];
		lineno++;
		snprintf(where, sizeof(where), "%s:%u", path, lineno);
		char *s = trim(line);
		if (*s == '\0' || *s == '#' || *s == '!')
			continue;
		char *eq = strchr(s, '=');
		if (!eq) {
			obx_errf(errstr, errstr_size,
				 "%s: expected \"key = value\"", where);
			err = OBX_CONFIG;
			break;
		}
		*eq = '\0';
		err = obx_config_set(conf, trim(s), trim(eq + 1), where, errstr,
				     errstr_size);
	}
	free(line);
	fclose(f);
	return err;
}

/* "OUTBOXD_SLOT_NAME" -> "slot.name"; returns 0 when it is ours. */
static int env_to_key(const char *var, size_t len, char *key, size_t size)
{
	static const char prefix[] = "OUTBOXD_";
	size_t plen = sizeof(prefix) - 1;

	if (len <= plen || len - plen >= size || strncmp(var, prefix, plen))
		return -1;
	for (size_t i = plen; i < len; i++)
		key[i - plen] =
		    var[i] == '_' ? '.' : (char)tolower((unsigned char)var[i]);
	key[len - plen] = '\0';
	return 0;
}

obx_err_t obx_config_load_env(obx_config_t *conf, char *const *envp,
			      char *errstr, size_t errstr_size)
{
	for (; envp && *envp; envp++) {
		const char *eq = strchr(*envp, '=');
		char key[256], where[300];
		if (!eq || env_to_key(*envp, (size_t)(eq - *envp), key,
				      sizeof(key)) < 0)
			continue;
		if (strncmp(key, "kafka.", 6) != 0 && !find_option(key))
			continue;
		snprintf(where, sizeof(where), "$%.*s", (int)(eq - *envp),
			 *envp);
		obx_err_t err = obx_config_set(conf, key, eq + 1, where, errstr,
					       errstr_size);
		if (err != OBX_OK)
			return err;
	}
	return OBX_OK;
}

/* "slot.name" -> "OUTBOXD_SLOT_NAME" */
static void env_name(const char *key, char *out, size_t size)
{
	size_t n = (size_t)snprintf(out, size, "OUTBOXD_");
	for (; *key && n + 1 < size; key++)
		out[n++] =
		    *key == '.' ? '_' : (char)toupper((unsigned char)*key);
	out[n] = '\0';
}

static bool is_identifier(const char *s, size_t len)
{
	if (len == 0 || len > 63)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!(isalnum(c) || c == '_' || c == '$' || c >= 0x80))
			return false;
	}
	return !isdigit((unsigned char)s[0]);
}

/*
 * One identifier of table.include.list as PostgreSQL resolves it: "Quoted"
 * keeps its case, unquoted folds A-Z to lower case, so public.Outbox names
 * the table outbox, as it would in SQL (wal2json compares names exactly: a
 * name left as typed would match nothing, silently).  Both hold identifier
 * characters only (letters, digits, _ and $), so the name reaches wal2json
 * without escapes.  Returns it allocated and advances *s; NULL if invalid.
 */
static char *read_identifier(const char **s)
{
	const char *p = *s;
	bool quoted = *p == '"';
	if (quoted)
		p++;
	const char *start = p;
	while (*p && (isalnum((unsigned char)*p) || *p == '_' || *p == '$' ||
		      (unsigned char)*p >= 0x80))
		p++;
	size_t len = (size_t)(p - start);
	if ((quoted && *p++ != '"') || !is_identifier(start, len))
		return NULL;
	char *id = obx_xstrndup(start, len);
	for (char *c = id; !quoted && *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	*s = p;
	return id;
}

static obx_err_t parse_tables(obx_config_t *conf, char *errstr,
			      size_t errstr_size)
{
	char *list = obx_xstrdup(
	    conf->table_include_list ? conf->table_include_list : "");
	char *save = NULL;
	obx_err_t err = OBX_OK;

	for (char *item = strtok_r(list, ",", &save); item;
	     item = strtok_r(NULL, ",", &save)) {
		const char *name = trim(item), *cursor = name;
		char *first = read_identifier(&cursor), *second = NULL;
		bool dotted = first && *cursor == '.';
		if (dotted) {
			cursor++;
			second = read_identifier(&cursor);
		}
		if (!first || (dotted && !second) || *cursor) {
			obx_errf(errstr, errstr_size,
				 "invalid table \"%s\" in table.include.list: "
				 "expected [schema.]table, each an identifier "
				 "of letters, digits, _ and $ (double-quote "
				 "one to keep its upper case)",
				 name);
			free(first);
			free(second);
			err = OBX_CONFIG;
			break;
		}
		conf->tables = obx_xrealloc(
		    conf->tables, (conf->ntables + 1) * sizeof(*conf->tables));
		conf->tables[conf->ntables].schema =
		    second ? first : obx_xstrdup("public");
		conf->tables[conf->ntables].table = second ? second : first;
		conf->ntables++;
	}
	free(list);
	if (err == OBX_OK && conf->ntables == 0) {
		obx_errf(errstr, errstr_size,
			 "table.include.list names no table");
		err = OBX_CONFIG;
	}
	return err;
}

static obx_err_t parse_additional(obx_config_t *conf, char *errstr,
				  size_t errstr_size)
{
	if (!conf->fields_additional_placement)
		return OBX_OK;
	char *list = obx_xstrdup(conf->fields_additional_placement);
	char *save = NULL;
	obx_err_t err = OBX_OK;

	for (char *item = strtok_r(list, ",", &save); item;
	     item = strtok_r(NULL, ",", &save)) {
		char *parts[3] = { NULL, NULL, NULL };
		char *psave = NULL;
		int n = 0;
		char *spec = trim(item);
		char *shown = obx_xstrdup(spec); /* strtok_r cuts spec up */
		for (char *p = strtok_r(spec, ":", &psave); p && n < 4;
		     p = strtok_r(NULL, ":", &psave))
			parts[n < 3 ? n : 2] = trim(p), n++;
		obx_placement_t where;
		if (n >= 2 && strcmp(parts[1], "header") == 0)
			where = OBX_PLACE_HEADER;
		else if (n >= 2 && strcmp(parts[1], "envelope") == 0)
			where = OBX_PLACE_ENVELOPE;
		else
			n = 0;
		if (n < 2 || n > 3 || !*parts[0]) {
			obx_errf(errstr, errstr_size,
				 "invalid entry \"%s\" in "
				 "table.fields.additional.placement: expected "
				 "column:header[:alias] or "
				 "column:envelope[:alias]",
				 shown);
			free(shown);
			err = OBX_CONFIG;
			break;
		}
		free(shown);
		conf->additional = obx_xrealloc(conf->additional,
						(conf->nadditional + 1) *
						    sizeof(*conf->additional));
		obx_additional_field_t *f =
		    &conf->additional[conf->nadditional++];
		f->column = obx_xstrdup(parts[0]);
		f->placement = where;
		f->alias = obx_xstrdup(n == 3 ? parts[2] : parts[0]);
	}
	free(list);
	return err;
}

static bool slot_name_valid(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len > 63)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!(islower((unsigned char)name[i]) ||
		      isdigit((unsigned char)name[i]) || name[i] == '_'))
			return false;
	return true;
}

/* conf->columns from the mapped-column settings (obx_column_role_t). */
static void list_columns(obx_config_t *conf)
{
	conf->ncolumns = OBX_COL_FIXED + conf->nadditional;
	conf->columns = obx_xcalloc(conf->ncolumns, sizeof(*conf->columns));
	for (size_t i = 0; i < OBX_ARRAY_LEN(options); i++) {
		int role = OPT_COLUMN_ROLE(options[i].flags);
		if (role >= 0)
			conf->columns[role] = (obx_mapped_column_t){
				options[i].name,
				*FIELD(conf, &options[i], char *),
				(options[i].flags & OPT_NULLABLE) != 0
			};
	}
	for (size_t i = 0; i < conf->nadditional; i++)
		conf->columns[OBX_COL_FIXED + i] =
		    (obx_mapped_column_t){ "table.fields.additional.placement",
					   conf->additional[i].column, true };
}

obx_err_t obx_config_validate(obx_config_t *conf, char *errstr,
			      size_t errstr_size)
{
	free_derived(conf);
	for (size_t i = 0; i < OBX_ARRAY_LEN(options); i++) {
		if ((options[i].flags & OPT_REQUIRED) &&
		    !*FIELD(conf, &options[i], char *)) {
			char var[128];
			env_name(options[i].name, var, sizeof(var));
			obx_errf(errstr, errstr_size,
				 "\"%s\" is required (or $%s)", options[i].name,
				 var);
			return OBX_CONFIG;
		}
	}
	/* both names reach SQL and the START_REPLICATION options: keeping
	 * them plain identifiers needs no quoting anywhere */
	const char *names[][2] = { { "slot.name", conf->slot_name },
				   { "publication.name",
				     conf->publication_name } };
	for (size_t i = 0; i < OBX_ARRAY_LEN(names); i++) {
		if (!names[i][1] || !slot_name_valid(names[i][1])) {
			obx_errf(errstr, errstr_size,
				 "invalid %s \"%s\": use 1-63 lower-case "
				 "letters, digits and underscores",
				 names[i][0], names[i][1] ? names[i][1] : "");
			return OBX_CONFIG;
		}
	}
	for (size_t i = 0; i < OBX_ARRAY_LEN(options); i++) {
		if ((options[i].flags & OPT_NOT_EMPTY) &&
		    options[i].type == OPT_STRING &&
		    !*FIELD(conf, &options[i], char *)) {
			obx_errf(errstr, errstr_size,
				 "\"%s\" must not be empty", options[i].name);
			return OBX_CONFIG;
		}
	}
	if (conf->replication_timeout_ms <= conf->status_interval_ms) {
		obx_errf(errstr, errstr_size,
			 "replication.timeout.ms (%ld) must exceed "
			 "status.interval.ms (%ld): the server answers at most "
			 "once per status update",
			 conf->replication_timeout_ms,
			 conf->status_interval_ms);
		return OBX_CONFIG;
	}
	const char *bootstrap = obx_config_kafka(conf, "bootstrap.servers");
	if (!bootstrap || !*bootstrap) {
		obx_errf(errstr, errstr_size,
			 "\"kafka.bootstrap.servers\" is required (or "
			 "$OUTBOXD_KAFKA_BOOTSTRAP_SERVERS)");
		return OBX_CONFIG;
	}
	for (size_t i = 0; i < OBX_ARRAY_LEN(kafka_defaults); i++)
		if (!obx_config_kafka(conf, kafka_defaults[i].key))
			kafka_put(conf, kafka_defaults[i].key,
				  kafka_defaults[i].value);
	/* the connector's identity: a restarted or second instance of the
	 * same slot fences the older one */
	const char *txn_id = obx_config_kafka(conf, "transactional.id");
	if (conf->delivery_guarantee == OBX_EXACTLY_ONCE && !txn_id) {
		char id[128];
		snprintf(id, sizeof(id), "outboxd-%s", conf->slot_name);
		kafka_put(conf, "transactional.id", id);
	} else if (conf->delivery_guarantee != OBX_EXACTLY_ONCE && txn_id) {
		obx_errf(errstr, errstr_size,
			 "kafka.transactional.id is set, but "
			 "delivery.guarantee is at-least-once: set "
			 "delivery.guarantee=exactly-once");
		return OBX_CONFIG;
	}
	obx_err_t err = parse_tables(conf, errstr, errstr_size);
	if (err == OBX_OK)
		err = parse_additional(conf, errstr, errstr_size);
	for (size_t i = 0; err == OBX_OK && i < conf->nadditional; i++) {
		if (conf->value_format == OBX_VALUE_PAYLOAD &&
		    conf->additional[i].placement == OBX_PLACE_ENVELOPE) {
			obx_errf(errstr, errstr_size,
				 "table.fields.additional.placement: \"%s\" "
				 "is placed in the envelope, but "
				 "value.format=payload writes none: place it "
				 "as a header (%s:header)",
				 conf->additional[i].column,
				 conf->additional[i].column);
			err = OBX_CONFIG;
		}
	}
	if (err == OBX_OK && conf->value_format == OBX_VALUE_AVRO_REGISTRY &&
	    !(conf->schema_registry_url && *conf->schema_registry_url)) {
		obx_errf(errstr, errstr_size,
			 "value.format=avro-registry needs "
			 "\"schema.registry.url\" (or "
			 "$OUTBOXD_SCHEMA_REGISTRY_URL)");
		err = OBX_CONFIG;
	}
	if (err == OBX_OK)
		list_columns(conf);
	return err;
}

const char *obx_config_plugin(const obx_config_t *conf)
{
	return plugin_choices[conf->plugin_name];
}

void obx_config_write_reference(FILE *out)
{
	fprintf(
	    out,
	    "# Configuration reference\n\n"
	    "<!-- generated by `outboxd config-reference` from the option "
	    "table in src/config.c; a test fails when this file drifts -->\n\n"
	    "Set keys in a properties file (`key = value`, `#` comments) "
	    "given with `-c FILE`,\n"
	    "or with an environment variable: `OUTBOXD_` + the key "
	    "upper-cased with `.` as `_`\n"
	    "(`OUTBOXD_DATABASE_URL`). The environment wins over the file. "
	    "Unknown keys in the\n"
	    "file are an error that names the closest known key.\n\n"
	    "| key | default | meaning |\n|---|---|---|\n");
	for (size_t i = 0; i < OBX_ARRAY_LEN(options); i++) {
		const option_t *opt = &options[i];
		const char *def = opt->default_value;
		fprintf(
		    out, "| `%s` | %s%s%s | %s |\n", opt->name, def ? "`" : "",
		    def ? def
			: (opt->flags & OPT_REQUIRED ? "(required)" : "(none)"),
		    def ? "`" : "", opt->help);
	}
	fprintf(out, "| `kafka.*` | ");
	for (size_t i = 0; i < OBX_ARRAY_LEN(kafka_defaults); i++)
		fprintf(out, "%s`%s=%s`", i ? ", " : "", kafka_defaults[i].key,
			kafka_defaults[i].value);
	fprintf(out, " | passed to librdkafka without the prefix; "
		     "`kafka.bootstrap.servers` is required |\n");
}
