/*
 * producer.h - the Kafka side: librdkafka with acks=all and idempotence,
 * delivery reports handed to a callback with the message's opaque.
 *
 * Threads: librdkafka works on its own threads, but every callback given
 * here runs inside obx_producer_poll(), on the caller's thread.
 * obx_producer_event_fd() becomes readable when delivery reports wait, so
 * the pipeline can sleep in poll() on it and on the PostgreSQL socket.
 */
#ifndef OUTBOXD_PRODUCER_H
#define OUTBOXD_PRODUCER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "outboxd/config.h"
#include "outboxd/router.h"

typedef struct obx_producer obx_producer_t;

/*
 * Called once per produced message.  ok is false when the delivery finally
 * failed (after librdkafka's retries); error says why.  Never a reason to
 * confirm: the pipeline stops.  now_us is the wall clock when this poll's
 * first report arrived (one clock read per batch of reports, not per report).
 */
typedef void (*obx_delivery_cb)(void *ctx, void *msg_opaque, const char *topic,
				bool ok, const char *error, int64_t now_us);

/*
 * OBX_CONFIG, with the setting and the reason in errstr, when the kafka.*
 * settings break "acknowledged means durable": acks other than all,
 * enable.idempotence=false, delivery.report.only.error=true.
 */
obx_err_t obx_producer_check_durability(const obx_config_t *conf, char *errstr,
					size_t errstr_size);

obx_producer_t *obx_producer_new(const obx_config_t *conf,
				 obx_delivery_cb on_delivery, void *ctx,
				 char *errstr, size_t errstr_size);

/* Frees the producer; unflushed messages are purged, their delivery
 * reports not given (flush first to deliver them). */
void obx_producer_destroy(obx_producer_t *p);

/*
 * Produces one message; value == NULL sends a tombstone.  Copies key, value
 * and headers.  Returns:
 *   OBX_OK        queued; a delivery report will follow
 *   OBX_RETRY     not queued now: poll, then call again.  errstr is empty
 *                 when the local queue is full, and says so when the topic
 *                 does not exist and the brokers do not create it (deleted,
 *                 auto-creation off): an infrastructure fault, never the
 *                 record's (each call asks the brokers again, waiting up
 *                 to 0.5 s)
 *   OBX_BAD_DATA  this message can never be produced: librdkafka or the
 *                 brokers reject it (larger than the topic's
 *                 max.message.bytes on the brokers, a topic name they
 *                 refuse).  A new topic's first message waits for its
 *                 metadata (at most 0.5 s) and, when the topic does not
 *                 exist yet, for the brokers' verdict on creating it (at
 *                 most 10.5 s) and for auto-creation (about 1.5 s).  The
 * topic's max.message.bytes is asked for then without waiting; until it arrives
 * only messages of 16 KiB and more wait for it (at most 10.5 s) and smaller
 *                 ones are not checked
 *   OBX_FATAL     the producer is unusable (fatal idempotence error)
 * In a Kafka transaction that librdkafka ended (obx_producer_txn_failed()
 * says so), OBX_RETRY, with errstr saying why: the caller aborts it.
 */
obx_err_t obx_producer_send(obx_producer_t *p, const char *topic,
			    const void *key, size_t key_len, const void *value,
			    size_t value_len, const obx_kv_t *headers,
			    size_t nheaders, void *msg_opaque, char *errstr,
			    size_t errstr_size);

/* Serves delivery reports and errors, waiting up to timeout_ms. */
void obx_producer_poll(obx_producer_t *p, int timeout_ms);

/*
 * Sends at once what librdkafka holds back for linger.ms, waiting up to
 * timeout_ms for the acknowledgements (serving delivery reports).  For a
 * caught-up pipeline: no more events are coming, so lingering would only
 * add latency.
 */
void obx_producer_send_now(obx_producer_t *p, int timeout_ms);

/*
 * A descriptor that is readable when obx_producer_poll() may have work.  It
 * stays readable until obx_producer_clear_event(): call that when poll()
 * reports it, before serving (not on every pass: a read() per pass costs
 * more than the rare spurious wake-up).
 */
int obx_producer_event_fd(const obx_producer_t *p);
void obx_producer_clear_event(obx_producer_t *p);

/* Errors librdkafka reported so far, transient ones included. */
unsigned long obx_producer_error_count(const obx_producer_t *p);

/*
 * Whether a broker answers a metadata request within timeout_ms.  The
 * request asks for every topic this producer knows, and librdkafka takes
 * the answer in: a partition it holds without a leader (or with a stale
 * one) is otherwise asked for again only by its own periodic refresh.  Safe
 * to call from any thread (readiness probes).
 */
bool obx_producer_reachable(obx_producer_t *p, int timeout_ms);

/* librdkafka's whole internal state (brokers, partitions, leaders, queued
 * messages) as its rd_kafka_dump() prints it, for a stall's diagnosis. */
void obx_producer_dump(obx_producer_t *p, FILE *out);

/*
 * Like obx_producer_reachable(), but gives up early when librdkafka reports
 * an authentication or TLS failure (a wrong password, an untrusted
 * certificate), whose reason obx_producer_last_error() then holds.  Serves
 * the producer's callbacks: the polling thread only (e.g. `check`).
 */
bool obx_producer_wait_reachable(obx_producer_t *p, int timeout_ms);

/*
 * One configuration entry of a topic (broker == false) or of a broker (name
 * is its node id), as the cluster reports it (DescribeConfigs), copied into
 * value.  OBX_RETRY, with the reason in errstr, when the cluster did not
 * answer in time or refused (e.g. no DESCRIBE_CONFIGS right).  Blocks up to
 * timeout_ms; pipeline thread or a command, not librdkafka's threads.
 */
obx_err_t obx_producer_describe_config(obx_producer_t *p, bool broker,
				       const char *name, const char *key,
				       char *value, size_t value_size,
				       int timeout_ms, char *errstr,
				       size_t errstr_size);

/*
 * 1 when the topic exists, 0 when not, -1 when the brokers did not answer
 * within timeout_ms.  Never creates it.  *broker_id (if not NULL) is set to
 * one broker's node id, for obx_producer_describe_config().  Blocks.
 */
int obx_producer_topic_exists(obx_producer_t *p, const char *topic,
			      int timeout_ms, int32_t *broker_id);

/* What the brokers say to creating a topic (obx_producer_validate_topic). */
typedef enum {
	OBX_TOPIC_CREATABLE, /* they would create it */
	OBX_TOPIC_EXISTS,
	OBX_TOPIC_REFUSED, /* an invalid or colliding name */
	OBX_TOPIC_DENIED,  /* this principal may not create it */
	OBX_TOPIC_UNKNOWN  /* no answer, or another error */
} obx_topic_verdict_t;

/*
 * Asks the brokers to validate the topic's creation (CreateTopics with
 * validate_only: nothing is created); their reason goes to `reason`.
 * Blocks up to timeout_ms; not on librdkafka's threads.
 */
obx_topic_verdict_t obx_producer_validate_topic(obx_producer_t *p,
						const char *topic,
						int timeout_ms, char *reason,
						size_t reason_size);

/*
 * Whether this principal may write to an existing topic, without writing:
 * a separate, non-idempotent producer with the same kafka.* settings sends
 * one record with acks=2, which the brokers refuse either at the Write ACL
 * check (TOPIC_AUTHORIZATION_FAILED) or, once that passed, as an invalid
 * acks setting (INVALID_REQUIRED_ACKS), before anything is appended.
 * OBX_OK: may write; OBX_BAD_DATA: denied, errstr names the missing ACL;
 * OBX_RETRY: could not tell, errstr says why.  For `check`; blocks up to
 * timeout_ms + 1 s.
 */
obx_err_t obx_producer_probe_write(const obx_config_t *conf, const char *topic,
				   int timeout_ms, char *errstr,
				   size_t errstr_size);

/*
 * Kafka transactions, for delivery.guarantee=exactly-once (the producer is
 * transactional when kafka.transactional.id is set).  Everything produced
 * between begin and commit becomes visible to read_committed consumers at
 * once, or never.
 *
 * init (once per producer; the first begin does it when not done yet)
 * fences every older producer with the same transactional.id and returns
 * once the coordinator completed their transactions: an open one aborted,
 * a commit in doubt committed.  Only then does a read_committed reader see
 * every transaction they committed.
 *
 * Errors of each: OBX_RETRY when the transaction failed (the caller aborts
 * it, and produces what it held again), or the coordinator did not answer
 * in time; OBX_FATAL when this producer is fenced
 * (obx_producer_fenced(): another instance took over, this one must stop)
 * or failed for good.  Blocking, up to timeout_ms; the commit serves the
 * delivery reports of the transaction's messages.
 */
obx_err_t obx_producer_txn_init(obx_producer_t *p, int timeout_ms, char *errstr,
				size_t errstr_size);
bool obx_producer_txn_ready(const obx_producer_t *p);
obx_err_t obx_producer_txn_begin(obx_producer_t *p, int timeout_ms,
				 char *errstr, size_t errstr_size);
obx_err_t obx_producer_txn_commit(obx_producer_t *p, int timeout_ms,
				  char *errstr, size_t errstr_size);
/* Aborts an open transaction (one holding half a PostgreSQL transaction
 * at a stop, or whose commit failed), and serves the delivery reports of
 * the messages it purged: the caller discards them.  A failed abort is
 * logged and fails the producer (obx_producer_status()): its reports stop.
 * False when no transaction was open. */
bool obx_producer_txn_abort(obx_producer_t *p, int timeout_ms);
/* A transaction was begun and has not been committed or aborted yet. */
bool obx_producer_txn_open(const obx_producer_t *p);
/*
 * The open transaction can no longer commit: librdkafka ended it with an
 * abortable error (a lost producer id, a sequence gap; an epoch bump
 * follows), which a delivery report or a refused send showed.  Its failed
 * deliveries are not reported to the delivery callback: the caller aborts
 * the transaction and produces what it held again.  why says how.
 */
bool obx_producer_txn_failed(const obx_producer_t *p, char *why,
			     size_t why_size);
bool obx_producer_fenced(const obx_producer_t *p);

/*
 * The last error librdkafka reported (an empty string before any), e.g. why
 * a broker refused authentication.  Updated by obx_producer_poll(); read it
 * on the thread that polls.
 */
const char *obx_producer_last_error(const obx_producer_t *p);

/*
 * OBX_OK while the producer is healthy; OBX_FATAL, with the reason in
 * errstr, after a fatal error (e.g. an idempotence sequence gap) or once a
 * topic vanished under queued messages (their delivery reports fail): the
 * caller replaces the producer and reads those events again.
 */
obx_err_t obx_producer_status(obx_producer_t *p, char *errstr,
			      size_t errstr_size);

#endif
