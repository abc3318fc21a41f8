/* pipeline.c - one loop from the replication stream to Kafka and back. */
#include "outboxd/pipeline.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outboxd/admin.h"
#include "outboxd/deadletter.h"
#include "outboxd/decoder.h"
#include "outboxd/envelope.h"
#include "outboxd/log.h"
#include "outboxd/partitions.h"
#include "outboxd/publication.h"
#include "outboxd/producer.h"
#include "outboxd/registry.h"
#include "outboxd/replication.h"
#include "outboxd/router.h"
#include "outboxd/startpoint.h"
#include "outboxd/state.h"
#include "outboxd/tracker.h"

/* How many stream messages to handle before serving Kafka again. */
#define READ_BATCH 512
/* A moved flush LSN is reported this soon, not only every interval. */
#define STATUS_MIN_GAP_US 50000
/* Longest sleep in poll(): bounds how late a stop request or a missed
 * wake-up from librdkafka is noticed. */
#define MAX_WAIT_MS 20
/*
 * Caught up: the newest transaction committed less than this long ago and
 * nothing more waits on the socket.  Then events are sent at once instead of
 * lingering for kafka.linger.ms (which batches a backlog cheaply).  A clock
 * skew between the hosts only moves events from one mode to the other.
 */
#define CAUGHT_UP_AGE_US 1000000
/* How long sending at once may wait for the acknowledgements. */
#define SEND_NOW_WAIT_MS 1
/*
 * Kafka acknowledged nothing for this long while events were in flight: ask
 * the brokers for the topics' metadata again, and then at most every
 * ACK_STALL_REPEAT_US while it lasts.  Cheap insurance against librdkafka
 * holding a partition with a stale or missing leader until its 5-minute
 * refresh; an outage is handled (and logged) elsewhere.
 */
#define ACK_STALL_US		   5000000
#define ACK_STALL_REPEAT_US	   30000000
#define ACK_STALL_METADATA_WAIT_MS 500
/* exactly-once: how long one Kafka transaction call may block. */
#define TXN_TIMEOUT_MS 60000
/* librdkafka's transaction.timeout.ms unless kafka.transaction.timeout.ms
 * sets it */
#define DEFAULT_KAFKA_TXN_TIMEOUT_MS 60000

struct obx_pipeline {
	const obx_config_t *conf;
	obx_metrics_t *metrics;
	obx_metrics_batch_t *batch; /* this thread's counts between merges */
	obx_decoder_t *decoder;
	obx_envelope_t *envelope;
	obx_registry_t *registry; /* value.format=avro-registry, else NULL */
	obx_producer_t *producer;
	/* held by the HTTP thread while it probes the producer, and by the
	 * pipeline while it replaces it */
	pthread_mutex_t producer_lock;
	obx_tracker_t *tracker;
	obx_router_t *router;
	char *router_db;

	/* per connection */
	obx_repl_t *repl;
	obx_txn_t *txn; /* the open transaction */
	int64_t commit_time_us;
	obx_lsn_t received;
	/* the WAL end of the last keepalive: every transaction committed
	 * before it was sent before it, so it becomes confirmable as soon as
	 * the tracker drains, without waiting for another keepalive */
	obx_lsn_t keepalive_wal_end;
	obx_lsn_t slot_floor; /* the slot's confirmed LSN at connect */
	obx_lsn_t sent_flush;
	int64_t last_status_us;

	volatile sig_atomic_t *stop; /* of the current run */
	/* what holds the current event, and everything after it,
	 * unconfirmed while it is tried again (hold_t); read by the HTTP
	 * thread (/readyz) */
	atomic_int held_by;
	int hold_backoff_ms;

	/* a delivery that finally failed: stop, never confirm past it */
	bool delivery_failed;
	char delivery_error[512];
	/* the producer hit a fatal error: the next run replaces it and the
	 * tracker, and the slot resends everything after the confirmed LSN */
	atomic_bool producer_failed; /* also read by the HTTP thread */
	bool discarding; /* the failed producer's reports are void */

	/* what this process streamed from (startpoint.h) */
	bool connected_before;
	uint64_t last_system_id;
	uint32_t last_timeline;
	bool server_prepared; /* tables verified, publication ready */
	bool *partitioned;    /* per conf->tables: a partitioned table */
	obx_partitions_t *partitions; /* when any is: partition -> table */

	/* the state topic (state.h): read once, then written as the
	 * confirmed LSN moves; state records are produced with a NULL
	 * opaque, events with their transaction */
	bool state_loaded;
	obx_state_view_t state;
	unsigned state_inflight;
	bool state_write_failed;
	obx_lsn_t state_sent_lsn;  /* the newest record handed to Kafka */
	obx_lsn_t state_acked_lsn; /* the newest one Kafka acknowledged
				    * (exactly-once: committed) */
	int64_t last_state_us;
	int64_t last_heard_us; /* the server's last message */

	/* delivery.guarantee=exactly-once: the events Kafka acknowledged in
	 * the open Kafka transaction count for the tracker only once it
	 * commits (deferred: one transaction pointer per event) */
	bool eos;
	obx_txn_t **deferred;
	size_t ndeferred, deferred_cap;
	size_t txn_events;	  /* produced in the open Kafka transaction */
	int64_t txn_started_us;	  /* when it began */
	int64_t txn_ended_us;	  /* when the last one ended (0: open, or
				   * none yet) */
	obx_lsn_t txn_checkpoint; /* the last PostgreSQL commit in it */

	/* for the progress line; everything else is in the metrics */
	uint64_t produced; /* events handed to Kafka (incl. dead letters) */
	uint64_t produced_at_send_now; /* produced when last sent at once */
	uint64_t acked;
	int64_t ack_wait_since_us;   /* when `acked` last moved, or nothing was
				      * in flight */
	uint64_t acked_at_probe;     /* `acked` then */
	int64_t next_stall_probe_us; /* 0: not stalled */
	obx_lsn_t server_wal_end;
	int64_t last_progress_us;
	uint64_t last_progress_acked;
};

/* commit -> ack and receive -> ack of an event of `txn`, acknowledged now */
static void observe_latency(obx_pipeline_t *p, obx_txn_t *txn, int64_t now)
{
	obx_metrics_batch_latency(
	    p->batch, (double)(now - obx_txn_commit_time(txn)) / 1e6,
	    (double)(now - obx_txn_received_time(txn)) / 1e6);
}

static void on_delivery(void *ctx, void *msg_opaque, const char *topic, bool ok,
			const char *error, int64_t now)
{
	obx_pipeline_t *p = ctx;

	if (!ok && msg_opaque) {
		/* the brokers refused the record itself (exactly-once: the
		 * failures of the transaction, not of its records, never come
		 * here), even in an aborted transaction: it would be refused
		 * again.  The txn keeps its pending count: nothing past it
		 * confirms */
		if (!p->delivery_failed)
			snprintf(p->delivery_error, sizeof(p->delivery_error),
				 "%s", error);
		p->delivery_failed = true;
		return;
	}
	if (p->discarding)
		return;
	if (!msg_opaque) { /* a state record */
		p->state_inflight--;
		/* exactly-once: a checkpoint counts once its transaction
		 * commits (commit_kafka_txn), never on its delivery alone */
		if (ok && !p->state_inflight && !p->eos)
			p->state_acked_lsn = p->state_sent_lsn;
		if (!ok) {
			p->state_write_failed = true;
			obx_warn("could not write to the state topic \"%s\": "
				 "%s (written again with the next confirmed "
				 "LSN)",
				 topic, error);
		}
		return;
	}
	p->acked++;
	obx_metrics_batch_topic(p->batch, topic, OBX_METRIC_ACKED);
	if (!p->eos) {
		observe_latency(p, msg_opaque, now);
		obx_tracker_ack(p->tracker, msg_opaque);
		return;
	}
	/* exactly-once: counts (and is timed) once its Kafka transaction
	 * commits */
	if (p->ndeferred == p->deferred_cap) {
		p->deferred_cap = p->deferred_cap ? p->deferred_cap * 2 : 1024;
		p->deferred = obx_xrealloc(
		    p->deferred, p->deferred_cap * sizeof(*p->deferred));
	}
	p->deferred[p->ndeferred++] = msg_opaque;
}

obx_pipeline_t *obx_pipeline_new(const obx_config_t *conf,
				 obx_metrics_t *metrics, char *errstr,
				 size_t errstr_size)
{
	obx_pipeline_t *p = obx_xcalloc(1, sizeof(*p));
	p->conf = conf;
	p->metrics = metrics;
	pthread_mutex_init(&p->producer_lock, NULL);
	p->batch = obx_metrics_batch_new();
	p->tracker = obx_tracker_new(OBX_LSN_INVALID);
	p->ack_wait_since_us = obx_now_us();
	p->eos = conf->delivery_guarantee == OBX_EXACTLY_ONCE;
	p->partitioned = obx_xcalloc(conf->ntables + 1, sizeof(bool));
	if (!(p->decoder = obx_decoder_new(conf, errstr, errstr_size)) ||
	    !(p->envelope = obx_envelope_new(errstr, errstr_size)) ||
	    (conf->value_format == OBX_VALUE_AVRO_REGISTRY &&
	     !(p->registry = obx_registry_new(conf, obx_envelope_schema_json(),
					      errstr, errstr_size))) ||
	    !(p->producer = obx_producer_new(conf, on_delivery, p, errstr,
					     errstr_size))) {
		obx_pipeline_destroy(p);
		return NULL;
	}
	return p;
}

void obx_pipeline_destroy(obx_pipeline_t *p)
{
	if (!p)
		return;
	obx_repl_destroy(p->repl);
	obx_producer_destroy(p->producer);
	obx_router_destroy(p->router);
	free(p->router_db);
	obx_envelope_destroy(p->envelope);
	obx_registry_destroy(p->registry);
	obx_decoder_destroy(p->decoder);
	obx_tracker_destroy(p->tracker);
	obx_metrics_batch_destroy(p->batch);
	obx_partitions_destroy(p->partitions);
	free(p->partitioned);
	free(p->deferred);
	pthread_mutex_destroy(&p->producer_lock);
	free(p);
}

static obx_err_t kafka_txn_failed(obx_pipeline_t *p, obx_err_t err,
				  char *errstr, size_t errstr_size);

/*
 * A fatal producer error (librdkafka's idempotent producer losing track of
 * its sequence numbers, e.g. in a leader failover) ends that producer, not
 * the connector: nothing it did not acknowledge was confirmed, so a new
 * producer that starts again from the slot's confirmed LSN loses nothing
 * and keeps each key's first deliveries in order (the old producer wrote
 * no gaps); what it had written unacknowledged comes again as duplicates.
 */
static obx_err_t check_kafka(obx_pipeline_t *p, char *errstr,
			     size_t errstr_size)
{
	if (p->producer_failed ||
	    obx_producer_status(p->producer, errstr, errstr_size) != OBX_OK) {
		/* replacing it would fence the instance that took over:
		 * this one stops, confirming nothing more (the caller of
		 * obx_pipeline_run() hears why) */
		if (obx_producer_fenced(p->producer))
			return OBX_FATAL;
		if (!p->producer_failed)
			obx_error(
			    "%s; starting a new Kafka producer that resends "
			    "everything after the confirmed LSN " OBX_LSN_FMT,
			    errstr, OBX_LSN_ARGS(p->sent_flush));
		p->producer_failed = true;
		obx_errf(errstr, errstr_size,
			 "the Kafka producer failed and is being replaced");
		return OBX_RETRY;
	}
	if (p->delivery_failed) {
		obx_errf(errstr, errstr_size,
			 "a Kafka delivery failed: %s; stopping without "
			 "confirming it (confirmed LSN stays " OBX_LSN_FMT ")",
			 p->delivery_error, OBX_LSN_ARGS(p->sent_flush));
		return OBX_FATAL;
	}
	if (p->eos && obx_producer_txn_failed(p->producer, errstr, errstr_size))
		return kafka_txn_failed(p, OBX_RETRY, errstr, errstr_size);
	return OBX_OK;
}

/* The open Kafka transaction (exactly-once) ended, committed or not, or
 * its producer is gone; also the state records in flight. */
static void forget_kafka_txn(obx_pipeline_t *p)
{
	if (!p->txn_ended_us)
		p->txn_ended_us = obx_now_us();
	p->ndeferred = 0;
	p->txn_events = 0;
	p->state_inflight = 0;
}

/* See check_kafka(): called between connections, never with one open. */
static obx_err_t replace_failed_producer(obx_pipeline_t *p, char *errstr,
					 size_t errstr_size)
{
	obx_producer_t *fresh =
	    obx_producer_new(p->conf, on_delivery, p, errstr, errstr_size);
	if (!fresh)
		return OBX_FATAL;
	pthread_mutex_lock(&p->producer_lock);
	obx_producer_t *failed = p->producer;
	p->producer = fresh;
	pthread_mutex_unlock(&p->producer_lock);
	/* its queued messages are dropped, their reports not given */
	obx_producer_destroy(failed);
	obx_tracker_destroy(p->tracker);
	/* exactly-once: everything up to the last commit is in Kafka */
	p->tracker =
	    obx_tracker_new(p->eos ? p->state_acked_lsn : OBX_LSN_INVALID);
	forget_kafka_txn(p);
	p->txn = NULL;
	p->delivery_failed = false;
	p->producer_failed = false;
	obx_info("a new Kafka producer is ready");
	return OBX_OK;
}

static void log_progress(obx_pipeline_t *p, int64_t now)
{
	if (p->conf->stats_interval_ms <= 0 ||
	    now - p->last_progress_us <
		OBX_MS_TO_US(p->conf->stats_interval_ms))
		return;
	double secs = (double)(now - p->last_progress_us) / 1e6;
	double rate = p->last_progress_us
			  ? (double)(p->acked - p->last_progress_acked) / secs
			  : 0;
	obx_info("progress: %llu events produced, %llu acked (%.0f/s), %zu in "
		 "flight, confirmed " OBX_LSN_FMT ", server at " OBX_LSN_FMT,
		 (unsigned long long)p->produced, (unsigned long long)p->acked,
		 rate, obx_tracker_inflight(p->tracker),
		 OBX_LSN_ARGS(p->sent_flush), OBX_LSN_ARGS(p->server_wal_end));
	p->last_progress_us = now;
	p->last_progress_acked = p->acked;
}

static obx_err_t commit_kafka_txn(obx_pipeline_t *p, obx_lsn_t checkpoint,
				  char *errstr, size_t errstr_size);
static void abort_kafka_txn(obx_pipeline_t *p);

/* How write_state() waits for the acknowledgement. */
typedef enum {
	STATE_NO_WAIT,
	STATE_WAIT_UNLESS_STOPPED, /* a stop request ends the wait */
	STATE_WAIT,		   /* the final record of a stop */
} state_wait_t;

/* exactly-once: opens a Kafka transaction unless one is open (every record
 * goes into one); at-least-once: nothing. */
static obx_err_t begin_kafka_txn(obx_pipeline_t *p, char *errstr,
				 size_t errstr_size)
{
	if (!p->eos || obx_producer_txn_open(p->producer))
		return OBX_OK;
	obx_err_t err = obx_producer_txn_begin(p->producer, TXN_TIMEOUT_MS,
					       errstr, errstr_size);
	if (err == OBX_OK) {
		p->txn_started_us = obx_now_us();
		p->txn_ended_us = 0;
	}
	return err;
}

/*
 * exactly-once: whether the open (or the last) Kafka transaction lasted
 * nearly kafka.transaction.timeout.ms, after which the coordinator aborts
 * it.  At a PostgreSQL commit that is one PostgreSQL transaction too large
 * to produce in time, again at every retry: `why` says what to raise.
 */
static bool kafka_txn_timed_out(const obx_pipeline_t *p, char *why,
				size_t why_size)
{
	const char *set = obx_config_kafka(p->conf, "transaction.timeout.ms");
	long timeout_ms = set ? atol(set) : DEFAULT_KAFKA_TXN_TIMEOUT_MS;
	if (!p->txn_started_us)
		return false;
	int64_t end = p->txn_ended_us ? p->txn_ended_us : obx_now_us();
	long long open_ms = (end - p->txn_started_us) / 1000;
	if (open_ms < timeout_ms * 9 / 10)
		return false;
	obx_errf(why, why_size,
		 "the Kafka transaction was open %lld ms, near or past "
		 "kafka.transaction.timeout.ms=%ld, after which the "
		 "transaction coordinator aborts it (Kafka reports that as "
		 "fencing): a Kafka outage that long, or a PostgreSQL "
		 "transaction too large to produce in that time (it is never "
		 "split across Kafka transactions: raise "
		 "kafka.transaction.timeout.ms, up to the brokers' "
		 "transaction.max.timeout.ms)",
		 open_ms, timeout_ms);
	return true;
}

/*
 * Hands a state record for the current server to Kafka; when it waits, up
 * to wait_ms for its acknowledgement (OBX_RETRY without one).
 */
static obx_err_t write_state(obx_pipeline_t *p, obx_slot_event_t event,
			     obx_lsn_t lsn, state_wait_t how, int wait_ms,
			     char *errstr, size_t errstr_size)
{
	obx_state_record_t rec = { .system_id = p->last_system_id,
				   .timeline = p->last_timeline,
				   .lsn = lsn,
				   .event = event,
				   .written_us = obx_wallclock_us() };
	char key[256];
	snprintf(rec.database, sizeof(rec.database), "%s", p->router_db);
	snprintf(rec.slot, sizeof(rec.slot), "%s", p->conf->slot_name);
	obx_state_key(rec.system_id, rec.database, rec.slot, key, sizeof(key));
	obx_err_t err = begin_kafka_txn(p, errstr, errstr_size);
	if (err != OBX_OK)
		return err;
	char *value = obx_state_encode(&rec);
	err = obx_producer_send(p->producer, p->conf->state_topic, key,
				strlen(key), value, strlen(value), NULL, 0,
				NULL, errstr, errstr_size);
	free(value);
	if (err != OBX_OK)
		return err == OBX_BAD_DATA ? OBX_FATAL : OBX_RETRY;
	p->state_inflight++;
	p->state_sent_lsn = lsn;
	p->last_state_us = obx_now_us();
	p->state_write_failed = false;
	/* exactly-once: a record that is waited for is committed at once
	 * (never while a PostgreSQL transaction is half in Kafka) */
	if (p->eos && how != STATE_NO_WAIT && !p->txn &&
	    (err = commit_kafka_txn(p, lsn, errstr, errstr_size)) != OBX_OK)
		return err;
	if (how == STATE_NO_WAIT)
		return OBX_OK;
	int64_t deadline = obx_now_us() + OBX_MS_TO_US(wait_ms);
	while (p->state_inflight && obx_now_us() < deadline &&
	       !(how == STATE_WAIT_UNLESS_STOPPED && p->stop && *p->stop))
		obx_producer_poll(p->producer, 100);
	if (p->state_inflight || p->state_write_failed) {
		obx_errf(errstr, errstr_size,
			 "could not write to the state topic \"%s\" within %d "
			 "ms",
			 p->conf->state_topic, wait_ms);
		return OBX_RETRY;
	}
	return OBX_OK;
}

/*
 * exactly-once: the open Kafka transaction failed (its commit, or
 * librdkafka ended it: obx_producer_txn_failed()), errstr says how.  It is
 * aborted and the slot sends everything after the last commit again
 * (OBX_RETRY); a fenced producer stops (OBX_FATAL).
 */
static obx_err_t kafka_txn_failed(obx_pipeline_t *p, obx_err_t err,
				  char *errstr, size_t errstr_size)
{
	if (obx_producer_fenced(p->producer))
		return OBX_FATAL;
	char why[512], hint[520] = "";
	if (kafka_txn_timed_out(p, why, sizeof(why)))
		snprintf(hint, sizeof(hint), " (%s)", why);
	abort_kafka_txn(p);
	/* a record the brokers refused among its messages (the abort served
	 * their reports) stops the connector, as without transactions */
	if (p->delivery_failed) {
		obx_error("%s", errstr);
		return check_kafka(p, errstr, errstr_size);
	}
	obx_error("%s; the events after the last commit (" OBX_LSN_FMT
		  ") are sent again%s",
		  errstr, OBX_LSN_ARGS(p->state_acked_lsn), hint);
	/* a producer that failed for good, or whose abort failed (its
	 * commit may have gone through: its replacement reads the
	 * checkpoint again, settle_kafka_txns()), is replaced first */
	char failed[512];
	if (err == OBX_FATAL ||
	    obx_producer_status(p->producer, failed, sizeof(failed)) != OBX_OK)
		p->producer_failed = true;
	obx_errf(errstr, errstr_size, "the Kafka transaction was aborted");
	return OBX_RETRY;
}

/*
 * exactly-once: commits the open Kafka transaction, its checkpoint (a state
 * record saying every PostgreSQL transaction up to `checkpoint` is in
 * Kafka) with it, then counts its events for the tracker.  A failed commit
 * was aborted: the producer is replaced and the slot sends everything after
 * the last commit again (OBX_RETRY); a fenced producer stops (OBX_FATAL).
 */
static obx_err_t commit_kafka_txn(obx_pipeline_t *p, obx_lsn_t checkpoint,
				  char *errstr, size_t errstr_size)
{
	obx_err_t err = OBX_OK;
	if (checkpoint > p->state_sent_lsn)
		err = write_state(p, OBX_SLOT_STREAMED, checkpoint,
				  STATE_NO_WAIT, 0, errstr, errstr_size);
	if (err == OBX_OK)
		err = obx_producer_txn_commit(p->producer, TXN_TIMEOUT_MS,
					      errstr, errstr_size);
	if (err != OBX_OK)
		return kafka_txn_failed(p, err, errstr, errstr_size);
	int64_t now = obx_wallclock_us();
	obx_metrics_kafka_txn_committed(
	    p->metrics, (double)(obx_now_us() - p->txn_started_us) / 1e6,
	    p->txn_events);
	for (size_t i = 0; i < p->ndeferred; i++) {
		observe_latency(p, p->deferred[i], now);
		obx_tracker_ack(p->tracker, p->deferred[i]);
	}
	forget_kafka_txn(p);
	p->state_acked_lsn = p->state_sent_lsn;
	return OBX_OK;
}

/*
 * exactly-once: aborts the open Kafka transaction (the slot sends its events
 * again: a reconnect, or a stop halfway through a PostgreSQL transaction),
 * discards its delivery reports, and tracks from the last commit on.
 */
static void abort_kafka_txn(obx_pipeline_t *p)
{
	p->discarding = true; /* the purged messages' reports */
	if (obx_producer_txn_abort(p->producer, TXN_TIMEOUT_MS))
		obx_metrics_kafka_txn_aborted(p->metrics);
	p->discarding = false;
	forget_kafka_txn(p);
	p->state_sent_lsn = p->state_acked_lsn;
	obx_tracker_destroy(p->tracker);
	p->tracker = obx_tracker_new(p->state_acked_lsn);
	p->txn = NULL;
	char failed[512];
	if (obx_producer_status(p->producer, failed, sizeof(failed)) != OBX_OK)
		obx_info("gave up the open Kafka transaction (%s): the events "
			 "after the last commit seen (" OBX_LSN_FMT
			 ") come again unless a new producer finds it "
			 "committed",
			 failed, OBX_LSN_ARGS(p->state_acked_lsn));
	else
		obx_info("aborted the open Kafka transaction: the events after "
			 "the last commit (" OBX_LSN_FMT ") come again",
			 OBX_LSN_ARGS(p->state_acked_lsn));
}

/* exactly-once: commits at a PostgreSQL commit once the transaction is
 * due (transaction.interval.ms, transaction.max.events) or when forced. */
static obx_err_t maybe_commit_kafka_txn(obx_pipeline_t *p, bool force,
					char *errstr, size_t errstr_size)
{
	if (!p->eos || p->txn || !p->txn_events)
		return OBX_OK;
	if (!force && p->txn_events < (size_t)p->conf->transaction_max_events &&
	    obx_now_us() - p->txn_started_us <
		OBX_MS_TO_US(p->conf->transaction_interval_ms))
		return OBX_OK;
	return commit_kafka_txn(p, p->txn_checkpoint, errstr, errstr_size);
}

/* Records a moved confirmed LSN, at most once per status.interval.ms. */
static void maybe_write_state(obx_pipeline_t *p, int64_t now)
{
	char errstr[256];
	/* exactly-once: each Kafka transaction carries its checkpoint */
	if (p->eos)
		return;
	if (p->sent_flush <= p->state_sent_lsn && !p->state_write_failed)
		return;
	if (p->state_inflight ||
	    now - p->last_state_us < OBX_MS_TO_US(p->conf->status_interval_ms))
		return;
	if (write_state(p, OBX_SLOT_STREAMED, p->sent_flush, STATE_NO_WAIT, 0,
			errstr, sizeof(errstr)) != OBX_OK)
		obx_warn("%s", errstr);
}

/* Sends a status update when forced, due, or when the flush LSN moved. */
static obx_err_t maybe_send_status(obx_pipeline_t *p, bool force, char *errstr,
				   size_t errstr_size)
{
	int64_t now = obx_now_us();
	obx_lsn_t flush = obx_tracker_confirmed(p->tracker);
	int64_t since = now - p->last_status_us;

	/* in-flight events from before a reconnect may hold the tracker
	 * below the slot: never report less than the slot already has */
	if (flush < p->slot_floor)
		flush = p->slot_floor;
	log_progress(p, now);
	if (!p->repl)
		return OBX_OK; /* fed without a connection (tests) */
	if (!force && since < OBX_MS_TO_US(p->conf->status_interval_ms) &&
	    (flush == p->sent_flush || since < STATUS_MIN_GAP_US))
		return OBX_OK;
	obx_lsn_t received = p->received > flush ? p->received : flush;
	/* after a silent interval, ask for an answer: a live server sends a
	 * keepalive at once, a stalled connection stays silent */
	bool ask =
	    now - p->last_heard_us > OBX_MS_TO_US(p->conf->status_interval_ms);
	if (obx_repl_send_status(p->repl, received, flush, ask) != OBX_OK) {
		obx_errf(errstr, errstr_size, "%s", obx_repl_error(p->repl));
		return OBX_RETRY;
	}
	if (flush != p->sent_flush)
		obx_debug("confirmed " OBX_LSN_FMT, OBX_LSN_ARGS(flush));
	p->sent_flush = flush;
	p->last_status_us = now;
	maybe_write_state(p, now);
	return OBX_OK;
}

/* Adds the sleep that began at `start` (obx_now_us) to the wait metric. */
static void count_wait(obx_pipeline_t *p, obx_wait_reason_t why, int64_t start)
{
	obx_metrics_batch_wait(p->batch, why,
			       (double)(obx_now_us() - start) / 1e6);
}

/* Backoff while an event is held (hold_event). */
#define HOLD_BACKOFF_MAX_MS 5000

/* What holds an event back while it is tried again. */
typedef enum {
	HOLD_NONE = 0,
	HOLD_TOPIC_MISSING, /* its topic does not exist */
	HOLD_REGISTRY,	    /* the schema registry does not answer */
} hold_t;

/*
 * The event cannot go out yet for a reason outside it (errstr says which):
 * hold it, and everything after it, unconfirmed, and try again after a
 * backoff (*wait_ms) until `until`.  A stop request ends the wait with
 * OBX_RETRY: nothing was confirmed past it.
 */
static obx_err_t hold_event(obx_pipeline_t *p, hold_t why, const char *until,
			    char *errstr, size_t errstr_size, int *wait_ms)
{
	if (p->held_by != (int)why) {
		obx_warn("%s: holding its event and everything after it "
			 "unconfirmed (confirmed LSN stays " OBX_LSN_FMT
			 ") and retrying until %s",
			 errstr, OBX_LSN_ARGS(p->sent_flush), until);
		p->held_by = why;
		p->hold_backoff_ms = 100;
	}
	if (why == HOLD_TOPIC_MISSING)
		obx_metrics_topic_missing(p->metrics, true);
	if (*p->stop) {
		size_t n = strlen(errstr);
		obx_errf(errstr + n, errstr_size - n,
			 "; stopping with its event unconfirmed");
		return OBX_RETRY;
	}
	*wait_ms = p->hold_backoff_ms;
	p->hold_backoff_ms = p->hold_backoff_ms * 2 > HOLD_BACKOFF_MAX_MS
				 ? HOLD_BACKOFF_MAX_MS
				 : p->hold_backoff_ms * 2;
	return OBX_OK;
}

/* What held the event is gone: said once, with `what`. */
static void release_hold(obx_pipeline_t *p, hold_t why, const char *what)
{
	if (p->held_by != (int)why)
		return;
	obx_info("%s: producing again", what);
	p->held_by = HOLD_NONE;
	if (why == HOLD_TOPIC_MISSING)
		obx_metrics_topic_missing(p->metrics, false);
}

/* See ACK_STALL_US. */
static void probe_stalled_acks(obx_pipeline_t *p, int64_t now)
{
	size_t inflight = obx_tracker_inflight(p->tracker);
	/* from the ack count, not a clock read per acknowledgement */
	if (!inflight || p->acked != p->acked_at_probe) {
		p->ack_wait_since_us = now;
		p->acked_at_probe = p->acked;
	}
	if (now - p->ack_wait_since_us < ACK_STALL_US) {
		p->next_stall_probe_us = 0;
		return;
	}
	if (now < p->next_stall_probe_us)
		return;
	if (!p->next_stall_probe_us) {
		obx_metrics_ack_stall(p->metrics);
		obx_warn("Kafka acknowledged nothing for %.0f s with %zu "
			 "events in flight (nothing past them is confirmed); "
			 "asking the brokers for the topics' metadata again",
			 (double)(now - p->ack_wait_since_us) / 1e6, inflight);
		/* where librdkafka holds them: leaders, queues, in flight */
		if (p->conf->log_level == OBX_LOG_DEBUG)
			obx_producer_dump(p->producer, stderr);
	}
	if (!obx_producer_reachable(p->producer, ACK_STALL_METADATA_WAIT_MS))
		obx_debug("no broker answered the metadata request");
	p->next_stall_probe_us = obx_now_us() + ACK_STALL_REPEAT_US;
}

/* Serves Kafka and the server for wait_ms while an event is held. */
static obx_err_t serve_while_held(obx_pipeline_t *p, int wait_ms, char *errstr,
				  size_t errstr_size)
{
	int64_t start = obx_now_us();
	obx_producer_poll(p->producer, wait_ms);
	count_wait(p, OBX_WAIT_KAFKA, start);
	/* we are not reading: the silence is ours, not the server's */
	p->last_heard_us = obx_now_us();
	probe_stalled_acks(p, p->last_heard_us);
	obx_err_t err = check_kafka(p, errstr, errstr_size);
	if (err == OBX_OK)
		err = maybe_send_status(p, false, errstr, errstr_size);
	return err;
}

/*
 * Hands one message to Kafka, waiting while librdkafka's queue is full or
 * its topic is missing (serving delivery reports and keeping the server's
 * timeout at bay).
 */
static obx_err_t produce(obx_pipeline_t *p, const char *topic, const void *key,
			 size_t key_len, const void *value, size_t value_len,
			 const obx_kv_t *headers, size_t nheaders, char *errstr,
			 size_t errstr_size)
{
	for (;;) {
		obx_err_t err = begin_kafka_txn(p, errstr, errstr_size);
		if (err != OBX_OK)
			return err;
		err = obx_producer_send(p->producer, topic, key, key_len, value,
					value_len, headers, nheaders, p->txn,
					errstr, errstr_size);
		if (err == OBX_OK) {
			p->txn_events++;
			obx_tracker_add_event(p->tracker, p->txn);
			obx_metrics_batch_topic(p->batch, topic,
						OBX_METRIC_PRODUCED);
			p->produced++;
			if (p->held_by == HOLD_TOPIC_MISSING) {
				char what[320];
				obx_errf(what, sizeof(what),
					 "topic \"%s\" exists", topic);
				release_hold(p, HOLD_TOPIC_MISSING, what);
			}
			return OBX_OK;
		}
		if (err != OBX_RETRY)
			return err;
		if (p->eos &&
		    obx_producer_txn_failed(p->producer, errstr, errstr_size))
			return kafka_txn_failed(p, err, errstr, errstr_size);
		int wait_ms = 100;
		if (*errstr &&
		    (err = hold_event(p, HOLD_TOPIC_MISSING,
				      "it exists; create the topic", errstr,
				      errstr_size, &wait_ms)) != OBX_OK)
			return err;
		if ((err = serve_while_held(p, wait_ms, errstr, errstr_size)) !=
		    OBX_OK)
			return err;
	}
}

/*
 * The schema id of `topic`'s subject (value.format=avro-registry): cached
 * after the first answer; while the registry cannot be reached the event is
 * held like one of a missing topic.
 */
static obx_err_t registered_schema_id(obx_pipeline_t *p, const char *topic,
				      uint32_t *id, char *errstr,
				      size_t errstr_size)
{
	for (;;) {
		obx_err_t err = obx_registry_schema_id(p->registry, topic, id,
						       errstr, errstr_size);
		if (err == OBX_OK)
			release_hold(p, HOLD_REGISTRY,
				     "the schema registry answers");
		if (err != OBX_RETRY)
			return err;
		int wait_ms;
		if ((err = hold_event(p, HOLD_REGISTRY,
				      "the schema registry answers", errstr,
				      errstr_size, &wait_ms)) != OBX_OK ||
		    (err = serve_while_held(p, wait_ms, errstr, errstr_size)) !=
			OBX_OK)
			return err;
	}
}

static obx_err_t handle_bad_event(obx_pipeline_t *p, const obx_change_t *change,
				  const char *key, size_t key_len,
				  obx_bad_reason_t why, const char *reason,
				  char *errstr, size_t errstr_size)
{
	const obx_config_t *conf = p->conf;
	char where[128];

	obx_metrics_bad_event(p->metrics, why);

	if (change->kind == OBX_CHANGE_MESSAGE)
		snprintf(where, sizeof(where),
			 "message \"%s\" at " OBX_LSN_FMT " (xid %lld)",
			 change->table, OBX_LSN_ARGS(change->lsn),
			 (long long)change->xid);
	else
		snprintf(where, sizeof(where),
			 "%s.%s at " OBX_LSN_FMT " (xid %lld)", change->schema,
			 change->table, OBX_LSN_ARGS(change->lsn),
			 (long long)change->xid);
	switch (conf->errors_bad_event) {
	case OBX_BAD_EVENT_FAIL:
		obx_errf(errstr, errstr_size,
			 "bad outbox row in %s: %s (errors.bad.event=fail)",
			 where, reason);
		return OBX_BAD_DATA;
	case OBX_BAD_EVENT_SKIP:
		obx_error("skipping bad outbox row in %s: %s "
			  "(errors.bad.event=skip: this event is lost)",
			  where, reason);
		return OBX_OK;
	default:
		break;
	}
	obx_kv_t headers[] = { { "error", reason, strlen(reason) } };
	obx_warn("bad outbox row in %s: %s; sent to \"%s\"", where, reason,
		 conf->errors_dlq_topic);
	obx_err_t err = OBX_BAD_DATA;
	char cause[1024] = "";
	/* whole first; cut down if Kafka refuses that as too large too */
	const size_t limits[] = { SIZE_MAX, OBX_DEAD_LETTER_TRUNCATE };
	for (size_t i = 0; i < 2 && err == OBX_BAD_DATA; i++) {
		char *doc = obx_dead_letter_json(p->router_db, change, reason,
						 limits[i]);
		err = produce(p, conf->errors_dlq_topic, key, key_len, doc,
			      strlen(doc), headers, 1, cause, sizeof(cause));
		free(doc);
	}
	if (err != OBX_OK)
		obx_errf(errstr, errstr_size,
			 "could not send the bad row in %s to the dead letter "
			 "topic: %s",
			 where, cause);
	return err;
}

/*
 * A row of a table that is not an outbox table reaches us only when a
 * partitioned outbox table's whole schema is streamed: attributes it to its
 * outbox table when it is one of its partitions (*change then points to
 * `mapped`), or leaves it to be ignored.
 */
static obx_err_t map_partition(obx_pipeline_t *p, const obx_change_t **change,
			       obx_change_t *mapped, char *errstr,
			       size_t errstr_size)
{
	const obx_change_t *c = *change;
	obx_partition_kind_t kind;
	size_t index;
	if (!p->partitions || c->kind == OBX_CHANGE_MESSAGE ||
	    obx_router_is_outbox_table(p->router, c->schema, c->table))
		return OBX_OK;
	obx_err_t err =
	    obx_partitions_lookup(p->partitions, c->schema, c->table, &kind,
				  &index, errstr, errstr_size);
	if (err != OBX_OK)
		return err;
	if (kind == OBX_PARTITION_GONE)
		obx_error("a row of %s.%s at " OBX_LSN_FMT " (xid %lld): the "
			  "table no longer exists, so whether it was a "
			  "partition of an outbox table cannot be told; "
			  "skipped",
			  c->schema, c->table, OBX_LSN_ARGS(c->lsn),
			  (long long)c->xid);
	if (kind != OBX_PARTITION_OF)
		return OBX_OK;
	*mapped = *c;
	mapped->schema = p->conf->tables[index].schema;
	mapped->table = p->conf->tables[index].table;
	*change = mapped;
	return OBX_OK;
}

static obx_err_t handle_row(obx_pipeline_t *p, const obx_change_t *change,
			    char *errstr, size_t errstr_size)
{
	obx_event_t ev;
	char reason[512];
	const void *value;
	size_t value_len;
	obx_change_t mapped;

	obx_err_t mapped_err =
	    map_partition(p, &change, &mapped, errstr, errstr_size);
	if (mapped_err != OBX_OK)
		return mapped_err;

	obx_route_t route = obx_router_route(
	    p->router, change, p->commit_time_us, &ev, reason, sizeof(reason));
	if (route == OBX_ROUTE_EVENT || route == OBX_ROUTE_BAD_EVENT)
		obx_metrics_batch_received(p->batch);
	switch (route) {
	case OBX_ROUTE_IGNORE:
		return OBX_OK;
	case OBX_ROUTE_INVALID_OP:
		if (p->conf->op_invalid_behavior == OBX_INVALID_OP_FATAL) {
			obx_errf(errstr, errstr_size,
				 "%s at " OBX_LSN_FMT
				 " (table.op.invalid.behavior=fatal)",
				 reason, OBX_LSN_ARGS(change->lsn));
			return OBX_BAD_DATA;
		}
		obx_log(p->conf->op_invalid_behavior == OBX_INVALID_OP_ERROR
			    ? OBX_LOG_ERROR
			    : OBX_LOG_WARN,
			"%s at " OBX_LSN_FMT ": skipped", reason,
			OBX_LSN_ARGS(change->lsn));
		return OBX_OK;
	case OBX_ROUTE_BAD_EVENT: {
		const char *key = NULL;
		for (size_t i = 0; i < change->ncolumns; i++)
			if (strcmp(change->columns[i].name,
				   p->conf->field_event_key) == 0)
				key = change->columns[i].value;
		return handle_bad_event(p, change, key, key ? strlen(key) : 0,
					obx_router_bad_reason(p->router),
					reason, errstr, errstr_size);
	}
	case OBX_ROUTE_EVENT:
		break;
	}

	if (ev.tombstone) {
		value = NULL;
		value_len = 0;
	} else if (p->conf->value_format == OBX_VALUE_PAYLOAD) {
		/* the column's text as is; a NULL payload is a null value */
		value = ev.payload;
		value_len = ev.payload ? ev.payload_len : 0;
	} else if (p->registry) {
		uint32_t id;
		obx_err_t err =
		    registered_schema_id(p, ev.topic, &id, errstr, errstr_size);
		if (err != OBX_OK)
			return err;
		obx_envelope_encode_registered(p->envelope, &ev, id, &value,
					       &value_len);
	} else {
		obx_err_t err = obx_envelope_encode(
		    p->envelope, &ev, &value, &value_len, errstr, errstr_size);
		if (err != OBX_OK)
			return err;
	}
	obx_err_t err =
	    produce(p, ev.topic, ev.key, ev.key_len, value, value_len,
		    ev.headers, ev.nheaders, errstr, errstr_size);
	if (err == OBX_BAD_DATA) {
		/* librdkafka refused it (e.g. over message.max.bytes) */
		snprintf(reason, sizeof(reason), "%s", errstr);
		return handle_bad_event(p, change, ev.key, ev.key_len,
					OBX_BAD_REJECTED_BY_KAFKA, reason,
					errstr, errstr_size);
	}
	return err;
}

static obx_err_t handle_change(obx_pipeline_t *p, const obx_change_t *change,
			       char *errstr, size_t errstr_size)
{
	switch (change->kind) {
	case OBX_CHANGE_NONE:
		return OBX_OK;
	case OBX_CHANGE_BEGIN:
		if (p->txn) {
			obx_errf(errstr, errstr_size,
				 "transaction %lld began at " OBX_LSN_FMT
				 " inside another one",
				 (long long)change->xid,
				 OBX_LSN_ARGS(change->lsn));
			return OBX_BAD_DATA;
		}
		p->txn = obx_tracker_begin(p->tracker, change->commit_time_us,
					   obx_wallclock_us());
		p->commit_time_us = change->commit_time_us;
		return OBX_OK;
	case OBX_CHANGE_COMMIT:
		if (!p->txn) {
			obx_errf(errstr, errstr_size,
				 "commit of transaction %lld at " OBX_LSN_FMT
				 " without a begin",
				 (long long)change->xid,
				 OBX_LSN_ARGS(change->lsn));
			return OBX_BAD_DATA;
		}
		obx_tracker_commit(p->tracker, p->txn, change->commit_lsn);
		p->txn = NULL;
		if (p->eos) {
			p->txn_checkpoint = change->commit_lsn;
			return maybe_commit_kafka_txn(p, false, errstr,
						      errstr_size);
		}
		return OBX_OK;
	default:
		if (!p->txn) {
			obx_errf(errstr, errstr_size,
				 "row change at " OBX_LSN_FMT
				 " outside a transaction",
				 OBX_LSN_ARGS(change->lsn));
			return OBX_BAD_DATA;
		}
		return handle_row(p, change, errstr, errstr_size);
	}
}

obx_err_t obx_pipeline_handle_message(obx_pipeline_t *p,
				      const obx_repl_msg_t *msg,
				      bool *reply_requested, char *errstr,
				      size_t errstr_size)
{
	obx_change_t change;

	*reply_requested = false;
	switch (msg->kind) {
	case OBX_REPL_KEEPALIVE:
		if (msg->wal_end > p->received)
			p->received = msg->wal_end;
		p->server_wal_end = msg->wal_end;
		p->keepalive_wal_end = msg->wal_end;
		if (!p->txn)
			obx_tracker_idle_position(p->tracker, msg->wal_end);
		*reply_requested = msg->reply_requested;
		return OBX_OK;
	case OBX_REPL_DATA:
		break;
	default:
		return OBX_OK;
	}
	obx_err_t err =
	    obx_decoder_decode(p->decoder, msg->data, msg->len, msg->wal_start,
			       &change, errstr, errstr_size);
	if (err != OBX_OK)
		return err;
	if (msg->wal_start > p->received)
		p->received = msg->wal_start;
	if (msg->wal_end > p->server_wal_end)
		p->server_wal_end = msg->wal_end;
	return handle_change(p, &change, errstr, errstr_size);
}

/* Events Kafka has not acknowledged (exactly-once: including those whose
 * transaction has not committed yet), for backpressure. */
static size_t unacked(const obx_pipeline_t *p)
{
	return obx_tracker_inflight(p->tracker) - p->ndeferred;
}

/* Reads and handles up to READ_BATCH messages; *idle when none waited. */
static obx_err_t read_stream(obx_pipeline_t *p, bool *idle, char *errstr,
			     size_t errstr_size)
{
	obx_repl_msg_t msg;
	/* one clock read per pass: the stall check works in seconds */
	int64_t pass_start = obx_now_us();

	*idle = false;
	for (int i = 0; i < READ_BATCH; i++) {
		if (unacked(p) >= (size_t)p->conf->max_inflight_events)
			return OBX_OK; /* backpressure */
		obx_err_t err = obx_repl_read(p->repl, &msg);
		if (err != OBX_OK) {
			obx_errf(errstr, errstr_size, "%s",
				 obx_repl_error(p->repl));
			return err;
		}
		if (msg.kind == OBX_REPL_NONE) {
			*idle = true;
			return OBX_OK;
		}
		p->last_heard_us = pass_start;
		if (msg.kind == OBX_REPL_END) {
			obx_errf(errstr, errstr_size, "%s",
				 obx_repl_error(p->repl));
			return OBX_RETRY;
		}
		bool reply = false;
		if ((err = obx_pipeline_handle_message(
			 p, &msg, &reply, errstr, errstr_size)) != OBX_OK ||
		    (reply && (err = maybe_send_status(p, true, errstr,
						       errstr_size)) != OBX_OK))
			return err;
	}
	return OBX_OK;
}

/* Sleeps until the stream or Kafka has something, or a status is due. */
static void wait_for_work(obx_pipeline_t *p, bool read_pg)
{
	struct pollfd fds[2] = {
		{ .fd = obx_producer_event_fd(p->producer), .events = POLLIN },
		{ .fd = read_pg ? obx_repl_socket(p->repl) : -1,
		  .events = POLLIN },
	};
	int64_t due = p->last_status_us +
		      OBX_MS_TO_US(p->conf->status_interval_ms) - obx_now_us();
	int timeout = due <= 0 ? 0 : (int)(due / 1000) + 1;
	if (timeout > MAX_WAIT_MS)
		timeout = MAX_WAIT_MS;
	int64_t start = obx_now_us();
	/* EINTR (a signal) simply ends the wait early */
	if (poll(fds, 2, timeout) > 0 && fds[0].revents)
		obx_producer_clear_event(p->producer);
	count_wait(p, read_pg ? OBX_WAIT_SERVER : OBX_WAIT_KAFKA, start);
}

obx_err_t obx_pipeline_drain(obx_pipeline_t *p, int timeout_ms, char *errstr,
			     size_t errstr_size)
{
	int64_t deadline = obx_now_us() + OBX_MS_TO_US(timeout_ms);

	while (obx_tracker_inflight(p->tracker) > 0 &&
	       obx_now_us() < deadline) {
		obx_producer_poll(p->producer, 100);
		obx_metrics_merge(p->metrics, p->batch);
		obx_err_t err = check_kafka(p, errstr, errstr_size);
		if (err != OBX_OK)
			return err;
		if (p->repl && (err = maybe_send_status(p, false, errstr,
							errstr_size)) != OBX_OK)
			return err;
	}
	if (obx_tracker_inflight(p->tracker) > 0) {
		obx_errf(errstr, errstr_size,
			 "%zu events still unacknowledged by Kafka after %d ms",
			 obx_tracker_inflight(p->tracker), timeout_ms);
		return OBX_RETRY;
	}
	return OBX_OK;
}

/* Hands the loop's state to the metrics (read by the HTTP thread). */
static void publish_state(obx_pipeline_t *p)
{
	obx_metrics_merge(p->metrics, p->batch);
	obx_metrics_tick(p->metrics);
	obx_metrics_set_positions(p->metrics, p->sent_flush, p->server_wal_end,
				  obx_tracker_inflight(p->tracker));
	obx_metrics_set_kafka_errors(p->metrics,
				     obx_producer_error_count(p->producer));
}

bool obx_pipeline_kafka_reachable(obx_pipeline_t *p, int timeout_ms)
{
	pthread_mutex_lock(&p->producer_lock);
	bool reachable = !p->producer_failed && p->held_by == HOLD_NONE &&
			 obx_producer_reachable(p->producer, timeout_ms);
	pthread_mutex_unlock(&p->producer_lock);
	return reachable;
}

/*
 * When caught up, hands Kafka what librdkafka still holds back; a backlog
 * keeps lingering (larger batches, far fewer requests per event).
 */
/* The newest transaction committed moments ago (see CAUGHT_UP_AGE_US). */
static bool caught_up(const obx_pipeline_t *p)
{
	return obx_wallclock_us() - p->commit_time_us <= CAUGHT_UP_AGE_US;
}

static void send_if_caught_up(obx_pipeline_t *p)
{
	if (p->produced == p->produced_at_send_now || !caught_up(p))
		return;
	p->produced_at_send_now = p->produced;
	obx_producer_send_now(p->producer, SEND_NOW_WAIT_MS);
}

static obx_err_t stream(obx_pipeline_t *p, volatile sig_atomic_t *stop,
			char *errstr, size_t errstr_size)
{
	while (!*stop) {
		obx_err_t err;
		bool idle = false;

		obx_producer_poll(p->producer, 0);
		if (!p->txn)
			obx_tracker_idle_position(p->tracker,
						  p->keepalive_wal_end);
		publish_state(p);
		if ((err = check_kafka(p, errstr, errstr_size)) != OBX_OK ||
		    (err = maybe_send_status(p, false, errstr, errstr_size)) !=
			OBX_OK)
			return err;
		bool backpressured =
		    unacked(p) >= (size_t)p->conf->max_inflight_events;
		int64_t now = obx_now_us();
		probe_stalled_acks(p, now);
		if (backpressured) {
			/* we are not reading: silence is ours, not the server's
			 */
			p->last_heard_us = now;
		} else if (now - p->last_heard_us >
			   OBX_MS_TO_US(p->conf->replication_timeout_ms)) {
			obx_errf(errstr, errstr_size,
				 "no message from the server for %ld ms "
				 "(replication.timeout.ms): the connection is "
				 "stalled",
				 p->conf->replication_timeout_ms);
			return OBX_RETRY;
		}
		if (!backpressured &&
		    (err = read_stream(p, &idle, errstr, errstr_size)) !=
			OBX_OK)
			return err;
		if (idle && !backpressured)
			send_if_caught_up(p);
		/* exactly-once: caught up, a transaction is due at once (a
		 * backlog commits by transaction.interval.ms and .max.events,
		 * in fewer, larger transactions) */
		if ((idle || backpressured) &&
		    (err = maybe_commit_kafka_txn(p, idle && caught_up(p),
						  errstr, errstr_size)) !=
			OBX_OK)
			return err;
		if (idle || backpressured)
			wait_for_work(p, !backpressured);
	}
	return OBX_OK;
}

/*
 * Waits up to shutdown.timeout.ms for Kafka to acknowledge every event in
 * flight; OBX_FATAL, saying how many stay unconfirmed, when it does not.
 */
static obx_err_t drain_for_stop(obx_pipeline_t *p, char *errstr,
				size_t errstr_size)
{
	obx_info("stopping: waiting for Kafka to acknowledge %zu events",
		 obx_tracker_inflight(p->tracker));
	/* exactly-once: a Kafka transaction holding part of a PostgreSQL
	 * one is aborted (the slot sends it again), a whole one committed
	 * (which waits for every acknowledgement) */
	if (p->eos && p->txn)
		abort_kafka_txn(p);
	/* the open transaction was not read to its end: never confirm it */
	obx_tracker_abandon_open(p->tracker);
	p->txn = NULL;
	if (p->eos)
		return maybe_commit_kafka_txn(p, true, errstr, errstr_size);
	int64_t deadline =
	    obx_now_us() + OBX_MS_TO_US(p->conf->shutdown_timeout_ms);
	for (;;) {
		obx_err_t err =
		    obx_pipeline_drain(p, 1000, errstr, errstr_size);
		if (err == OBX_OK)
			return OBX_OK;
		if (err != OBX_RETRY)
			return err;
		if (p->producer_failed || obx_now_us() >= deadline) {
			obx_errf(errstr, errstr_size,
				 "%s: %zu events stay unconfirmed (confirmed "
				 "LSN " OBX_LSN_FMT
				 ") and are sent again after a restart",
				 p->producer_failed
				     ? "the Kafka producer failed"
				     : "Kafka did not acknowledge everything "
				       "within shutdown.timeout.ms",
				 obx_tracker_inflight(p->tracker),
				 OBX_LSN_ARGS(p->sent_flush));
			return OBX_FATAL;
		}
		obx_info("stopping: %zu events still in flight",
			 obx_tracker_inflight(p->tracker));
	}
}

/* Records what Kafka acknowledged in the state topic before exiting. */
static void record_final_state(obx_pipeline_t *p, obx_lsn_t acked)
{
	char why[512];
	/* a record still in flight would be dropped with the producer */
	if (p->connected_before && acked > p->state_acked_lsn &&
	    write_state(p, OBX_SLOT_STREAMED, acked, STATE_WAIT, 5000, why,
			sizeof(why)) != OBX_OK)
		obx_warn("%s: a restart may send events after " OBX_LSN_FMT
			 " again",
			 why, OBX_LSN_ARGS(p->state_acked_lsn));
}

/* A clean stop: drain Kafka, confirm what it acked, end the copy. */
static obx_err_t stop_cleanly(obx_pipeline_t *p, char *errstr,
			      size_t errstr_size)
{
	obx_err_t drained = drain_for_stop(p, errstr, errstr_size);
	char why[512];
	/* what was acknowledged is confirmed even when not everything was */
	obx_err_t err = maybe_send_status(p, true, why, sizeof(why));
	if (err == OBX_OK && obx_repl_finish(p->repl) != OBX_OK)
		obx_warn("%s", obx_repl_error(p->repl));
	if (err == OBX_OK)
		record_final_state(p, p->sent_flush);
	if (drained != OBX_OK)
		return drained;
	if (err != OBX_OK) {
		obx_errf(errstr, errstr_size, "%s", why);
		return err;
	}
	obx_info("stopped cleanly; confirmed " OBX_LSN_FMT,
		 OBX_LSN_ARGS(p->sent_flush));
	return OBX_OK;
}

obx_err_t obx_pipeline_stop_disconnected(obx_pipeline_t *p, char *errstr,
					 size_t errstr_size)
{
	if (p->producer_failed) {
		obx_errf(errstr, errstr_size,
			 "stopped while the Kafka producer was being "
			 "replaced: events after " OBX_LSN_FMT
			 " are sent again after a restart",
			 OBX_LSN_ARGS(p->sent_flush));
		return OBX_FATAL;
	}
	obx_err_t err = drain_for_stop(p, errstr, errstr_size);
	if (err != OBX_OK)
		return err;
	record_final_state(p, obx_tracker_confirmed(p->tracker));
	obx_info("stopped while disconnected; Kafka acknowledged everything "
		 "up to " OBX_LSN_FMT " (confirmed to the server at the next "
		 "start)",
		 OBX_LSN_ARGS(obx_tracker_confirmed(p->tracker)));
	return OBX_OK;
}

void obx_pipeline_set_database(obx_pipeline_t *p, const char *db)
{
	if (p->router && strcmp(p->router_db, db) == 0)
		return;
	obx_router_destroy(p->router);
	free(p->router_db);
	p->router_db = obx_xstrdup(db);
	p->router = obx_router_new(p->conf, db);
}

obx_lsn_t obx_pipeline_confirmed(const obx_pipeline_t *p)
{
	return obx_tracker_confirmed(p->tracker);
}

size_t obx_pipeline_inflight(const obx_pipeline_t *p)
{
	return obx_tracker_inflight(p->tracker);
}

obx_err_t obx_pipeline_serve_kafka(obx_pipeline_t *p, int timeout_ms,
				   char *errstr, size_t errstr_size)
{
	obx_producer_poll(p->producer, timeout_ms);
	return check_kafka(p, errstr, errstr_size);
}

void obx_pipeline_connection_lost(obx_pipeline_t *p)
{
	/* exactly-once: what the open Kafka transaction holds comes again */
	if (p->eos && (p->txn_events || obx_tracker_inflight(p->tracker)))
		abort_kafka_txn(p);
	/* the server sends the open transaction again, whole */
	obx_tracker_abandon_open(p->tracker);
	p->txn = NULL;
}

/* Reads the state topic once per process; OBX_RETRY while Kafka cannot
 * tell (never taken for a first start). */
static obx_err_t load_state(obx_pipeline_t *p, char *errstr, size_t errstr_size)
{
	const obx_repl_system_t *sys = obx_repl_system(p->repl);
	if (p->state_loaded)
		return OBX_OK;
	obx_err_t err = obx_state_read(p->conf, sys->system_id, p->router_db,
				       OBX_STATE_WAIT_MS, p->stop, &p->state,
				       errstr, errstr_size);
	if (err != OBX_OK)
		return err;
	p->state_loaded = true;
	const obx_state_record_t *mine = &p->state.mine;
	if (p->state.found)
		obx_info("state topic \"%s\": slot \"%s\" %s up to " OBX_LSN_FMT
			 " on timeline %u of system %" PRIu64,
			 p->conf->state_topic, mine->slot,
			 obx_slot_event_name(mine->event),
			 OBX_LSN_ARGS(mine->lsn), mine->timeline,
			 mine->system_id);
	else
		obx_info("state topic \"%s\": no record of slot \"%s\" on "
			 "system %" PRIu64 " yet",
			 p->conf->state_topic, p->conf->slot_name,
			 sys->system_id);
	return OBX_OK;
}

/*
 * exactly-once, for a new producer (a new process, or one replacing a
 * producer that failed): before the state topic is read, its
 * init_transactions fences the older producers and waits until their
 * transactions are complete.  A checkpoint whose commit was in doubt (the
 * instance was killed, or its commit reported an error, after the
 * coordinator had taken it) is then either committed and read, or aborted:
 * read earlier, it would be neither, and its events would come again.
 */
static obx_err_t settle_kafka_txns(obx_pipeline_t *p, char *errstr,
				   size_t errstr_size)
{
	if (!p->eos || obx_producer_txn_ready(p->producer))
		return OBX_OK;
	obx_err_t err = obx_producer_txn_init(p->producer, TXN_TIMEOUT_MS,
					      errstr, errstr_size);
	if (err == OBX_OK)
		p->state_loaded = false; /* read it (again) now */
	return err;
}

/*
 * exactly-once, in a process that streamed before: a checkpoint in the
 * state topic past the last commit this process saw succeed is a commit
 * reported as failed that went through (settle_kafka_txns): its events are
 * in Kafka, and streaming resumes after them.
 */
static void adopt_later_checkpoint(obx_pipeline_t *p)
{
	const obx_state_record_t *mine = &p->state.mine;
	if (!p->eos || !p->connected_before || !p->state.found ||
	    mine->system_id != p->last_system_id ||
	    mine->timeline != p->last_timeline ||
	    mine->lsn <= p->state_acked_lsn)
		return;
	obx_warn("state topic \"%s\": the Kafka transaction with the "
		 "checkpoint " OBX_LSN_FMT " committed after all (its commit "
		 "was reported as failed, after " OBX_LSN_FMT
		 "): streaming resumes after it",
		 p->conf->state_topic, OBX_LSN_ARGS(mine->lsn),
		 OBX_LSN_ARGS(p->state_acked_lsn));
	p->state_acked_lsn = p->state_sent_lsn = mine->lsn;
	obx_tracker_destroy(p->tracker);
	p->tracker = obx_tracker_new(p->state_acked_lsn);
}

/*
 * Decides where this connection starts (startpoint.h) and acts on it:
 * creates a missing slot on a first start, forgets confirmations of another
 * timeline, records the start in the state topic before anything streams.
 * *start is the position to stream from (OBX_LSN_INVALID: the slot's), and
 * *acked what is known to be acknowledged already (the slot's position, or
 * the state topic's when that is later).
 */
static obx_err_t plan_start(obx_pipeline_t *p, obx_lsn_t *start,
			    obx_lsn_t *acked, char *errstr, size_t errstr_size)
{
	const obx_repl_system_t *sys = obx_repl_system(p->repl);
	obx_err_t err = settle_kafka_txns(p, errstr, errstr_size);
	if (err == OBX_OK)
		err = load_state(p, errstr, errstr_size);
	if (err != OBX_OK)
		return err;
	adopt_later_checkpoint(p);
	obx_lsn_t produced = obx_tracker_produced(p->tracker);
	obx_start_facts_t facts = {
		.system_id = sys->system_id,
		.timeline = sys->timeline,
		.wal_end = sys->wal_end,
		.slot_exists = obx_repl_slot_exists(p->repl),
		.slot_confirmed = obx_repl_slot_confirmed(p->repl),
		.state = &p->state,
		.connected_before = p->connected_before,
		.last_system_id = p->last_system_id,
		.last_timeline = p->last_timeline,
		.confirmed_before = obx_tracker_confirmed(p->tracker),
		.produced = produced > p->sent_flush ? produced : p->sent_flush,
	};
	char *history = NULL;
	if (obx_start_needs_history(&facts) &&
	    (err = obx_repl_timeline_history(p->repl, &history)) != OBX_OK) {
		/* without it a failover streams from the slot's position */
		if (err == OBX_RETRY) {
			obx_errf(errstr, errstr_size, "%s",
				 obx_repl_error(p->repl));
			return err;
		}
		obx_warn("%s", obx_repl_error(p->repl));
	}
	facts.timeline_history = history;
	obx_start_plan_t plan;
	obx_start_plan(p->conf, &facts, &plan);
	free(history);
	if (plan.action == OBX_START_REFUSE) {
		obx_errf(errstr, errstr_size, "%s", plan.why);
		return OBX_BAD_DATA;
	}
	if (plan.action == OBX_START_CREATE_SLOT &&
	    (err = obx_repl_create_slot(p->repl)) != OBX_OK) {
		obx_errf(errstr, errstr_size, "%s", obx_repl_error(p->repl));
		return err;
	}
	if (*plan.why)
		obx_log(plan.forget_confirmed ? OBX_LOG_WARN : OBX_LOG_INFO,
			"%s", plan.why);
	obx_lsn_t slot_at = obx_repl_slot_confirmed(p->repl);
	/* what Kafka holds on this server's timeline */
	obx_lsn_t start_at =
	    plan.resume_at > slot_at ? plan.resume_at : slot_at;
	if (plan.forget_confirmed)
		obx_tracker_forget(p->tracker, start_at);
	if (plan.resume_at > slot_at)
		obx_metrics_resume_skipped(p->metrics,
					   plan.resume_at - slot_at);
	if (p->connected_before)
		obx_metrics_reconnect(p->metrics);
	p->last_system_id = sys->system_id;
	p->last_timeline = sys->timeline;
	if (plan.record) {
		obx_slot_event_t event = plan.action == OBX_START_CREATE_SLOT
					     ? OBX_SLOT_CREATED
					     : OBX_SLOT_STREAMED;
		if ((err = write_state(
			 p, event, start_at, STATE_WAIT_UNLESS_STOPPED,
			 OBX_STATE_WAIT_MS, errstr, errstr_size)) != OBX_OK)
			return err;
	}
	/* within a process the resume point may lie past events still in
	 * flight, unless it is a fork's (what was confirmed); from the state
	 * topic it is what Kafka acknowledged */
	*acked = (!p->connected_before || plan.forget_confirmed) &&
			 plan.resume_at > slot_at
		     ? plan.resume_at
		     : slot_at;
	*start = plan.resume_at;
	/* from here on, a missing slot is a lost one */
	p->connected_before = true;
	return OBX_OK;
}

/*
 * Once per process, before the slot is created or anything streamed: a
 * misnamed table matches nothing, and every event written meanwhile would
 * be lost; pgoutput's publication must exist before its slot does.
 */
static obx_err_t prepare_server(obx_pipeline_t *p, char *errstr,
				size_t errstr_size)
{
	obx_err_t err = obx_admin_verify_tables(p->conf, p->partitioned, errstr,
						errstr_size);
	if (err != OBX_OK)
		return err;
	for (size_t i = 0; i < p->conf->ntables; i++)
		if (p->partitioned[i] && !p->partitions)
			p->partitions = obx_partitions_new(p->conf);
	if (p->conf->plugin_name == OBX_PLUGIN_PGOUTPUT) {
		obx_admin_t *a = obx_admin_connect(
		    p->conf, "outboxd-publication", errstr, errstr_size);
		if (!a)
			return OBX_RETRY;
		err = obx_publication_ensure(a, p->conf, errstr, errstr_size);
		/* a broken connection is worth another try, a refusal not */
		if (err == OBX_FATAL && !obx_admin_ok(a))
			err = OBX_RETRY;
		obx_admin_destroy(a);
		if (err != OBX_OK)
			return err;
	}
	p->server_prepared = true;
	return OBX_OK;
}

static obx_err_t run_connection(obx_pipeline_t *p, volatile sig_atomic_t *stop,
				char *errstr, size_t errstr_size)
{
	char options[8192];
	obx_err_t err;

	p->stop = stop;
	/* exactly-once: fenced, never replaced (obx_pipeline_run) */
	if (p->eos &&
	    obx_producer_status(p->producer, errstr, errstr_size) != OBX_OK &&
	    obx_producer_fenced(p->producer))
		return OBX_FATAL;
	if (p->producer_failed &&
	    (err = replace_failed_producer(p, errstr, errstr_size)) != OBX_OK)
		return err;
	if (!p->server_prepared &&
	    (err = prepare_server(p, errstr, errstr_size)) != OBX_OK)
		return err;
	p->repl = obx_repl_connect(p->conf, &err, errstr, errstr_size);
	if (!p->repl)
		return err;
	obx_pipeline_set_database(p, obx_repl_database(p->repl));
	obx_lsn_t start = OBX_LSN_INVALID;
	if ((err = plan_start(p, &start, &p->slot_floor, errstr,
			      errstr_size)) != OBX_OK) {
		obx_repl_destroy(p->repl);
		p->repl = NULL;
		return err;
	}
	obx_tracker_idle_position(p->tracker, p->slot_floor);
	p->sent_flush = p->slot_floor;
	p->server_wal_end = p->sent_flush;
	p->received = 0;
	p->keepalive_wal_end = OBX_LSN_INVALID;
	p->last_status_us = obx_now_us();
	p->last_heard_us = p->last_status_us;

	if ((err = obx_decoder_start_options(p->decoder, p->partitioned,
					     options, sizeof(options))) !=
	    OBX_OK) {
		obx_errf(errstr, errstr_size, "plugin options are too long");
	} else if ((err = obx_repl_start(p->repl, start, options)) != OBX_OK) {
		obx_errf(errstr, errstr_size, "%s", obx_repl_error(p->repl));
	} else {
		obx_metrics_set_streaming(p->metrics, true);
		if ((err = stream(p, stop, errstr, errstr_size)) == OBX_OK)
			err = stop_cleanly(p, errstr, errstr_size);
		obx_metrics_set_streaming(p->metrics, false);
		publish_state(p);
	}
	if (err != OBX_OK)
		obx_pipeline_connection_lost(p);
	obx_repl_destroy(p->repl);
	p->repl = NULL;
	return err;
}

obx_err_t obx_pipeline_run(obx_pipeline_t *p, volatile sig_atomic_t *stop,
			   char *errstr, size_t errstr_size)
{
	obx_err_t err = run_connection(p, stop, errstr, errstr_size);
	if (err == OBX_OK || !p->eos || !obx_producer_fenced(p->producer))
		return err;
	/* Kafka reports a transaction its coordinator aborted for its
	 * timeout as fencing too, which is not another instance */
	char why[512];
	if (!kafka_txn_timed_out(p, why, sizeof(why)))
		snprintf(why, sizeof(why),
			 "another outboxd with the same kafka.transactional.id "
			 "took over");
	size_t n = strlen(errstr);
	obx_errf(errstr + n, errstr_size - n,
		 "; %s: this one stops (confirmed LSN stays " OBX_LSN_FMT ")",
		 why, OBX_LSN_ARGS(p->sent_flush));
	return OBX_FATAL;
}
