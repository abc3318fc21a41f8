/* startpoint.c - where a connection may start streaming (see the header). */
#include "outboxd/startpoint.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* "2026-11-30T22:01:02Z", or "an unknown time" */
static void format_time(int64_t us, char *out, size_t size)
{
	time_t secs = (time_t)(us / 1000000);
	struct tm tm;
	if (us <= 0 || !gmtime_r(&secs, &tm) ||
	    !strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, size, "an unknown time");
}

static void refuse_other_server(const obx_config_t *conf,
				const obx_start_facts_t *f,
				obx_start_plan_t *plan)
{
	const obx_state_record_t *other = &f->state->other;
	char when[40];
	format_time(other->written_us, when, sizeof(when));
	plan->action = OBX_START_REFUSE;
	obx_errf(plan->why, sizeof(plan->why),
		 "the state topic \"%s\" says this connector streamed database "
		 "\"%s\" through slot \"%s\" from another PostgreSQL cluster "
		 "(system identifier %" PRIu64 ", up to LSN " OBX_LSN_FMT
		 " at %s), but database.url now reaches system identifier "
		 "%" PRIu64 ": its slot holds none of the events the other "
		 "one had not streamed yet.  If this server is meant (a "
		 "restore, a new cluster), accept the gap with `outboxd slot "
		 "create --yes` and reconcile the outbox with Kafka; if "
		 "another connector uses the same database and slot names, "
		 "give this one its own state.topic",
		 conf->state_topic, other->database, other->slot,
		 other->system_id, OBX_LSN_ARGS(other->lsn), when,
		 f->system_id);
}

static void refuse_lost_slot(const obx_config_t *conf,
			     const obx_start_facts_t *f, obx_lsn_t known_lsn,
			     obx_start_plan_t *plan)
{
	char how[256] = "";
	if (!f->connected_before) {
		const obx_state_record_t *mine = &f->state->mine;
		char when[40];
		format_time(mine->written_us, when, sizeof(when));
		snprintf(
		    how, sizeof(how), " (state topic \"%s\": %s at %s%s)",
		    conf->state_topic, obx_slot_event_name(mine->event), when,
		    mine->event == OBX_SLOT_DROPPED ? " by `outboxd slot drop`"
						    : "");
	}
	plan->action = OBX_START_REFUSE;
	obx_errf(plan->why, sizeof(plan->why),
		 "replication slot \"%s\" does not exist, but this connector "
		 "streamed from it up to LSN " OBX_LSN_FMT
		 "%s: the events written since it disappeared were never "
		 "captured and are not in Kafka.  It is not created again by "
		 "itself: accept the gap with `outboxd slot create --yes` "
		 "(it creates the slot and records the new start), then "
		 "reconcile the outbox table with what reached Kafka",
		 conf->slot_name, OBX_LSN_ARGS(known_lsn), how);
}

int obx_timeline_end(const char *history, uint32_t timeline, obx_lsn_t *end)
{
	for (const char *line = history; line && *line;) {
		const char *eol = strchr(line, '\n');
		size_t len = eol ? (size_t)(eol - line) : strlen(line);
		const char *p = line, *stop = line + len;
		line = eol ? eol + 1 : NULL;
		while (p < stop && isspace((unsigned char)*p))
			p++;
		if (p == stop || *p == '#')
			continue; /* PostgreSQL skips these too */
		/* "<timeline>\t<switch point>\t<reason>" */
		uint32_t tli = 0;
		const char *digits = p;
		while (p < stop && isdigit((unsigned char)*p) &&
		       tli <= (UINT32_MAX - 9) / 10)
			tli = tli * 10 + (uint32_t)(*p++ - '0');
		if (p == digits || p == stop || !isspace((unsigned char)*p))
			return -1;
		while (p < stop && isspace((unsigned char)*p))
			p++;
		const char *lsn = p;
		while (p < stop && !isspace((unsigned char)*p))
			p++;
		obx_lsn_t at;
		if (obx_lsn_parse(lsn, (size_t)(p - lsn), &at) != 0)
			return -1;
		if (tli == timeline) {
			*end = at;
			return 0;
		}
	}
	return -1;
}

/*
 * A failover: the server's history says where the timeline this connector
 * streamed on ended (`fork`); the WAL before it is the same on both.  What
 * Kafka acknowledged up to there is skipped, the rest streams from this
 * server, and nothing after the fork is confirmed until it streams it.
 */
static void plan_after_fork(const obx_config_t *conf,
			    const obx_start_facts_t *f, uint32_t known_timeline,
			    obx_lsn_t fork, obx_start_plan_t *plan)
{
	obx_lsn_t acked =
	    f->connected_before ? f->confirmed_before : f->state->mine.lsn;
	obx_lsn_t shared = acked < fork ? acked : fork;
	plan->forget_confirmed = true;
	plan->record = true;
	if (shared > f->slot_confirmed) {
		plan->resume_at = shared;
		obx_errf(plan->why, sizeof(plan->why),
			 "the server is on timeline %u, this connector "
			 "streamed on timeline %u, which ended at " OBX_LSN_FMT
			 " in its history (a failover): slot \"%s\" is "
			 "at " OBX_LSN_FMT
			 ", and Kafka has every event up to " OBX_LSN_FMT
			 ", which both timelines share; the "
			 "server skips the %" PRIu64
			 " bytes of WAL in between, "
			 "and what this connector streamed after " OBX_LSN_FMT
			 " on timeline %u is not confirmed here",
			 f->timeline, known_timeline, OBX_LSN_ARGS(fork),
			 conf->slot_name, OBX_LSN_ARGS(f->slot_confirmed),
			 OBX_LSN_ARGS(shared),
			 (uint64_t)(shared - f->slot_confirmed),
			 OBX_LSN_ARGS(shared), known_timeline);
	} else {
		obx_errf(plan->why, sizeof(plan->why),
			 "the server is on timeline %u, this connector "
			 "streamed on timeline %u, which ended at " OBX_LSN_FMT
			 " in its history (a failover): streaming from slot "
			 "\"%s\" at " OBX_LSN_FMT
			 ", and confirming only what this server streams",
			 f->timeline, known_timeline, OBX_LSN_ARGS(fork),
			 conf->slot_name, OBX_LSN_ARGS(f->slot_confirmed));
	}
}

/* The timeline this connector last streamed on: this process's own memory
 * is newer than the state topic's; 0 when neither knows one. */
static uint32_t streamed_timeline(const obx_start_facts_t *f)
{
	if (f->connected_before)
		return f->last_timeline;
	return f->state->found ? f->state->mine.timeline : 0;
}

bool obx_start_needs_history(const obx_start_facts_t *f)
{
	uint32_t streamed = streamed_timeline(f);
	return streamed && streamed != f->timeline;
}

void obx_start_plan(const obx_config_t *conf, const obx_start_facts_t *f,
		    obx_start_plan_t *plan)
{
	memset(plan, 0, sizeof(*plan));
	plan->action = OBX_START_STREAM;

	if (f->connected_before && f->last_system_id != f->system_id) {
		plan->action = OBX_START_REFUSE;
		obx_errf(plan->why, sizeof(plan->why),
			 "database.url now reaches another PostgreSQL cluster "
			 "(system identifier %" PRIu64 ", was %" PRIu64
			 "): its slot \"%s\" holds none of the events the "
			 "other one had not streamed yet.  If this server is "
			 "meant, accept the gap with `outboxd slot create "
			 "--yes` and restart",
			 f->system_id, f->last_system_id, conf->slot_name);
		return;
	}
	bool known = f->connected_before || f->state->found;
	if (!known && f->state->other_found) {
		refuse_other_server(conf, f, plan);
		return;
	}
	/* what was acknowledged, and on which timeline: this process's own
	 * memory is newer than the state topic's */
	obx_lsn_t known_lsn =
	    f->connected_before ? f->produced : f->state->mine.lsn;
	uint32_t known_timeline = streamed_timeline(f);

	if (!f->slot_exists) {
		if (known) {
			refuse_lost_slot(conf, f, known_lsn, plan);
		} else if (conf->slot_create) {
			plan->action = OBX_START_CREATE_SLOT;
			plan->record = true;
		} else {
			plan->action = OBX_START_REFUSE;
			obx_errf(plan->why, sizeof(plan->why),
				 "replication slot \"%s\" does not exist and "
				 "slot.create is false: create it with "
				 "`outboxd slot create`",
				 conf->slot_name);
		}
		return;
	}
	if (!known) {
		plan->record = true;
		return;
	}
	/* what this connector knows belongs to another history */
	char cause[256] = "";
	if (known_timeline != f->timeline) {
		obx_lsn_t fork;
		if (f->timeline_history &&
		    obx_timeline_end(f->timeline_history, known_timeline,
				     &fork) == 0) {
			plan_after_fork(conf, f, known_timeline, fork, plan);
			return;
		}
		snprintf(cause, sizeof(cause),
			 "the server is on timeline %u, this connector "
			 "streamed on timeline %u, which its history does not "
			 "name (a restore?)",
			 f->timeline, known_timeline);
	} else if (known_lsn > f->wal_end)
		snprintf(cause, sizeof(cause),
			 "this connector streamed up to " OBX_LSN_FMT
			 ", beyond the server's WAL end " OBX_LSN_FMT
			 " (a restore?)",
			 OBX_LSN_ARGS(known_lsn), OBX_LSN_ARGS(f->wal_end));
	if (*cause) {
		plan->forget_confirmed = true;
		plan->record = true;
		obx_errf(plan->why, sizeof(plan->why),
			 "%s: streaming from slot \"%s\" at " OBX_LSN_FMT
			 " without skipping anything, and confirming only "
			 "what this server streams; events after it may "
			 "come again",
			 cause, conf->slot_name,
			 OBX_LSN_ARGS(f->slot_confirmed));
	} else if (known_lsn > f->slot_confirmed) {
		plan->resume_at = known_lsn;
		obx_errf(
		    plan->why, sizeof(plan->why),
		    "slot \"%s\" is at " OBX_LSN_FMT
		    ", behind what was already produced to Kafka (" OBX_LSN_FMT
		    "): the server skips the %" PRIu64
		    " bytes of WAL in between instead of sending those "
		    "events again",
		    conf->slot_name, OBX_LSN_ARGS(f->slot_confirmed),
		    OBX_LSN_ARGS(known_lsn),
		    (uint64_t)(known_lsn - f->slot_confirmed));
	}
}
