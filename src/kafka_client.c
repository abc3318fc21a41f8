/* kafka_client.c - one librdkafka configuration for every outboxd client. */
#include "outboxd/kafka_client.h"

#include <stdlib.h>
#include <string.h>

#include "outboxd/log.h"

static void log_cb(const rd_kafka_t *rk, int level, const char *facility,
		   const char *buf)
{
	(void)rk;
	/* a consumer given producer settings (acks, linger.ms) says so for
	 * each of them: the same kafka.* keys serve every client */
	if (strcmp(facility, "CONFWARN") == 0)
		return;
	/* syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug */
	obx_log_level_t ours = level <= 3   ? OBX_LOG_ERROR
			       : level == 4 ? OBX_LOG_WARN
			       : level <= 6 ? OBX_LOG_INFO
					    : OBX_LOG_DEBUG;
	obx_log(ours, "kafka: %s: %s", facility, buf);
}

/*
 * librdkafka before 2.6.1 sends a SCRAM client proof with the client nonce
 * twice; Kafka 4.0 and later check the nonce strictly and refuse it as
 * invalid credentials (confluentinc/librdkafka#4895).  Debian 12 ships
 * 2.0.2, so say so before the operator hunts for a wrong password.
 */
void obx_kafka_warn_scram(rd_kafka_conf_t *kconf)
{
	char mechanism[64];
	obx_kafka_conf_value(kconf, "sasl.mechanisms", mechanism,
			     sizeof(mechanism));
	if (rd_kafka_version() >= 0x020601ff ||
	    strncmp(mechanism, "SCRAM", 5) != 0)
		return;
	obx_warn("kafka: librdkafka %s cannot authenticate with %s to Kafka "
		 "4.0 or later brokers (they refuse its SCRAM proof as "
		 "\"invalid credentials\"; fixed in librdkafka 2.6.1): against "
		 "those, use kafka.sasl.mechanism=PLAIN over SASL_SSL or a "
		 "newer librdkafka",
		 rd_kafka_version_str(), mechanism);
}

rd_kafka_conf_t *obx_kafka_conf_new(const obx_config_t *conf, char *errstr,
				    size_t errstr_size)
{
	rd_kafka_conf_t *kconf = rd_kafka_conf_new();
	char err[512];
	for (size_t i = 0; i < conf->nkafka; i++) {
		if (rd_kafka_conf_set(kconf, conf->kafka[i].key,
				      conf->kafka[i].value, err,
				      sizeof(err)) != RD_KAFKA_CONF_OK) {
			obx_errf(errstr, errstr_size, "kafka.%s: %s",
				 conf->kafka[i].key, err);
			rd_kafka_conf_destroy(kconf);
			return NULL;
		}
	}
	rd_kafka_conf_set_log_cb(kconf, log_cb);
	return kconf;
}

obx_topic_verdict_t obx_kafka_create_topic(rd_kafka_t *rk, const char *topic,
					   int partitions, bool validate_only,
					   const char *const *configs,
					   int timeout_ms, char *reason,
					   size_t reason_size)
{
	char err[256];
	obx_topic_verdict_t verdict = OBX_TOPIC_UNKNOWN;
	/* replication factor -1: default.replication.factor (KIP-464) */
	rd_kafka_NewTopic_t *nt =
	    rd_kafka_NewTopic_new(topic, partitions, -1, err, sizeof(err));
	rd_kafka_AdminOptions_t *options =
	    rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
	rd_kafka_queue_t *queue = rd_kafka_queue_new(rk);
	/* each of these fails only for a programming error */
	if (!nt || !options || !queue ||
	    rd_kafka_AdminOptions_set_validate_only(options, validate_only, err,
						    sizeof(err)) ||
	    rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, err,
						      sizeof(err)))
		abort();
	for (size_t i = 0; configs && configs[i]; i += 2)
		if (rd_kafka_NewTopic_set_config(nt, configs[i],
						 configs[i + 1]))
			abort();
	obx_errf(reason, reason_size, "no answer within %d ms", timeout_ms);
	rd_kafka_CreateTopics(rk, &nt, 1, options, queue);
	rd_kafka_event_t *event = rd_kafka_queue_poll(queue, timeout_ms + 500);
	const rd_kafka_CreateTopics_result_t *res =
	    event ? rd_kafka_event_CreateTopics_result(event) : NULL;
	size_t n = 0;
	const rd_kafka_topic_result_t **topics =
	    res ? rd_kafka_CreateTopics_result_topics(res, &n) : NULL;
	if (n == 1) {
		rd_kafka_resp_err_t e = rd_kafka_topic_result_error(topics[0]);
		const char *why = rd_kafka_topic_result_error_string(topics[0]);
		obx_errf(reason, reason_size, "%s",
			 why ? why : rd_kafka_err2str(e));
		verdict =
		    e == RD_KAFKA_RESP_ERR_NO_ERROR ? OBX_TOPIC_CREATABLE
		    : e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS
			? OBX_TOPIC_EXISTS
		    : e == RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION ? OBX_TOPIC_REFUSED
		    : e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
			    e == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED
			? OBX_TOPIC_DENIED
			: OBX_TOPIC_UNKNOWN;
	}
	if (event)
		rd_kafka_event_destroy(event);
	rd_kafka_queue_destroy(queue);
	rd_kafka_AdminOptions_destroy(options);
	rd_kafka_NewTopic_destroy(nt);
	return verdict;
}

void obx_kafka_conf_value(const rd_kafka_conf_t *kconf, const char *key,
			  char *value, size_t value_size)
{
	size_t size = value_size;
	if (rd_kafka_conf_get(kconf, key, value, &size) != RD_KAFKA_CONF_OK)
		*value = '\0';
}
