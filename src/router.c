/* router.c - outbox INSERTs to events: column mapping and topic routing. */
#include "outboxd/router.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUTED_BY_VALUE "${routedByValue}"

/* The fixed headers of every event, in this order, before the extras. */
enum { HEADER_ID, HEADER_EVENT_TYPE, HEADER_AGGREGATE_TYPE, FIXED_HEADERS };

/* A literal part of route.topic.replacement. */
typedef struct {
	const char *text;
	size_t len;
} piece_t;

struct obx_router {
	const obx_config_t *conf;
	/* the template's literals around its nmarkers markers */
	piece_t *pieces;
	size_t nmarkers, literal_len;
	char *db;
	char *topic; /* rendered topic name, reused */
	size_t topic_cap;
	obx_kv_t *headers;
	obx_kv_t *fields;
	/* where each looked-up column was last found: rows of one table
	 * repeat their column order, so the first guess nearly always hits */
	size_t *column_hints;
	obx_bad_reason_t bad_reason;
};

obx_bad_reason_t obx_router_bad_reason(const obx_router_t *r)
{
	return r->bad_reason;
}

/* Splits the template at its ${routedByValue} markers, once: scanning it
 * for them at every event cost a tenth of the router's work. */
static void split_template(obx_router_t *r, const char *tmpl)
{
	size_t marker = strlen(ROUTED_BY_VALUE);
	r->pieces = obx_xcalloc(strlen(tmpl) / marker + 2, sizeof(*r->pieces));
	const char *p = tmpl;
	for (const char *m; (m = strstr(p, ROUTED_BY_VALUE)); p = m + marker) {
		r->pieces[r->nmarkers++] = (piece_t){ p, (size_t)(m - p) };
		r->literal_len += (size_t)(m - p);
	}
	r->pieces[r->nmarkers] = (piece_t){ p, strlen(p) };
	r->literal_len += strlen(p);
}

obx_router_t *obx_router_new(const obx_config_t *conf, const char *db)
{
	obx_router_t *r = obx_xcalloc(1, sizeof(*r));
	r->conf = conf;
	r->db = obx_xstrdup(db);
	r->headers =
	    obx_xcalloc(FIXED_HEADERS + conf->nadditional, sizeof(obx_kv_t));
	r->fields = obx_xcalloc(conf->nadditional + 1, sizeof(obx_kv_t));
	r->column_hints = obx_xcalloc(conf->ncolumns, sizeof(size_t));
	split_template(r, conf->route_topic_replacement);
	r->headers[HEADER_ID].name = "id";
	r->headers[HEADER_EVENT_TYPE].name = "eventType";
	r->headers[HEADER_AGGREGATE_TYPE].name = "aggregateType";
	return r;
}

void obx_router_destroy(obx_router_t *r)
{
	if (!r)
		return;
	free(r->db);
	free(r->topic);
	free(r->headers);
	free(r->fields);
	free(r->column_hints);
	free(r->pieces);
	free(r);
}

bool obx_router_is_outbox_table(const obx_router_t *r, const char *schema,
				const char *table)
{
	for (size_t i = 0; i < r->conf->ntables; i++)
		if (strcmp(r->conf->tables[i].table, table) == 0 &&
		    strcmp(r->conf->tables[i].schema, schema) == 0)
			return true;
	return false;
}

bool obx_topic_name_valid(const char *topic, size_t len)
{
	if (len == 0 || len > 249 || strcmp(topic, ".") == 0 ||
	    strcmp(topic, "..") == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)topic[i];
		if (!(isalnum(c) || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static bool column_is(const obx_column_t *col, const char *name)
{
	return col->name[0] == name[0] && strcmp(col->name, name) == 0;
}

/* Finds a column by name, trying *hint (its last position) first. */
static const obx_column_t *find_column(const obx_change_t *change,
				       const char *name, size_t *hint)
{
	if (*hint < change->ncolumns &&
	    column_is(&change->columns[*hint], name))
		return &change->columns[*hint];
	for (size_t i = 0; i < change->ncolumns; i++)
		if (column_is(&change->columns[i], name)) {
			*hint = i;
			return &change->columns[i];
		}
	return NULL;
}

/* Renders route.topic.replacement from its pieces; returns the length. */
static size_t render_topic(obx_router_t *r, const char *value, size_t len)
{
	size_t need = r->literal_len + r->nmarkers * len + 1;
	if (need > r->topic_cap) {
		r->topic = obx_xrealloc(r->topic, need);
		r->topic_cap = need;
	}
	size_t out = 0;
	for (size_t i = 0; i <= r->nmarkers; i++) {
		memcpy(r->topic + out, r->pieces[i].text, r->pieces[i].len);
		out += r->pieces[i].len;
		if (i < r->nmarkers) {
			memcpy(r->topic + out, value, len);
			out += len;
		}
	}
	r->topic[out] = '\0';
	return out;
}

/* Looks up a mapped column that must be present and, if !nullable, set. */
/* conf->columns[index] in the row (its slot in column_hints too). */
static const obx_column_t *required_column(obx_router_t *r,
					   const obx_change_t *change,
					   size_t index, char *reason,
					   size_t reason_size)
{
	const obx_mapped_column_t *mapped = &r->conf->columns[index];
	const char *name = mapped->column, *option = mapped->option;
	bool nullable = mapped->nullable;
	const obx_column_t *col =
	    find_column(change, name, &r->column_hints[index]);
	r->bad_reason = col ? OBX_BAD_NULL_COLUMN : OBX_BAD_MISSING_COLUMN;
	if (!col) {
		if (change->kind == OBX_CHANGE_MESSAGE)
			obx_errf(reason, reason_size,
				 "field \"%s\" (%s) is missing from the "
				 "message",
				 name, option);
		else
			obx_errf(reason, reason_size,
				 "column \"%s\" (%s) is missing from %s.%s",
				 name, option, change->schema, change->table);
		return NULL;
	}
	if (!nullable && !col->value) {
		obx_errf(reason, reason_size, "column \"%s\" (%s) is NULL",
			 name, option);
		return NULL;
	}
	return col;
}

/* What a change on an outbox table is: OBX_ROUTE_EVENT for an INSERT. */
static obx_route_t outbox_operation(const obx_change_t *change, char *reason,
				    size_t reason_size)
{
	switch (change->kind) {
	case OBX_CHANGE_INSERT:
	case OBX_CHANGE_MESSAGE:
		break;
	case OBX_CHANGE_DELETE:
		/* the documented cleanup: insert-then-delete, or a purge job */
		return OBX_ROUTE_IGNORE;
	case OBX_CHANGE_UPDATE:
	case OBX_CHANGE_TRUNCATE:
		obx_errf(reason, reason_size,
			 "%s on outbox table %s.%s is not an event",
			 change->kind == OBX_CHANGE_UPDATE ? "UPDATE"
							   : "TRUNCATE",
			 change->schema, change->table);
		return OBX_ROUTE_INVALID_OP;
	default:
		return OBX_ROUTE_IGNORE;
	}
	return OBX_ROUTE_EVENT;
}

/* The event's time: the timestamp column when configured, else the commit
 * time.  False, with the reason, when the column is missing or no
 * timestamptz. */
static bool event_time(obx_router_t *r, const obx_change_t *change,
		       int64_t commit_time_us, int64_t *out, char *reason,
		       size_t reason_size)
{
	const obx_config_t *conf = r->conf;
	*out = commit_time_us;
	if (!conf->field_event_timestamp)
		return true;
	const obx_column_t *ts =
	    required_column(r, change, OBX_COL_TIMESTAMP, reason, reason_size);
	if (!ts)
		return false;
	if (ts->value &&
	    obx_parse_timestamptz(ts->value, ts->value_len, out) < 0) {
		r->bad_reason = OBX_BAD_OTHER;
		obx_errf(reason, reason_size,
			 "column \"%s\" (table.field.event.timestamp) is not a "
			 "timestamp with time zone: \"%.64s\"",
			 conf->field_event_timestamp, ts->value);
		return false;
	}
	return true;
}

/* table.fields.additional.placement: headers after the fixed ones, and
 * envelope fields.  False, with the reason, when a column is missing. */
static bool place_additional(obx_router_t *r, const obx_change_t *change,
			     size_t *nheaders, size_t *nfields, char *reason,
			     size_t reason_size)
{
	const obx_config_t *conf = r->conf;
	*nheaders = FIXED_HEADERS;
	*nfields = 0;
	for (size_t i = 0; i < conf->nadditional; i++) {
		const obx_additional_field_t *extra = &conf->additional[i];
		const obx_column_t *col = required_column(
		    r, change, OBX_COL_FIXED + i, reason, reason_size);
		if (!col)
			return false;
		if (extra->placement == OBX_PLACE_HEADER)
			r->headers[(*nheaders)++] =
			    (obx_kv_t){ extra->alias, col->value,
					col->value_len };
		else if (col->value)
			r->fields[(*nfields)++] =
			    (obx_kv_t){ extra->alias, col->value,
					col->value_len };
	}
	return true;
}

obx_route_t obx_router_route(obx_router_t *r, const obx_change_t *change,
			     int64_t commit_time_us, obx_event_t *ev,
			     char *reason, size_t reason_size)
{
	const obx_config_t *conf = r->conf;

	if (change->kind == OBX_CHANGE_MESSAGE && change->invalid) {
		r->bad_reason = OBX_BAD_OTHER;
		obx_errf(reason, reason_size, "%s", change->invalid);
		return OBX_ROUTE_BAD_EVENT;
	}
	/* a message is the decoder's only when its prefix is ours */
	if (change->kind != OBX_CHANGE_MESSAGE &&
	    !obx_router_is_outbox_table(r, change->schema, change->table))
		return OBX_ROUTE_IGNORE;
	obx_route_t op = outbox_operation(change, reason, reason_size);
	if (op != OBX_ROUTE_EVENT)
		return op;

	const obx_column_t *id, *key, *type, *route, *payload;
	if (!(id = required_column(r, change, OBX_COL_ID, reason,
				   reason_size)) ||
	    !(key = required_column(r, change, OBX_COL_KEY, reason,
				    reason_size)) ||
	    !(type = required_column(r, change, OBX_COL_TYPE, reason,
				     reason_size)) ||
	    !(route = required_column(r, change, OBX_COL_ROUTE, reason,
				      reason_size)) ||
	    !(payload = required_column(r, change, OBX_COL_PAYLOAD, reason,
					reason_size)))
		return OBX_ROUTE_BAD_EVENT;

	memset(ev, 0, sizeof(*ev));
	if (!event_time(r, change, commit_time_us, &ev->timestamp_us, reason,
			reason_size))
		return OBX_ROUTE_BAD_EVENT;

	size_t topic_len = render_topic(r, route->value, route->value_len);
	if (!obx_topic_name_valid(r->topic, topic_len)) {
		r->bad_reason = OBX_BAD_INVALID_TOPIC;
		obx_errf(reason, reason_size,
			 "topic \"%.300s\" (from %s \"%.100s\") is not a valid "
			 "Kafka topic name: use 1-249 of a-z A-Z 0-9 . _ -",
			 r->topic, conf->route_by_field, route->value);
		return OBX_ROUTE_BAD_EVENT;
	}

	size_t nheaders, nfields;
	if (!place_additional(r, change, &nheaders, &nfields, reason,
			      reason_size))
		return OBX_ROUTE_BAD_EVENT;
	r->headers[HEADER_ID].value = id->value;
	r->headers[HEADER_ID].value_len = id->value_len;
	r->headers[HEADER_EVENT_TYPE].value = type->value;
	r->headers[HEADER_EVENT_TYPE].value_len = type->value_len;
	r->headers[HEADER_AGGREGATE_TYPE].value = route->value;
	r->headers[HEADER_AGGREGATE_TYPE].value_len = route->value_len;

	ev->topic = r->topic;
	ev->key = key->value;
	ev->key_len = key->value_len;
	ev->id = id->value;
	ev->id_len = id->value_len;
	ev->type = type->value;
	ev->type_len = type->value_len;
	ev->aggregate_type = route->value;
	ev->aggregate_type_len = route->value_len;
	ev->payload = payload->value;
	ev->payload_len = payload->value_len;
	ev->tombstone = conf->route_tombstone_on_empty_payload &&
			(!payload->value || payload->value_len == 0);
	ev->db = r->db;
	ev->schema = change->schema;
	ev->table = change->table;
	ev->lsn = change->lsn;
	ev->xid = change->xid;
	ev->headers = r->headers;
	ev->nheaders = nheaders;
	ev->fields = r->fields;
	ev->nfields = nfields;
	return OBX_ROUTE_EVENT;
}
