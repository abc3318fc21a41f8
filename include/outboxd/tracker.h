/*
 * tracker.h - which LSN may be confirmed to the server (SPEC section 1).
 *
 * A FIFO of transactions in commit order, each with the number of its events
 * Kafka has not acknowledged yet and the end of its commit record.  The
 * confirmed LSN only moves past the oldest transaction once it is closed and
 * every one of its events is acked, whatever order the acks come in.  A
 * failed delivery never confirms anything: the caller stops instead.
 *
 * Transactions are handed out as obx_txn_t pointers that stay valid until the
 * transaction is confirmed; they are the Kafka message opaque.
 * Single-threaded (delivery reports are served from the pipeline's thread).
 */
#ifndef OUTBOXD_TRACKER_H
#define OUTBOXD_TRACKER_H

#include <stdbool.h>

#include "outboxd/common.h"

typedef struct obx_tracker obx_tracker_t;
typedef struct obx_txn obx_txn_t;

/* `confirmed`: the position already confirmed (the slot's). */
obx_tracker_t *obx_tracker_new(obx_lsn_t confirmed);
void obx_tracker_destroy(obx_tracker_t *tracker);

/* A transaction begins; at most one is open at a time.  commit_time_us is
 * its commit time and received_us when its BEGIN arrived (both wall clock,
 * for latency metrics), kept with it. */
obx_txn_t *obx_tracker_begin(obx_tracker_t *tracker, int64_t commit_time_us,
			     int64_t received_us);

/* The receive time given to obx_tracker_begin(). */
int64_t obx_txn_received_time(const obx_txn_t *txn);

/* The commit time given to obx_tracker_begin(). */
int64_t obx_txn_commit_time(const obx_txn_t *txn);

/* One more event of `txn` is on its way to Kafka. */
void obx_tracker_add_event(obx_tracker_t *tracker, obx_txn_t *txn);

/* The open transaction ended; `commit_lsn` is the end of its commit record. */
void obx_tracker_commit(obx_tracker_t *tracker, obx_txn_t *txn,
			obx_lsn_t commit_lsn);

/* Kafka acknowledged one event of `txn`. */
void obx_tracker_ack(obx_tracker_t *tracker, obx_txn_t *txn);

/*
 * The stream broke inside the open transaction: it will be sent again from
 * the slot, so this copy must never confirm anything.  Its in-flight events
 * are still counted until their delivery reports arrive.
 */
void obx_tracker_abandon_open(obx_tracker_t *tracker);

/*
 * Everything known so far refers to another server's WAL (a failover to a
 * new timeline): the confirmed LSN goes back to `confirmed` (the new
 * server's slot position) and no transaction in the FIFO confirms anything
 * any more; their in-flight events are still counted until their delivery
 * reports arrive.
 */
void obx_tracker_forget(obx_tracker_t *tracker, obx_lsn_t confirmed);

/*
 * The server reported its WAL end in a keepalive.  When nothing is open or in
 * flight, everything up to it may be confirmed, so a quiet outbox does not
 * pin WAL.
 */
void obx_tracker_idle_position(obx_tracker_t *tracker, obx_lsn_t wal_end);

/* The highest LSN that may be confirmed now. */
obx_lsn_t obx_tracker_confirmed(const obx_tracker_t *tracker);

/*
 * Every transaction that committed before this LSN was handed to Kafka
 * whole: acknowledged, or in flight and still tracked (a failed delivery
 * stops the connector, so it is never confirmed).  A reconnect to the same
 * server and timeline may resume here instead of at the confirmed LSN.
 */
obx_lsn_t obx_tracker_produced(const obx_tracker_t *tracker);

/* Events handed to Kafka and not yet acknowledged. */
size_t obx_tracker_inflight(const obx_tracker_t *tracker);

/* Transactions waiting in the FIFO (including the open one). */
size_t obx_tracker_pending_txns(const obx_tracker_t *tracker);

#endif
