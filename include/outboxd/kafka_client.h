/*
 * kafka_client.h - librdkafka's configuration from the kafka.* keys, shared
 * by every Kafka client outboxd creates (the producer, the `check` probe, the
 * state topic's reader), so all of them reach the brokers the same way (TLS,
 * SASL, timeouts) and log through outboxd's log.
 *
 * Ownership: the returned configuration belongs to the caller until
 * rd_kafka_new() takes it.  Thread-safe (no shared state).
 */
#ifndef OUTBOXD_KAFKA_CLIENT_H
#define OUTBOXD_KAFKA_CLIENT_H

#include <librdkafka/rdkafka.h>

#include "outboxd/config.h"
#include "outboxd/producer.h"

/*
 * A new configuration holding every kafka.* key, with outboxd's log
 * callback; NULL, with the key and librdkafka's reason in errstr, when
 * librdkafka refuses one.
 */
rd_kafka_conf_t *obx_kafka_conf_new(const obx_config_t *conf, char *errstr,
				    size_t errstr_size);

/* Warns when SASL/SCRAM is set and the linked librdkafka cannot
 * authenticate with it to Kafka 4 brokers; once per process start, from the
 * producer. */
void obx_kafka_warn_scram(rd_kafka_conf_t *kconf);

/* The value of one librdkafka setting in `kconf` (its default when unset),
 * or "" when librdkafka has no such key. */
void obx_kafka_conf_value(const rd_kafka_conf_t *kconf, const char *key,
			  char *value, size_t value_size);

/*
 * CreateTopics for one topic through any client handle, waiting up to
 * timeout_ms for the brokers' verdict (OBX_TOPIC_CREATABLE: created, or with
 * validate_only, would be); their text goes to `reason`.  partitions -1 and
 * the replication factor are the cluster's defaults; `configs` (NULL, or
 * NULL-terminated name/value pairs) are the topic's settings.  Not on
 * librdkafka's threads.
 */
obx_topic_verdict_t obx_kafka_create_topic(rd_kafka_t *rk, const char *topic,
					   int partitions, bool validate_only,
					   const char *const *configs,
					   int timeout_ms, char *reason,
					   size_t reason_size);

#endif
