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
 *   - a timeline change (failover) or a confirmed position ahead of the
 *     server's WAL end: stream from the slot's own position and forget
 *     every confirmation above it;
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
	/* this process's previous connection, if any */
	bool connected_before;
	uint64_t last_system_id;
	uint32_t last_timeline;
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
	/* drop local confirmations above the slot's position */
	bool forget_confirmed;
	/* write a state record before streaming (none yet, or a new
	 * timeline) */
	bool record;
	char why[1024]; /* the error, or a line to log (may be empty) */
} obx_start_plan_t;

void obx_start_plan(const obx_config_t *conf, const obx_start_facts_t *facts,
		    obx_start_plan_t *plan);

#endif
