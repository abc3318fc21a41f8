/* state.c - the connector's record in the compacted state topic. */
#include "outboxd/state.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "outboxd/kafka_client.h"
#include "outboxd/log.h"
#include "outboxd/producer.h"

#define STATE_RECORD_VERSION 1

static const char *const event_names[] = {
	[OBX_SLOT_STREAMED] = "streamed",
	[OBX_SLOT_CREATED] = "created",
	[OBX_SLOT_DROPPED] = "dropped",
	[OBX_SLOT_RESET] = "reset",
};

const char *obx_slot_event_name(obx_slot_event_t event)
{
	return event_names[event];
}

void obx_state_key(uint64_t system_id, const char *database, const char *slot,
		   char *key, size_t key_size)
{
	snprintf(key, key_size, "%" PRIu64 "/%s/%s", system_id, database, slot);
}

char *obx_state_encode(const obx_state_record_t *rec)
{
	char sysid[32], lsn[32], when[40];
	time_t secs = (time_t)(rec->written_us / 1000000);
	struct tm tm;

	snprintf(sysid, sizeof(sysid), "%" PRIu64, rec->system_id);
	snprintf(lsn, sizeof(lsn), OBX_LSN_FMT, OBX_LSN_ARGS(rec->lsn));
	gmtime_r(&secs, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	/* the system identifier is a string: JSON readers lose 64-bit
	 * integers to doubles */
	json_t *doc =
	    json_pack("{s:i, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:I, s:s}",
		      "version", STATE_RECORD_VERSION, "system_identifier",
		      sysid, "database", rec->database, "slot", rec->slot,
		      "timeline", (json_int_t)rec->timeline, "lsn", lsn,
		      "event", obx_slot_event_name(rec->event), "written_at",
		      when, "written_at_us", (json_int_t)rec->written_us,
		      "writer", "outboxd " OUTBOXD_VERSION);
	/* json_pack and json_dumps fail only for want of memory */
	char *text = obx_xnonnull(doc ? json_dumps(doc, JSON_COMPACT) : NULL);
	json_decref(doc);
	return text;
}

int obx_state_decode(const char *value, size_t len, obx_state_record_t *rec)
{
	json_t *doc = json_loadb(value, len, 0, NULL);
	const char *sysid = NULL, *db = NULL, *slot = NULL, *lsn = NULL,
		   *event = NULL;
	json_int_t version = 0, timeline = 0, written = 0;
	int rc = -1;

	memset(rec, 0, sizeof(*rec));
	if (!doc || json_unpack(doc, "{s:I, s:s, s:s, s:s, s:I, s:s, s:s, s?I}",
				"version", &version, "system_identifier",
				&sysid, "database", &db, "slot", &slot,
				"timeline", &timeline, "lsn", &lsn, "event",
				&event, "written_at_us", &written) != 0)
		goto out;
	char *end;
	rec->system_id = strtoull(sysid, &end, 10);
	if (version != STATE_RECORD_VERSION || *end || !*sysid ||
	    timeline < 0 || timeline > UINT32_MAX ||
	    obx_lsn_parse(lsn, strlen(lsn), &rec->lsn) != 0 ||
	    strlen(db) >= sizeof(rec->database) ||
	    strlen(slot) >= sizeof(rec->slot))
		goto out;
	rec->event = (obx_slot_event_t)-1;
	for (size_t i = 0; i < OBX_ARRAY_LEN(event_names); i++)
		if (strcmp(event, event_names[i]) == 0)
			rec->event = (obx_slot_event_t)i;
	if ((int)rec->event < 0)
		goto out;
	strcpy(rec->database, db);
	strcpy(rec->slot, slot);
	rec->timeline = (uint32_t)timeline;
	rec->written_us = written;
	rc = 0;
out:
	json_decref(doc);
	return rc;
}

/* Partitions of `topic`: >0 when it exists, 0 when not, -1 on no answer. */
static int topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms)
{
	const struct rd_kafka_metadata *md = NULL;
	/* all topics: asking for one by name may auto-create it, not
	 * compacted */
	if (rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms) || !md)
		return -1;
	int n = 0;
	for (int i = 0; i < md->topic_cnt; i++)
		if (strcmp(md->topics[i].topic, topic) == 0 &&
		    md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
			n = md->topics[i].partition_cnt;
	rd_kafka_metadata_destroy(md);
	return n;
}

/* Creates the state topic, compacted; OBX_OK when it exists afterwards. */
static obx_err_t create_topic(rd_kafka_t *rk, const char *topic, int timeout_ms,
			      char *errstr, size_t errstr_size)
{
	static const char *const compacted[] = { "cleanup.policy", "compact",
						 NULL };
	char why[512];
	obx_topic_verdict_t verdict = obx_kafka_create_topic(
	    rk, topic, 1, false, compacted, timeout_ms, why, sizeof(why));
	if (verdict == OBX_TOPIC_CREATABLE)
		obx_info("created the state topic \"%s\" (compacted)", topic);
	if (verdict == OBX_TOPIC_CREATABLE || verdict == OBX_TOPIC_EXISTS)
		return OBX_OK;
	bool denied = verdict == OBX_TOPIC_DENIED;
	obx_errf(errstr, errstr_size,
		 "could not create the state topic \"%s\": %s%s", topic, why,
		 denied ? " (grant this principal Create on it, or create it "
			  "compacted with one partition)"
			: "");
	return denied ? OBX_FATAL : OBX_RETRY;
}

/* Folds one record of the topic into the view (later ones win). */
static void apply_record(const rd_kafka_message_t *msg, const char *my_key,
			 const char *database, const char *slot,
			 uint64_t system_id, obx_state_view_t *view)
{
	obx_state_record_t rec;
	if (!msg->payload) {
		/* a tombstone deletes its key */
		if (msg->key && msg->key_len == strlen(my_key) &&
		    memcmp(msg->key, my_key, msg->key_len) == 0)
			view->found = false;
		return;
	}
	if (obx_state_decode(msg->payload, msg->len, &rec) != 0) {
		obx_warn("state topic: ignoring a record at offset %" PRId64
			 " that is not an outboxd state record",
			 msg->offset);
		return;
	}
	if (strcmp(rec.database, database) != 0 || strcmp(rec.slot, slot) != 0)
		return;
	if (rec.system_id == system_id) {
		view->found = true;
		view->mine = rec;
	} else if (!view->other_found ||
		   rec.written_us >= view->other.written_us) {
		view->other_found = true;
		view->other = rec;
	}
}

/* Waits no longer than this at a time, so that a stop is seen soon. */
#define STATE_SLICE_MS 500

static bool stopped(const volatile sig_atomic_t *stop)
{
	return stop && *stop;
}

/* Reads every partition from its start to its end (the end offset for
 * read_committed, the last stable offset, reached). */
static obx_err_t read_to_end(rd_kafka_t *rk, const char *topic, int partitions,
			     int64_t deadline_us,
			     const volatile sig_atomic_t *stop,
			     uint64_t system_id, const char *database,
			     const char *slot, obx_state_view_t *view,
			     char *errstr, size_t errstr_size)
{
	char my_key[256];
	obx_state_key(system_id, database, slot, my_key, sizeof(my_key));
	rd_kafka_topic_partition_list_t *parts =
	    rd_kafka_topic_partition_list_new(partitions);
	/* offset 0, not RD_KAFKA_OFFSET_BEGINNING: resolving the logical
	 * offset needs the partition's leader joined to its broker thread,
	 * which may happen a moment after assign(), and then waits for a
	 * 500 ms timer; a log that no longer starts at 0 is reset to its
	 * start (auto.offset.reset=earliest) */
	for (int i = 0; i < partitions; i++)
		rd_kafka_topic_partition_list_add(parts, topic, i)->offset = 0;
	rd_kafka_resp_err_t assigned = rd_kafka_assign(rk, parts);
	rd_kafka_topic_partition_list_destroy(parts);
	if (assigned) {
		obx_errf(errstr, errstr_size,
			 "could not read the state topic \"%s\": %s", topic,
			 rd_kafka_err2str(assigned));
		return OBX_FATAL;
	}

	bool *at_end = obx_xcalloc((size_t)partitions, sizeof(*at_end));
	int64_t *end = obx_xcalloc((size_t)partitions, sizeof(*end));
	int ended = 0;
	obx_err_t result = OBX_RETRY;
	obx_errf(errstr, errstr_size,
		 "could not read the state topic \"%s\" in time", topic);
	/* where each partition ends, asked of its leader: a fetch may stop
	 * short of it, at the high watermark of a leader elected a moment
	 * ago that has not caught up yet (which ListOffsets refuses,
	 * OFFSET_NOT_AVAILABLE, and is asked again) */
	for (int i = 0;
	     i < partitions && !stopped(stop) && obx_now_us() < deadline_us;) {
		int64_t low;
		if (rd_kafka_query_watermark_offsets(rk, topic, i, &low,
						     &end[i], STATE_SLICE_MS) ==
		    RD_KAFKA_RESP_ERR_NO_ERROR)
			i++;
	}
	while (ended < partitions && !stopped(stop) &&
	       obx_now_us() < deadline_us) {
		rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 200);
		if (!msg)
			continue;
		if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			if (msg->partition >= 0 &&
			    msg->partition < partitions &&
			    msg->offset >= end[msg->partition] &&
			    !at_end[msg->partition]) {
				at_end[msg->partition] = true;
				ended++;
			}
		} else if (msg->err) {
			obx_errf(errstr, errstr_size,
				 "could not read the state topic \"%s\": %s",
				 topic, rd_kafka_message_errstr(msg));
			if (msg->err ==
			    RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
				rd_kafka_message_destroy(msg);
				free(at_end);
				free(end);
				return OBX_FATAL;
			}
		} else {
			apply_record(msg, my_key, database, slot, system_id,
				     view);
		}
		rd_kafka_message_destroy(msg);
	}
	if (ended == partitions)
		result = OBX_OK;
	free(at_end);
	free(end);
	return result;
}

/* topic_partitions() in slices until it is at least `least`, the deadline
 * or a stop; its last answer. */
static int wait_for_partitions(rd_kafka_t *rk, const char *topic, int least,
			       int64_t deadline_us,
			       const volatile sig_atomic_t *stop)
{
	int n = -1;
	while (n < least && !stopped(stop) && obx_now_us() < deadline_us)
		n = topic_partitions(rk, topic, STATE_SLICE_MS);
	return n;
}

obx_err_t obx_state_read(const obx_config_t *conf, uint64_t system_id,
			 const char *database, int timeout_ms,
			 const volatile sig_atomic_t *stop,
			 obx_state_view_t *view, char *errstr,
			 size_t errstr_size)
{
	const char *topic = conf->state_topic;
	int64_t deadline = obx_now_us() + OBX_MS_TO_US(timeout_ms);
	char err[512];

	memset(view, 0, sizeof(*view));
	rd_kafka_conf_t *kconf = obx_kafka_conf_new(conf, errstr, errstr_size);
	if (!kconf)
		return OBX_CONFIG;
	/* librdkafka's assign() needs a group id, but with assign() the
	 * group is never joined and nothing is committed */
	if (rd_kafka_conf_set(kconf, "group.id", "outboxd-state-reader", err,
			      sizeof(err)) ||
	    rd_kafka_conf_set(kconf, "enable.partition.eof", "true", err,
			      sizeof(err)) ||
	    rd_kafka_conf_set(kconf, "enable.auto.commit", "false", err,
			      sizeof(err)) ||
	    /* at the end of the topic the broker would hold each fetch for
	     * fetch.wait.max.ms (500): the end is what we wait for */
	    rd_kafka_conf_set(kconf, "fetch.wait.max.ms", "10", err,
			      sizeof(err)) ||
	    rd_kafka_conf_set(kconf, "auto.offset.reset", "earliest", err,
			      sizeof(err)) ||
	    /* exactly-once: only checkpoints whose transaction committed */
	    rd_kafka_conf_set(kconf, "isolation.level", "read_committed", err,
			      sizeof(err)))
		abort();
	rd_kafka_t *rk =
	    rd_kafka_new(RD_KAFKA_CONSUMER, kconf, err, sizeof(err));
	if (!rk) {
		rd_kafka_conf_destroy(kconf);
		obx_errf(errstr, errstr_size,
			 "could not create the state topic's reader: %s", err);
		return OBX_CONFIG;
	}
	/* a handle first: the metadata below then tells it the partitions'
	 * leaders, which assign() would otherwise look up on a 500 ms timer */
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	obx_err_t result = OBX_RETRY;
	/* an answer, even "no such topic" */
	int partitions = wait_for_partitions(rk, topic, 0, deadline, stop);
	if (partitions < 0) {
		obx_errf(errstr, errstr_size,
			 "could not read the state topic \"%s\": Kafka did not "
			 "answer within %d ms",
			 topic, timeout_ms);
		goto out;
	}
	if (partitions == 0) {
		result =
		    create_topic(rk, topic, timeout_ms, errstr, errstr_size);
		if (result != OBX_OK)
			goto out;
		/* the new topic's metadata reaches the brokers shortly */
		result = OBX_RETRY;
		partitions = wait_for_partitions(rk, topic, 1, deadline, stop);
		if (partitions <= 0) {
			obx_errf(errstr, errstr_size,
				 "the new state topic \"%s\" has no "
				 "partitions yet",
				 topic);
			goto out;
		}
	}
	result =
	    read_to_end(rk, topic, partitions, deadline, stop, system_id,
			database, conf->slot_name, view, errstr, errstr_size);
out:
	if (rkt)
		rd_kafka_topic_destroy(rkt);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return result;
}

typedef struct {
	bool answered;
	bool ok;
	char error[256];
} write_result_t;

static void on_state_delivery(void *ctx, void *msg_opaque, const char *topic,
			      bool ok, const char *error, int64_t now_us)
{
	write_result_t *r = ctx;
	(void)msg_opaque, (void)topic, (void)now_us;
	r->answered = true;
	r->ok = ok;
	snprintf(r->error, sizeof(r->error), "%s", ok ? "" : error);
}

obx_err_t obx_state_write(const obx_config_t *conf,
			  const obx_state_record_t *rec, int timeout_ms,
			  char *errstr, size_t errstr_size)
{
	write_result_t result = { 0 };
	char key[256];
	obx_producer_t *p = obx_producer_new(conf, on_state_delivery, &result,
					     errstr, errstr_size);
	if (!p)
		return OBX_CONFIG;
	obx_state_key(rec->system_id, rec->database, rec->slot, key,
		      sizeof(key));
	char *value = obx_state_encode(rec);
	obx_err_t err = obx_producer_send(p, conf->state_topic, key,
					  strlen(key), value, strlen(value),
					  NULL, 0, NULL, errstr, errstr_size);
	free(value);
	int64_t deadline = obx_now_us() + OBX_MS_TO_US(timeout_ms);
	while (err == OBX_OK && !result.answered && obx_now_us() < deadline)
		obx_producer_poll(p, 100);
	if (err == OBX_OK && !result.ok) {
		err = OBX_RETRY;
		obx_errf(errstr, errstr_size,
			 "could not write to the state topic \"%s\": %s",
			 conf->state_topic,
			 result.answered ? result.error
					 : "no acknowledgement in time");
	}
	obx_producer_destroy(p);
	return err;
}
