/*
 * startpoint.h - where a replication connection starts, or why it must not
 * start at all (SPEC section 7): a pure function of what the server says
 * (IDENTIFY_SYSTEM, the slot), what the state topic holds and what this
 * process streamed before.  No I/O, no globals: unit-tested with every
 * combination.
 *
 * The rules, in order:
 *   - another server (system identifier) than the one this connector
 *     streamed from: refuse, the operator decides (`slot create --yes`);
 *   - a missing slot that this connector had streamed from (per the state
 *     topic or this process): refuse, never recreate it silently; a missing
 *     slot on a true first start is created when slot.create is set;
 *   - a timeline change (failover): the WAL up to where the server's
 *     history left the timeline this connector streamed on is the same on
 *     both; stream from what Kafka acknowledged, but never past that fork
 *     (nor behind the slot), and forget every confirmation above it.  A
 *     fork that cannot be known (the timeline is not in the history) or a
 *     confirmed position ahead of the server's WAL end on the same
 *     timeline (a restore): stream from the slot's own position;
 *   - otherwise resume after what was already produced (the state topic's
 *     acknowledged LSN at process start; within a process, also what is
 *     still in flight), when that is ahead of the slot: the server persists
 *     a slot's position lazily, so after its restart it would resend
 *     transactions Kafka already has.
 */
#ifndef OUTBOXD_STARTPOINT_H
#define OUTBOXD_STARTPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include "outboxd/common.h"
#include "outboxd/config.h"
#include "outboxd/state.h"

typedef struct {
	/* the server, from IDENTIFY_SYSTEM */
	uint64_t system_id;
	uint32_t timeline;
	obx_lsn_t wal_end;
	/* the slot */
	bool slot_exists;
	obx_lsn_t slot_confirmed;
	/* the state topic as read at process start */
	const obx_state_view_t *state;
	/* the server's current timeline's history file (TIMELINE_HISTORY)
	 * when obx_start_needs_history(); NULL on timeline 1, or when it
	 * could not be read */
	const char *timeline_history;
	/* this process's previous connection, if any */
	bool connected_before;
	uint64_t last_system_id;
	uint32_t last_timeline;
	/* what that connection could confirm: Kafka acknowledged every event
	 * committed up to it (obx_tracker_confirmed) */
	obx_lsn_t confirmed_before;
	/* every transaction committed before it was handed to Kafka by this
	 * process (obx_tracker_produced) */
	obx_lsn_t produced;
} obx_start_facts_t;

typedef enum {
	OBX_START_STREAM,      /* stream, from resume_at when set */
	OBX_START_CREATE_SLOT, /* a first start: create the slot, stream */
	OBX_START_REFUSE,      /* stop with exit code 3; `why` says why */
} obx_start_action_t;

typedef struct {
	obx_start_action_t action;
	/* OBX_LSN_INVALID: the slot's confirmed position; else later than
	 * it, and the server skips every transaction committed before */
	obx_lsn_t resume_at;
	/* drop local confirmations above the start (resume_at, else the
	 * slot's position): they belong to another timeline */
	bool forget_confirmed;
	/* write a state record before streaming (none yet, or a new
	 * timeline) */
	bool record;
	char why[1024]; /* the error, or a line to log (may be empty) */
} obx_start_plan_t;

void obx_start_plan(const obx_config_t *conf, const obx_start_facts_t *facts,
		    obx_start_plan_t *plan);

/* Whether the plan needs facts->timeline_history: the server is on another
 * timeline than the one this connector streamed on. */
bool obx_start_needs_history(const obx_start_facts_t *facts);

/*
 * Where `timeline` ended in a timeline history file's text (its lines are
 * "<timeline>\t<switch point>\t<reason>"): 0 and *end, or -1 when the
 * history does not name it (or a line is malformed).
 */
int obx_timeline_end(const char *history, uint32_t timeline, obx_lsn_t *end);

#endif
