/*
 * commands.h - the operator subcommands (SPEC section 7) other than `run`.
 * Each prints to stdout/stderr and returns the process exit code; main.c
 * only parses argv and dispatches.
 */
#ifndef OUTBOXD_COMMANDS_H
#define OUTBOXD_COMMANDS_H

#include <stdbool.h>

#include "outboxd/common.h"
#include "outboxd/config.h"

typedef struct {
	bool yes;	 /* --yes: really change the slot */
	bool to_current; /* reset --to-current */
	bool have_lsn;	 /* reset --to-lsn */
	obx_lsn_t to_lsn;
	bool interactive; /* stdin is a terminal: may ask to confirm */
} obx_slot_options_t;

int obx_cmd_slot_status(const obx_config_t *conf);
/* Creates the slot; when the state topic says that skips events (the slot
 * was lost, or this is another server), only with --yes (opts->yes). */
int obx_cmd_slot_create(const obx_config_t *conf,
			const obx_slot_options_t *opts);
int obx_cmd_slot_drop(const obx_config_t *conf, const obx_slot_options_t *opts);
int obx_cmd_slot_reset(const obx_config_t *conf,
		       const obx_slot_options_t *opts);

/* Preflight: one PASS/FAIL line per item; 0 only when all pass. */
int obx_cmd_check(const obx_config_t *conf);

#endif
