/*
 * heartbeat.h - runs heartbeat.action.query every heartbeat.interval.ms on
 * a normal connection, on its own thread, so that a slot on a database
 * without traffic still sees WAL (when other databases of the cluster write)
 * and can confirm past it.  Failures are logged and retried next interval;
 * they never stop the connector.
 */
#ifndef OUTBOXD_HEARTBEAT_H
#define OUTBOXD_HEARTBEAT_H

#include "outboxd/config.h"

typedef struct obx_heartbeat obx_heartbeat_t;

/* NULL when the heartbeat is off (no query or interval 0). `conf` is
 * borrowed and must outlive the heartbeat. */
obx_heartbeat_t *obx_heartbeat_start(const obx_config_t *conf);
void obx_heartbeat_stop(obx_heartbeat_t *hb);

#endif
