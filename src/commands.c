/* commands.c - slot status/create/drop/reset and the preflight check. */
#include "outboxd/commands.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outboxd/admin.h"
#include "outboxd/envelope.h"
#include "outboxd/log.h"
#include "outboxd/pg.h"
#include "outboxd/producer.h"
#include "outboxd/publication.h"
#include "outboxd/registry.h"
#include "outboxd/replication.h"
#include "outboxd/state.h"

static obx_admin_t *connect_or_report(const obx_config_t *conf)
{
	char err[1024];
	obx_admin_t *a =
	    obx_admin_connect(conf, "outboxd-admin", err, sizeof(err));
	if (!a)
		fprintf(stderr, "outboxd: %s\n", err);
	return a;
}

static void human_bytes(long long bytes, char *out, size_t size)
{
	const char *units[] = { "B", "kB", "MB", "GB", "TB" };
	double v = (double)bytes;
	int u = 0;
	while (v >= 1000 && u < 4) {
		v /= 1000;
		u++;
	}
	snprintf(out, size, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

/* Reads the slot; prints why and returns false when it is unusable. */
static bool load_slot(obx_admin_t *a, const char *slot, obx_slot_info_t *info)
{
	char err[1024];
	if (obx_admin_slot_info(a, slot, info, err, sizeof(err)) != OBX_OK) {
		fprintf(stderr, "outboxd: could not read slot \"%s\": %s\n",
			slot, err);
		return false;
	}
	return true;
}

int obx_cmd_slot_status(const obx_config_t *conf)
{
	obx_slot_info_t s;
	char retained[32];
	obx_admin_t *a = connect_or_report(conf);

	if (!a)
		return OBX_EXIT_RUNTIME;
	if (!load_slot(a, conf->slot_name, &s)) {
		obx_admin_destroy(a);
		return OBX_EXIT_RUNTIME;
	}
	obx_admin_destroy(a);
	if (!s.exists) {
		printf("slot                %s\nstatus              does not "
		       "exist (outboxd slot create, or outboxd run with "
		       "slot.create=true)\n",
		       conf->slot_name);
		return OBX_EXIT_RUNTIME;
	}
	human_bytes(s.retained_bytes, retained, sizeof(retained));
	printf("slot                %s\n", conf->slot_name);
	printf("plugin              %s\n", s.plugin);
	printf("database            %s\n", s.database);
	if (s.active)
		printf("active              yes (pid %d)\n", s.active_pid);
	else
		printf("active              no\n");
	printf("confirmed_flush_lsn " OBX_LSN_FMT "\n",
	       OBX_LSN_ARGS(s.confirmed_flush));
	printf("restart_lsn         " OBX_LSN_FMT "\n",
	       OBX_LSN_ARGS(s.restart_lsn));
	printf("current_wal_lsn     " OBX_LSN_FMT "\n",
	       OBX_LSN_ARGS(s.current_wal));
	printf("retained_wal        %s (%lld bytes)\n", retained,
	       s.retained_bytes);
	printf("unconfirmed_wal     %lld bytes\n",
	       (long long)(s.current_wal > s.confirmed_flush
			       ? s.current_wal - s.confirmed_flush
			       : 0));
	printf("wal_status          %s\n", s.wal_status);
	return OBX_EXIT_CLEAN;
}

/*
 * Without --yes: on a terminal, asks for the slot name; otherwise says what
 * would happen and changes nothing.
 */
static bool confirmed(const obx_slot_options_t *opts, const char *slot)
{
	char answer[128];

	if (opts->yes)
		return true;
	if (!opts->interactive) {
		printf("nothing changed: run again with --yes to do this\n");
		return false;
	}
	printf("type the slot name (%s) to go ahead: ", slot);
	fflush(stdout);
	if (!fgets(answer, sizeof(answer), stdin))
		return false;
	answer[strcspn(answer, "\n")] = '\0';
	if (strcmp(answer, slot) != 0) {
		printf("nothing changed\n");
		return false;
	}
	return true;
}

/*
 * Connects and reads a slot that must exist and be inactive before `what`
 * (drop, reset) may touch it; NULL after saying why.
 */
static obx_admin_t *open_inactive_slot(const obx_config_t *conf,
				       obx_slot_info_t *s, const char *what)
{
	obx_admin_t *a = connect_or_report(conf);

	if (!a)
		return NULL;
	if (!load_slot(a, conf->slot_name, s)) {
		obx_admin_destroy(a);
		return NULL;
	}
	if (!s->exists) {
		fprintf(stderr, "outboxd: slot \"%s\" does not exist\n",
			conf->slot_name);
		obx_admin_destroy(a);
		return NULL;
	}
	if (s->active) {
		fprintf(stderr,
			"outboxd: refusing to %s slot \"%s\": it is active "
			"(pid %d); stop the connector first\n",
			what, conf->slot_name, s->active_pid);
		obx_admin_destroy(a);
		return NULL;
	}
	return a;
}

/* The connector as the server and the state topic know it. */
typedef struct {
	obx_repl_system_t system;
	char database[128];
	obx_state_view_t state;
} identity_t;

/* IDENTIFY_SYSTEM, then the state topic; false after saying why. */
static bool load_identity(const obx_config_t *conf, identity_t *id)
{
	char err[1024];
	if (obx_repl_identify(conf, &id->system, id->database,
			      sizeof(id->database), err,
			      sizeof(err)) != OBX_OK) {
		fprintf(stderr, "outboxd: %s\n", err);
		return false;
	}
	if (obx_state_read(conf, id->system.system_id, id->database,
			   OBX_STATE_WAIT_MS, NULL, &id->state, err,
			   sizeof(err)) != OBX_OK) {
		fprintf(stderr,
			"outboxd: %s; the slot is left as it is, since what "
			"this connector streamed cannot be told without it\n",
			err);
		return false;
	}
	return true;
}

/* Records what a command did to the slot; false after saying why. */
static bool record_state(const obx_config_t *conf, const identity_t *id,
			 obx_slot_event_t event, obx_lsn_t lsn)
{
	char err[1024];
	obx_state_record_t rec = { .system_id = id->system.system_id,
				   .timeline = id->system.timeline,
				   .lsn = lsn,
				   .event = event,
				   .written_us = obx_wallclock_us() };
	snprintf(rec.database, sizeof(rec.database), "%s", id->database);
	snprintf(rec.slot, sizeof(rec.slot), "%s", conf->slot_name);
	if (obx_state_write(conf, &rec, OBX_STATE_WAIT_MS, err, sizeof(err)) ==
	    OBX_OK)
		return true;
	fprintf(stderr, "outboxd: %s\n", err);
	return false;
}

/* Says which gap creating the slot accepts; false when there is none. */
static bool describe_gap(const obx_config_t *conf, const identity_t *id,
			 bool slot_exists)
{
	const obx_state_record_t *r = id->state.found	      ? &id->state.mine
				      : id->state.other_found ? &id->state.other
							      : NULL;
	if (!r || (id->state.found && slot_exists))
		return false;
	if (id->state.found)
		printf("this connector streamed from slot \"%s\" up to "
		       "LSN " OBX_LSN_FMT " (state topic \"%s\": %s); the "
		       "slot is gone, so events committed after that and "
		       "before the new slot exists will never be published\n",
		       conf->slot_name, OBX_LSN_ARGS(r->lsn), conf->state_topic,
		       obx_slot_event_name(r->event));
	else
		printf("this connector streamed database \"%s\" through slot "
		       "\"%s\" from another PostgreSQL cluster (system "
		       "identifier %" PRIu64 ", up to LSN " OBX_LSN_FMT
		       "); this one is %" PRIu64 ": events that cluster had "
		       "not streamed will never be published from here\n",
		       r->database, r->slot, r->system_id, OBX_LSN_ARGS(r->lsn),
		       id->system.system_id);
	return true;
}

int obx_cmd_slot_create(const obx_config_t *conf,
			const obx_slot_options_t *opts)
{
	char err[1024];
	identity_t id;
	obx_slot_info_t s;
	obx_lsn_t at;

	if (!load_identity(conf, &id))
		return OBX_EXIT_RUNTIME;
	obx_admin_t *a = connect_or_report(conf);
	if (!a)
		return OBX_EXIT_RUNTIME;
	int rc = OBX_EXIT_RUNTIME;
	if (!load_slot(a, conf->slot_name, &s))
		goto out;
	/* a first start needs no --yes: nothing is skipped */
	if (describe_gap(conf, &id, s.exists) &&
	    !confirmed(opts, conf->slot_name)) {
		rc = OBX_EXIT_USAGE;
		goto out;
	}
	/* a pgoutput slot reads its publication as of each change: it must
	 * exist before the slot's first change */
	if (conf->plugin_name == OBX_PLUGIN_PGOUTPUT &&
	    obx_publication_ensure(a, conf, err, sizeof(err)) != OBX_OK) {
		fprintf(stderr, "outboxd: %s\n", err);
		goto out;
	}
	if (s.exists && !id.state.found && id.state.other_found) {
		/* the slot is there: accept it as this connector's start */
		at = s.confirmed_flush;
		printf("replication slot \"%s\" exists at " OBX_LSN_FMT
		       ": recorded as this connector's start\n",
		       conf->slot_name, OBX_LSN_ARGS(at));
	} else if (obx_admin_slot_create(a, conf->slot_name,
					 obx_config_plugin(conf), &at, err,
					 sizeof(err)) != OBX_OK) {
		fprintf(stderr, "outboxd: could not create slot \"%s\": %s\n",
			conf->slot_name, err);
		goto out;
	} else {
		printf("created replication slot \"%s\" (plugin %s) "
		       "at " OBX_LSN_FMT "\n",
		       conf->slot_name, obx_config_plugin(conf),
		       OBX_LSN_ARGS(at));
	}
	if (record_state(conf, &id, OBX_SLOT_CREATED, at))
		rc = OBX_EXIT_CLEAN;
out:
	obx_admin_destroy(a);
	return rc;
}

int obx_cmd_slot_drop(const obx_config_t *conf, const obx_slot_options_t *opts)
{
	obx_slot_info_t s;
	char err[1024], gap[32];
	identity_t id;
	if (!load_identity(conf, &id))
		return OBX_EXIT_RUNTIME;
	obx_admin_t *a = open_inactive_slot(conf, &s, "drop");
	int rc = OBX_EXIT_RUNTIME;

	if (!a)
		return OBX_EXIT_RUNTIME;
	human_bytes((long long)(s.current_wal - s.confirmed_flush), gap,
		    sizeof(gap));
	printf("will drop replication slot \"%s\" "
	       "(confirmed_flush_lsn " OBX_LSN_FMT
	       ", %s of WAL not yet confirmed): events written "
	       "until a new slot exists will never be published\n",
	       conf->slot_name, OBX_LSN_ARGS(s.confirmed_flush), gap);
	if (!confirmed(opts, conf->slot_name)) {
		rc = OBX_EXIT_USAGE;
		goto out;
	}
	/* recorded first: a run after a drop that the state does not know
	 * of would still refuse, but say less about why */
	obx_lsn_t dropped_at = s.confirmed_flush;
	/* a server restart sets the slot back to its lazily saved position;
	 * what this connector recorded is what Kafka acknowledged */
	if (id.state.found && id.state.mine.timeline == id.system.timeline &&
	    id.state.mine.lsn > dropped_at)
		dropped_at = id.state.mine.lsn;
	if (!record_state(conf, &id, OBX_SLOT_DROPPED, dropped_at))
		goto out;
	if (obx_admin_slot_drop(a, conf->slot_name, err, sizeof(err)) !=
	    OBX_OK) {
		fprintf(stderr, "outboxd: could not drop slot \"%s\": %s\n",
			conf->slot_name, err);
		goto out;
	}
	printf("dropped replication slot \"%s\"; `outboxd run` will not "
	       "create it again by itself (`outboxd slot create --yes` "
	       "does)\n",
	       conf->slot_name);
	rc = OBX_EXIT_CLEAN;
out:
	obx_admin_destroy(a);
	return rc;
}

int obx_cmd_slot_reset(const obx_config_t *conf, const obx_slot_options_t *opts)
{
	obx_slot_info_t s;
	char err[1024], gap[32];
	identity_t id;
	if (!load_identity(conf, &id))
		return OBX_EXIT_RUNTIME;
	obx_admin_t *a = open_inactive_slot(conf, &s, "reset");
	int rc = OBX_EXIT_RUNTIME;

	if (!a)
		return OBX_EXIT_RUNTIME;
	bool lost = strcmp(s.wal_status, "lost") == 0;
	obx_lsn_t target = opts->to_current ? s.current_wal : opts->to_lsn;
	if (target < s.confirmed_flush) {
		fprintf(stderr,
			"outboxd: cannot move slot \"%s\" back to " OBX_LSN_FMT
			": it is confirmed up to " OBX_LSN_FMT
			" and a logical slot never goes backwards (the WAL "
			"before it is not kept for decoding); re-insert the "
			"events to publish them again\n",
			conf->slot_name, OBX_LSN_ARGS(target),
			OBX_LSN_ARGS(s.confirmed_flush));
		rc = OBX_EXIT_USAGE;
		goto out;
	}
	if (target > s.current_wal) {
		fprintf(stderr,
			"outboxd: " OBX_LSN_FMT " is beyond the server's WAL "
			"end " OBX_LSN_FMT "\n",
			OBX_LSN_ARGS(target), OBX_LSN_ARGS(s.current_wal));
		rc = OBX_EXIT_USAGE;
		goto out;
	}
	if (lost && !opts->to_current) {
		fprintf(stderr,
			"outboxd: slot \"%s\" is lost (wal_status = lost): it "
			"can only be recreated at the current position "
			"(--to-current)\n",
			conf->slot_name);
		rc = OBX_EXIT_USAGE;
		goto out;
	}
	human_bytes((long long)(target - s.confirmed_flush), gap, sizeof(gap));
	if (lost)
		printf("slot \"%s\" is lost: will drop it and create it again "
		       "at the current WAL position " OBX_LSN_FMT "\n",
		       conf->slot_name, OBX_LSN_ARGS(target));
	else
		printf("will advance slot \"%s\" from " OBX_LSN_FMT
		       " to " OBX_LSN_FMT "\n",
		       conf->slot_name, OBX_LSN_ARGS(s.confirmed_flush),
		       OBX_LSN_ARGS(target));
	printf("events committed in those %lld bytes of WAL (%s) will never "
	       "be published\n",
	       (long long)(target - s.confirmed_flush), gap);
	if (!confirmed(opts, conf->slot_name)) {
		rc = OBX_EXIT_USAGE;
		goto out;
	}
	obx_lsn_t now_at;
	obx_err_t e;
	if (lost) {
		e = obx_admin_slot_drop(a, conf->slot_name, err, sizeof(err));
		if (e == OBX_OK)
			e = obx_admin_slot_create(a, conf->slot_name, s.plugin,
						  &now_at, err, sizeof(err));
	} else {
		e = obx_admin_slot_advance(a, conf->slot_name, target, &now_at,
					   err, sizeof(err));
	}
	if (e != OBX_OK) {
		fprintf(stderr, "outboxd: could not reset slot \"%s\": %s\n",
			conf->slot_name, err);
		goto out;
	}
	printf("slot \"%s\" now starts at " OBX_LSN_FMT "\n", conf->slot_name,
	       OBX_LSN_ARGS(now_at));
	if (record_state(conf, &id, OBX_SLOT_RESET, now_at))
		rc = OBX_EXIT_CLEAN;
out:
	obx_admin_destroy(a);
	return rc;
}

/* ------------------------------------------------------------- check */

typedef struct {
	int failed;
} check_t;

static void report(check_t *c, const char *verdict, const char *item,
		   const char *fmt, va_list ap)
{
	char text[1024];
	vsnprintf(text, sizeof(text), fmt, ap);
	/* one line per item: libpq's messages carry newlines and tabs */
	for (char *ch = text; *ch; ch++)
		if (*ch == '\n' || *ch == '\t')
			*ch = ' ';
	printf("%s %-20s %s\n", verdict, item, text);
	if (strcmp(verdict, "FAIL") == 0)
		c->failed++;
}

static void result(check_t *c, bool pass, const char *item, const char *fmt,
		   ...) __attribute__((format(printf, 4, 5)));

static void result(check_t *c, bool pass, const char *item, const char *fmt,
		   ...)
{
	va_list ap;
	va_start(ap, fmt);
	report(c, pass ? "PASS" : "FAIL", item, fmt, ap);
	va_end(ap);
}

/* Something to know that does not stop outboxd from working. */
static void warning(check_t *c, const char *item, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void warning(check_t *c, const char *item, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report(c, "WARN", item, fmt, ap);
	va_end(ap);
}

static void check_server(check_t *c, obx_admin_t *a, const obx_config_t *conf)
{
	char v[256], err[1024], sql[256];

	if (obx_admin_query_value(a, "SHOW wal_level", 0, NULL, v, sizeof(v),
				  err, sizeof(err)) == OBX_OK)
		result(c, strcmp(v, "logical") == 0, "wal_level",
		       strcmp(v, "logical") == 0
			   ? "logical"
			   : "is \"%s\": set wal_level = logical in "
			     "postgresql.conf and restart the server",
		       v);
	else
		result(c, false, "wal_level", "%s", err);

	if (obx_admin_query_value(
		a,
		"SELECT rolreplication OR rolsuper FROM pg_catalog.pg_roles "
		"WHERE rolname = current_user",
		0, NULL, v, sizeof(v), err, sizeof(err)) == OBX_OK)
		result(c, strcmp(v, "t") == 0, "replication role",
		       strcmp(v, "t") == 0
			   ? "the role may use replication"
			   : "the role lacks REPLICATION: ALTER ROLE ... "
			     "REPLICATION");
	else
		result(c, false, "replication role", "%s", err);

	/* free slots and senders, unless our slot exists already */
	obx_slot_info_t s;
	if (obx_admin_slot_info(a, conf->slot_name, &s, err, sizeof(err)) !=
	    OBX_OK) {
		result(c, false, "replication slot", "%s", err);
		return;
	}
	if (s.exists) {
		bool ok = strcmp(s.plugin, obx_config_plugin(conf)) == 0 &&
			  strcmp(s.wal_status, "lost") != 0;
		result(c, ok, "replication slot",
		       ok ? "\"%s\" exists (wal_status %s, %s)"
			  : "\"%s\" is unusable (wal_status %s, plugin %s): "
			    "see outboxd slot reset",
		       conf->slot_name, s.wal_status,
		       ok ? (s.active ? "active" : "inactive") : s.plugin);
	} else {
		snprintf(
		    sql, sizeof(sql),
		    "SELECT current_setting('max_replication_slots')::int "
		    "- (SELECT count(*) FROM pg_catalog.pg_replication_slots)");
		if (obx_admin_query_value(a, sql, 0, NULL, v, sizeof(v), err,
					  sizeof(err)) == OBX_OK)
			result(c, atoi(v) > 0, "replication slot",
			       atoi(v) > 0 ? "\"%s\" will be created (%s free "
					     "slots)"
					   : "\"%s\" does not exist and "
					     "max_replication_slots is used up "
					     "(%s free): raise it",
			       conf->slot_name, v);
		else
			result(c, false, "replication slot", "%s", err);
	}
	if (obx_admin_query_value(
		a,
		"SELECT current_setting('max_wal_senders')::int - "
		"(SELECT count(*) FROM pg_catalog.pg_stat_replication)",
		0, NULL, v, sizeof(v), err, sizeof(err)) == OBX_OK)
		result(c, atoi(v) > 0 || s.active, "wal senders",
		       atoi(v) > 0 || s.active
			   ? "%s free"
			   : "none free (%s): raise max_wal_senders",
		       v);
	else
		result(c, false, "wal senders", "%s", err);
}

static void check_tables(check_t *c, obx_admin_t *a, const obx_config_t *conf)
{
	char v[256], err[1024], name[300];

	for (size_t i = 0; i < conf->ntables; i++) {
		snprintf(name, sizeof(name), "%s.%s", conf->tables[i].schema,
			 conf->tables[i].table);
		const char *p1[] = { name };
		if (obx_admin_query_value(
			a,
			"SELECT CASE WHEN to_regclass(quote_ident(split_part("
			"$1, '.', 1)) || '.' || quote_ident(split_part($1, "
			"'.', 2))) IS NULL THEN 'missing' WHEN "
			"has_table_privilege(to_regclass(quote_ident("
			"split_part($1, '.', 1)) || '.' || quote_ident("
			"split_part($1, '.', 2))), 'SELECT') THEN 'ok' "
			"ELSE 'denied' END",
			1, p1, v, sizeof(v), err, sizeof(err)) != OBX_OK) {
			result(c, false, "outbox table", "%s: %s", name, err);
			continue;
		}
		if (strcmp(v, "ok") != 0) {
			result(c, false, "outbox table",
			       strcmp(v, "missing") == 0
				   ? "%s does not exist: create it or fix "
				     "table.include.list"
				   : "%s: no SELECT privilege: GRANT SELECT "
				     "ON %s TO <role>",
			       name, name);
			continue;
		}
		result(c, true, "outbox table", "%s readable", name);

		int missing = 0;
		size_t n = 0;
		for (size_t k = 0; k < conf->ncolumns; k++) {
			const obx_mapped_column_t *col = &conf->columns[k];
			if (!col->column)
				continue; /* not configured */
			n++;
			const char *p2[] = { conf->tables[i].schema,
					     conf->tables[i].table,
					     col->column };
			if (obx_admin_query_value(
				a,
				"SELECT count(*) FROM "
				"information_schema.columns WHERE "
				"table_schema = $1 AND table_name = $2 AND "
				"column_name = $3",
				3, p2, v, sizeof(v), err,
				sizeof(err)) != OBX_OK ||
			    atoi(v) == 0) {
				result(
				    c, false, "mapped column",
				    "%s has no column \"%s\" (%s): add it or "
				    "change the setting",
				    name, col->column, col->option);
				missing++;
			}
		}
		if (!missing)
			result(c, true, "mapped columns",
			       "%s has all %zu mapped columns", name, n);
	}
}

static void check_plugin(check_t *c, obx_admin_t *a, const obx_config_t *conf)
{
	char v[64], err[1024];
	const char *plugin = obx_config_plugin(conf);
	const char *params[] = { plugin };

	/* a temporary slot proves the server lets us load the plugin; the
	 * timeout guards against waiting behind a long transaction */
	if (obx_admin_exec(a, "SET statement_timeout = '10s'", 0, NULL, err,
			   sizeof(err)) != OBX_OK ||
	    obx_admin_query_value(
		a,
		"SELECT lsn FROM pg_catalog.pg_create_logical_replication_slot("
		"'outboxd_check_' || pg_backend_pid(), $1, true)",
		1, params, v, sizeof(v), err, sizeof(err)) != OBX_OK) {
		result(c, false, "output plugin",
		       "%s does not load: %s (%s; on 15.20+ add it to "
		       "output_plugin_libraries)",
		       plugin, err,
		       conf->plugin_name == OBX_PLUGIN_PGOUTPUT
			   ? "it is built in: check wal_level = logical"
			   : "install postgresql-15-wal2json");
		return;
	}
	obx_admin_exec(a,
		       "SELECT pg_catalog.pg_drop_replication_slot("
		       "'outboxd_check_' || pg_backend_pid())",
		       0, NULL, err, sizeof(err));
	result(c, true, "output plugin", "%s loads", plugin);
}

/* pgoutput: the publication covers every outbox table, or run can make it
 * so (publication.autocreate.mode=filtered and the privilege to). */
static void check_publication(check_t *c, obx_admin_t *a,
			      const obx_config_t *conf)
{
	obx_publication_info_t info;
	char err[1024], v[8], sql[8192], tables[4096] = "";
	const char *pub = conf->publication_name;
	bool autocreate =
	    conf->publication_autocreate_mode == OBX_PUBLICATION_FILTERED;

	if (obx_publication_inspect(a, conf, &info, err, sizeof(err)) !=
	    OBX_OK) {
		result(c, false, "publication", "%s", err);
		return;
	}
	if (info.exists && (!info.publishes_insert || *info.filtered)) {
		result(c, false, "publication",
		       "\"%s\" %s: outbox rows would be lost", pub,
		       !info.publishes_insert ? "does not publish INSERTs"
					      : "filters rows or columns of "
						"an outbox table");
		return;
	}
	if (info.exists && !*info.missing) {
		result(c, true, "publication",
		       "\"%s\" publishes every outbox table", pub);
		return;
	}
	if (!autocreate) {
		obx_publication_create_sql(conf, sql, sizeof(sql));
		result(c, false, "publication",
		       info.exists ? "\"%s\" does not publish %s "
				     "(publication.autocreate.mode=disabled)"
				   : "\"%s\" does not exist "
				     "(publication.autocreate.mode=disabled): "
				     "%s%s",
		       pub, info.exists ? info.missing : "",
		       info.exists ? "" : sql);
		return;
	}
	/* creating a publication takes CREATE on the database; adding a
	 * table, owning it (as creating one FOR TABLE does) */
	for (size_t i = 0, used = 0; i < conf->ntables; i++) {
		int n = snprintf(tables + used, sizeof(tables) - used,
				 "%s%s.%s", i ? "," : "",
				 conf->tables[i].schema, conf->tables[i].table);
		if (n > 0 && (size_t)n < sizeof(tables) - used)
			used += (size_t)n;
	}
	obx_err_t e = obx_admin_query_value(
	    a,
	    "SELECT pg_catalog.has_database_privilege("
	    "pg_catalog.current_database(), 'CREATE') AND "
	    "pg_catalog.bool_and(pg_catalog.pg_has_role(c.relowner, "
	    "'USAGE')) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace "
	    "n ON n.oid = c.relnamespace WHERE (n.nspname || '.' || "
	    "c.relname) = ANY (pg_catalog.string_to_array($1, ','))",
	    1, (const char *[]){ tables }, v, sizeof(v), err, sizeof(err));
	bool may = e == OBX_OK && strcmp(v, "t") == 0;
	result(c, may, "publication",
	       may ? "\"%s\" %s at start"
		   : "\"%s\" would be %s at start, but this user may not "
		     "(CREATE on the database and owning the outbox tables "
		     "are needed): create it as the tables' owner",
	       pub,
	       info.exists ? "gains the missing outbox tables" : "is created");
}

static void ignore_delivery(void *ctx, void *msg_opaque, const char *topic,
			    bool ok, const char *error, int64_t now_us)
{
	(void)ctx, (void)msg_opaque, (void)topic, (void)ok, (void)error,
	    (void)now_us;
}

/* The dead letter topic exists: may this principal write to it? */
static void check_topic_write(check_t *c, const obx_config_t *conf,
			      const char *item, const char *topic)
{
	char err[512];
	switch (
	    obx_producer_probe_write(conf, topic, 10000, err, sizeof(err))) {
	case OBX_OK:
		result(c, true, item,
		       "\"%s\" exists and this principal may "
		       "write to it",
		       topic);
		break;
	case OBX_BAD_DATA:
		result(c, false, item, "\"%s\": %s", topic, err);
		break;
	default:
		warning(c, item,
			"\"%s\" exists; could not verify that this principal "
			"may write to it: %s",
			topic, err);
	}
}

/*
 * A topic outboxd writes to (the dead letter topic): PASS when it exists and
 * may be written, or the brokers will create it on first use
 * (auto.create.topics.enable); FAIL when they say they will not, or refuse
 * this principal; WARN when they do not say.
 */
static void check_topic(check_t *c, obx_producer_t *p, const obx_config_t *conf,
			const char *item, const char *topic)
{
	char value[16] = "", broker[16], err[512];
	int32_t broker_id = -1;
	int exists = obx_producer_topic_exists(p, topic, 10000, &broker_id);

	if (exists < 0) {
		result(c, false, item, "could not list the topics: %s",
		       obx_producer_last_error(p));
		return;
	}
	if (!exists) {
		/* not listed: absent, or not visible to this principal */
		switch (obx_producer_validate_topic(p, topic, 10000, err,
						    sizeof(err))) {
		case OBX_TOPIC_EXISTS:
			exists = 1;
			break;
		case OBX_TOPIC_DENIED:
			result(c, false, item,
			       "\"%s\" is not visible to this principal and "
			       "it may not create it (%s): create it and grant "
			       "the Describe and Write ACLs on it",
			       topic, err);
			return;
		case OBX_TOPIC_REFUSED:
			result(c, false, item,
			       "the brokers refuse the topic \"%s\": %s", topic,
			       err);
			return;
		default:
			break;
		}
	}
	if (exists) {
		check_topic_write(c, conf, item, topic);
		return;
	}
	snprintf(broker, sizeof(broker), "%d", (int)broker_id);
	if (obx_producer_describe_config(
		p, true, broker, "auto.create.topics.enable", value,
		sizeof(value), 10000, err, sizeof(err)) != OBX_OK)
		warning(c, item,
			"\"%s\" does not exist and the brokers did not say "
			"whether they create it on first use (%s): create it",
			topic, err);
	else if (strcmp(value, "true") == 0)
		result(c, true, item,
		       "\"%s\" does not exist yet; the brokers create it on "
		       "first use (auto.create.topics.enable=true)",
		       topic);
	else
		result(c, false, item,
		       "\"%s\" does not exist and the brokers will not "
		       "create it (auto.create.topics.enable=%s): create it",
		       topic, value);
}

/* Kafka through the same producer `run` uses: its configuration, the
 * brokers' answer (TLS and SASL included) and the dead letter topic. */
static void check_kafka(check_t *c, const obx_config_t *conf)
{
	char err[512];
	if (obx_producer_check_durability(conf, err, sizeof(err)) != OBX_OK) {
		result(c, false, "kafka config", "%s", err);
		return;
	}
	obx_producer_t *p =
	    obx_producer_new(conf, ignore_delivery, NULL, err, sizeof(err));
	if (!p) {
		result(c, false, "kafka config", "%s", err);
		return;
	}
	if (!obx_producer_wait_reachable(p, 10000)) {
		result(c, false, "kafka",
		       "no broker answered (%s): check "
		       "kafka.bootstrap.servers, network and TLS/SASL settings",
		       obx_producer_last_error(p)[0]
			   ? obx_producer_last_error(p)
			   : "no error reported");
	} else {
		result(c, true, "kafka", "the brokers answer");
		if (conf->errors_bad_event == OBX_BAD_EVENT_DLQ)
			check_topic(c, p, conf, "dead letter topic",
				    conf->errors_dlq_topic);
	}
	obx_producer_destroy(p);
}

/* The schema registry of value.format=avro-registry. */
static void check_registry(check_t *c, const obx_config_t *conf)
{
	char err[1024], found[1024];
	obx_registry_t *r = obx_registry_new(conf, obx_envelope_schema_json(),
					     err, sizeof(err));
	if (!r) {
		result(c, false, "schema registry", "%s", err);
		return;
	}
	if (obx_registry_check(r, conf->route_topic_replacement, found,
			       sizeof(found), err, sizeof(err)) == OBX_OK)
		result(c, true, "schema registry", "%s", found);
	else
		result(c, false, "schema registry", "%s", err);
	obx_registry_destroy(r);
}

int obx_cmd_check(const obx_config_t *conf)
{
	check_t c = { 0 };
	char url[1024], err[1024];

	result(&c, true, "config", "valid");
	obx_pg_redact_conninfo(conf->database_url, url, sizeof(url));
	obx_admin_t *a =
	    obx_admin_connect(conf, "outboxd-check", err, sizeof(err));
	result(&c, a != NULL, "server",
	       a ? "reachable (%s)"
		 : "%s: check database.url, the network and pg_hba.conf",
	       a ? url : err);
	if (a) {
		check_server(&c, a, conf);
		check_tables(&c, a, conf);
		check_plugin(&c, a, conf);
		if (conf->plugin_name == OBX_PLUGIN_PGOUTPUT)
			check_publication(&c, a, conf);
		obx_admin_destroy(a);
	}
	check_kafka(&c, conf);
	if (conf->value_format == OBX_VALUE_AVRO_REGISTRY)
		check_registry(&c, conf);
	printf("%s: %d item(s) failed\n", c.failed ? "FAIL" : "PASS", c.failed);
	return c.failed ? OBX_EXIT_RUNTIME : OBX_EXIT_CLEAN;
}
