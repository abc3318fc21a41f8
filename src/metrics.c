/* metrics.c - a small registry rendered as Prometheus text. */
#include "outboxd/metrics.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* commit -> ack latency buckets, in seconds */
static const double latency_bounds[] = { 0.0005, 0.001, 0.0015, 0.002, 0.003,
					 0.004,	 0.005, 0.0075, 0.01,  0.015,
					 0.02,	 0.03,	0.05,	0.1,   0.25,
					 0.5,	 1,	2.5,	5,     10,
					 30,	 60 };
#define LATENCY_BUCKETS OBX_ARRAY_LEN(latency_bounds)

/* events per Kafka transaction (delivery.guarantee=exactly-once) */
static const double txn_events_bounds[] = { 1,	  10,	 100,	500, 1000,
					    5000, 10000, 50000, 1e5, 1e6 };
#define MAX_BUCKETS LATENCY_BUCKETS
_Static_assert(OBX_ARRAY_LEN(txn_events_bounds) <= MAX_BUCKETS,
	       "histogram_t holds at most MAX_BUCKETS bounds");

static const char *const wait_reason_names[OBX_WAIT_REASONS] = { "server",
								 "kafka" };

static const char *const bad_reason_names[OBX_BAD_REASONS] = {
	"null_column", "missing_column", "invalid_topic", "rejected_by_kafka",
	"other"
};

typedef struct {
	const double *bounds; /* NULL: latency_bounds */
	size_t nbounds;
	unsigned long long counts[MAX_BUCKETS + 1]; /* the last is +Inf */
	double sum;
	unsigned long long count;
} histogram_t;

typedef struct {
	char *topic;
	uint64_t hash; /* obx_hash_str(topic): most lookups miss */
	unsigned long long counts[2]; /* obx_topic_metric_t */
} topic_counts_t;

/* The counts one thread gathers between merges. */
struct obx_metrics_batch {
	unsigned long long received;
	topic_counts_t *topics;
	size_t ntopics;
	histogram_t from_commit, from_receive;
	double waited[OBX_WAIT_REASONS];
};

struct obx_metrics {
	pthread_mutex_t lock;
	unsigned long long received;
	topic_counts_t *topics;
	size_t ntopics;
	histogram_t from_commit, from_receive;
	double waited[OBX_WAIT_REASONS];
	unsigned long long bad[OBX_BAD_REASONS];
	unsigned long long kafka_errors;
	unsigned long long reconnects;
	unsigned long long ack_stalls;
	/* exactly-once: Kafka transactions */
	unsigned long long txns_committed, txns_aborted;
	histogram_t txn_seconds, txn_events;
	unsigned long long acked_wal_skipped;
	unsigned long long resumes_after_acked;
	bool streaming;
	bool topic_missing;
	unsigned long long topic_missing_retries;
	obx_lsn_t confirmed, wal_end;
	size_t inflight;
	double retained; /* < 0: unknown */
	int64_t last_tick_us;
};

obx_metrics_t *obx_metrics_new(void)
{
	obx_metrics_t *m = obx_xcalloc(1, sizeof(*m));
	pthread_mutex_init(&m->lock, NULL);
	m->retained = -1;
	m->last_tick_us = obx_now_us();
	m->txn_events.bounds = txn_events_bounds;
	m->txn_events.nbounds = OBX_ARRAY_LEN(txn_events_bounds);
	return m;
}

static void free_topics(topic_counts_t *topics, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(topics[i].topic);
	free(topics);
}

void obx_metrics_destroy(obx_metrics_t *m)
{
	if (!m)
		return;
	free_topics(m->topics, m->ntopics);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

#define LOCKED(m, stmt)                                                        \
	do {                                                                   \
		pthread_mutex_lock(&(m)->lock);                                \
		stmt;                                                          \
		pthread_mutex_unlock(&(m)->lock);                              \
	} while (0)

/* Finds or adds a topic's counters in an array of them. */
static topic_counts_t *find_topic(topic_counts_t **topics, size_t *n,
				  const char *topic, uint64_t hash)
{
	for (size_t i = 0; i < *n; i++)
		if ((*topics)[i].hash == hash &&
		    strcmp((*topics)[i].topic, topic) == 0)
			return &(*topics)[i];
	topic_counts_t *grown =
	    obx_xrealloc(*topics, (*n + 1) * sizeof(*grown));
	*topics = grown;
	topic_counts_t *t = &grown[(*n)++];
	memset(t, 0, sizeof(*t));
	t->hash = hash;
	t->topic = obx_xstrdup(topic);
	return t;
}

/* A histogram's bucket bounds: its own, or the latency buckets. */
static const double *bounds_of(const histogram_t *h, size_t *n)
{
	*n = h->bounds ? h->nbounds : LATENCY_BUCKETS;
	return h->bounds ? h->bounds : latency_bounds;
}

static void observe(histogram_t *h, double value)
{
	size_t n, b = 0;
	const double *bounds = bounds_of(h, &n);
	while (b < n && value > bounds[b])
		b++;
	h->counts[b]++;
	h->sum += value;
	h->count++;
}

/* Adds a batch's latency histogram and empties it. */
static void add_histogram(histogram_t *into, histogram_t *from)
{
	for (size_t b = 0; b <= LATENCY_BUCKETS; b++)
		into->counts[b] += from->counts[b];
	into->sum += from->sum;
	into->count += from->count;
	memset(from, 0, sizeof(*from));
}

obx_metrics_batch_t *obx_metrics_batch_new(void)
{
	obx_metrics_batch_t *b = obx_xcalloc(1, sizeof(*b));
	return b;
}

void obx_metrics_batch_destroy(obx_metrics_batch_t *b)
{
	if (!b)
		return;
	free_topics(b->topics, b->ntopics);
	free(b);
}

void obx_metrics_batch_received(obx_metrics_batch_t *b)
{
	b->received++;
}

void obx_metrics_batch_topic(obx_metrics_batch_t *b, const char *topic,
			     obx_topic_metric_t what)
{
	topic_counts_t *t =
	    find_topic(&b->topics, &b->ntopics, topic, obx_hash_str(topic));
	t->counts[what]++;
}

void obx_metrics_batch_latency(obx_metrics_batch_t *b, double from_commit,
			       double from_receive)
{
	observe(&b->from_commit, from_commit);
	observe(&b->from_receive, from_receive);
}

void obx_metrics_batch_wait(obx_metrics_batch_t *b, obx_wait_reason_t why,
			    double seconds)
{
	b->waited[why] += seconds;
}

void obx_metrics_merge(obx_metrics_t *m, obx_metrics_batch_t *b)
{
	pthread_mutex_lock(&m->lock);
	for (int w = 0; w < OBX_WAIT_REASONS; w++) {
		m->waited[w] += b->waited[w];
		b->waited[w] = 0;
	}
	m->received += b->received;
	b->received = 0;
	for (size_t i = 0; i < b->ntopics; i++) {
		topic_counts_t *from = &b->topics[i];
		if (!from->counts[0] && !from->counts[1])
			continue;
		topic_counts_t *into = find_topic(&m->topics, &m->ntopics,
						  from->topic, from->hash);
		for (int k = 0; k < 2; k++) {
			into->counts[k] += from->counts[k];
			from->counts[k] = 0;
		}
	}
	add_histogram(&m->from_commit, &b->from_commit);
	add_histogram(&m->from_receive, &b->from_receive);
	pthread_mutex_unlock(&m->lock);
}

void obx_metrics_bad_event(obx_metrics_t *m, obx_bad_reason_t reason)
{
	LOCKED(m, m->bad[reason < OBX_BAD_REASONS ? reason : OBX_BAD_OTHER]++);
}

void obx_metrics_set_kafka_errors(obx_metrics_t *m, unsigned long total)
{
	LOCKED(m, m->kafka_errors = total);
}

void obx_metrics_ack_stall(obx_metrics_t *m)
{
	LOCKED(m, m->ack_stalls++);
}

void obx_metrics_kafka_txn_committed(obx_metrics_t *m, double seconds,
				     size_t events)
{
	LOCKED(m, {
		m->txns_committed++;
		observe(&m->txn_seconds, seconds);
		observe(&m->txn_events, (double)events);
	});
}

void obx_metrics_kafka_txn_aborted(obx_metrics_t *m)
{
	LOCKED(m, m->txns_aborted++);
}

void obx_metrics_resume_skipped(obx_metrics_t *m, uint64_t bytes)
{
	LOCKED(m, (m->acked_wal_skipped += bytes, m->resumes_after_acked++));
}

void obx_metrics_reconnect(obx_metrics_t *m)
{
	LOCKED(m, m->reconnects++);
}

void obx_metrics_topic_missing(obx_metrics_t *m, bool missing)
{
	LOCKED(m, (m->topic_missing_retries += missing ? 1 : 0,
		   m->topic_missing = missing));
}

void obx_metrics_set_streaming(obx_metrics_t *m, bool streaming)
{
	LOCKED(m, m->streaming = streaming);
}

void obx_metrics_set_positions(obx_metrics_t *m, obx_lsn_t confirmed,
			       obx_lsn_t server_wal_end, size_t inflight)
{
	LOCKED(m, {
		m->confirmed = confirmed;
		m->wal_end = server_wal_end;
		m->inflight = inflight;
	});
}

void obx_metrics_tick(obx_metrics_t *m)
{
	int64_t now = obx_now_us();
	LOCKED(m, m->last_tick_us = now);
}

double obx_metrics_since_tick(obx_metrics_t *m)
{
	int64_t last;
	LOCKED(m, last = m->last_tick_us);
	return (double)(obx_now_us() - last) / 1e6;
}

bool obx_metrics_streaming(obx_metrics_t *m)
{
	bool s;
	LOCKED(m, s = m->streaming);
	return s;
}

void obx_metrics_set_retained(obx_metrics_t *m, double bytes)
{
	LOCKED(m, m->retained = bytes);
}

static void help(FILE *out, const char *name, const char *type,
		 const char *text)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

/* Prometheus label values escape backslash, quote and newline. */
static void label_value(FILE *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', out);
		if (*s == '\n')
			fputs("\\n", out);
		else
			fputc(*s, out);
	}
}

static void topic_counter(FILE *out, obx_metrics_t *m, const char *name,
			  obx_topic_metric_t what, const char *text)
{
	help(out, name, "counter", text);
	for (size_t i = 0; i < m->ntopics; i++) {
		fprintf(out, "%s{topic=\"", name);
		label_value(out, m->topics[i].topic);
		fprintf(out, "\"} %llu\n", m->topics[i].counts[what]);
	}
}

static void histogram(FILE *out, const char *name, const char *text,
		      const histogram_t *h)
{
	unsigned long long cumulative = 0;
	size_t n;
	const double *bounds = bounds_of(h, &n);

	help(out, name, "histogram", text);
	for (size_t b = 0; b < n; b++) {
		cumulative += h->counts[b];
		fprintf(out, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[b],
			cumulative);
	}
	cumulative += h->counts[n];
	fprintf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, cumulative);
	fprintf(out, "%s_sum %.6f\n", name, h->sum);
	fprintf(out, "%s_count %llu\n", name, h->count);
}

void obx_metrics_write(obx_metrics_t *m, FILE *out)
{
	pthread_mutex_lock(&m->lock);
	help(out, "outboxd_events_received_total", "counter",
	     "Outbox INSERTs read from the replication slot.");
	fprintf(out, "outboxd_events_received_total %llu\n", m->received);
	topic_counter(out, m, "outboxd_events_produced_total",
		      OBX_METRIC_PRODUCED,
		      "Events handed to the Kafka producer, per topic.");
	topic_counter(out, m, "outboxd_events_acked_total", OBX_METRIC_ACKED,
		      "Events acknowledged by Kafka, per topic.");
	help(out, "outboxd_bad_events_total", "counter",
	     "Outbox rows that could not become a record, per reason.");
	for (int r = 0; r < OBX_BAD_REASONS; r++)
		fprintf(out, "outboxd_bad_events_total{reason=\"%s\"} %llu\n",
			bad_reason_names[r], m->bad[r]);
	help(out, "outboxd_inflight_events", "gauge",
	     "Events produced and not yet acknowledged by Kafka.");
	fprintf(out, "outboxd_inflight_events %zu\n", m->inflight);
	help(out, "outboxd_confirmed_lsn", "gauge",
	     "The flush LSN last confirmed to the server, as a number.");
	fprintf(out, "outboxd_confirmed_lsn %llu\n",
		(unsigned long long)m->confirmed);
	help(out, "outboxd_server_wal_end_lsn", "gauge",
	     "The server's WAL end as it last reported it, as a number.");
	fprintf(out, "outboxd_server_wal_end_lsn %llu\n",
		(unsigned long long)m->wal_end);
	help(out, "outboxd_lag_bytes", "gauge",
	     "Server WAL end minus the confirmed LSN.");
	fprintf(out, "outboxd_lag_bytes %llu\n",
		(unsigned long long)(m->wal_end > m->confirmed
					 ? m->wal_end - m->confirmed
					 : 0));
	if (m->retained >= 0) {
		help(out, "outboxd_slot_retained_wal_bytes", "gauge",
		     "WAL the server keeps for this slot (from restart_lsn).");
		fprintf(out, "outboxd_slot_retained_wal_bytes %.0f\n",
			m->retained);
	}
	histogram(out, "outboxd_commit_to_ack_seconds",
		  "Time from a transaction's commit to Kafka acknowledging its "
		  "event (exactly-once: to the commit of the Kafka transaction "
		  "holding it).",
		  &m->from_commit);
	histogram(out, "outboxd_receive_to_ack_seconds",
		  "Time from a transaction reaching outboxd to Kafka "
		  "acknowledging its event (outboxd's and Kafka's share).",
		  &m->from_receive);
	help(out, "outboxd_wait_seconds_total", "counter",
	     "Time the pipeline slept, by what it waited for: the server "
	     "(nothing to read) or kafka (max.inflight.events reached).");
	for (int w = 0; w < OBX_WAIT_REASONS; w++)
		fprintf(out, "outboxd_wait_seconds_total{for=\"%s\"} %.6f\n",
			wait_reason_names[w], m->waited[w]);
	help(out, "outboxd_kafka_errors_total", "counter",
	     "Errors reported by the Kafka client (transient included).");
	fprintf(out, "outboxd_kafka_errors_total %llu\n", m->kafka_errors);
	help(out, "outboxd_reconnects_total", "counter",
	     "Reconnections to PostgreSQL after a failure.");
	fprintf(out, "outboxd_reconnects_total %llu\n", m->reconnects);
	help(out, "outboxd_kafka_ack_stalls_total", "counter",
	     "Times Kafka acknowledged nothing for 5 s while events were in "
	     "flight (each made outboxd ask for the topics' metadata again)");
	fprintf(out, "outboxd_kafka_ack_stalls_total %llu\n", m->ack_stalls);
	help(out, "outboxd_kafka_transactions_total", "counter",
	     "Kafka transactions (delivery.guarantee=exactly-once) committed, "
	     "and aborted (their events come again from the slot).");
	fprintf(out,
		"outboxd_kafka_transactions_total{result=\"committed\"} %llu\n",
		m->txns_committed);
	fprintf(out,
		"outboxd_kafka_transactions_total{result=\"aborted\"} %llu\n",
		m->txns_aborted);
	histogram(out, "outboxd_kafka_transaction_seconds",
		  "Time from a Kafka transaction's first event to its commit.",
		  &m->txn_seconds);
	histogram(out, "outboxd_kafka_transaction_events",
		  "Events (dead letters included) per committed Kafka "
		  "transaction.",
		  &m->txn_events);
	help(out, "outboxd_resume_skipped_wal_bytes_total", "counter",
	     "WAL the server was told to skip at a (re)connect because its "
	     "events were already produced (the slot's persisted position "
	     "lagged, e.g. after a server restart).");
	fprintf(out, "outboxd_resume_skipped_wal_bytes_total %llu\n",
		m->acked_wal_skipped);
	help(out, "outboxd_resumes_ahead_of_slot_total", "counter",
	     "Connects that resumed ahead of the slot's confirmed position, "
	     "after what was already produced.");
	fprintf(out, "outboxd_resumes_ahead_of_slot_total %llu\n",
		m->resumes_after_acked);
	help(out, "outboxd_kafka_topic_missing", "gauge",
	     "1 while an event waits for a topic that does not exist and "
	     "that the brokers do not create (deleted, auto-creation off).");
	fprintf(out, "outboxd_kafka_topic_missing %d\n",
		m->topic_missing ? 1 : 0);
	help(out, "outboxd_kafka_topic_missing_retries_total", "counter",
	     "Attempts to produce to a topic that did not exist.");
	fprintf(out, "outboxd_kafka_topic_missing_retries_total %llu\n",
		m->topic_missing_retries);
	help(out, "outboxd_streaming", "gauge",
	     "1 while streaming from the replication slot.");
	fprintf(out, "outboxd_streaming %d\n", m->streaming ? 1 : 0);
	pthread_mutex_unlock(&m->lock);
}
