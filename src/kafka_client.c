/* kafka_client.c - one librdkafka configuration for every outboxd client. */
#include "outboxd/kafka_client.h"

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

void obx_kafka_conf_value(const rd_kafka_conf_t *kconf, const char *key, char *value,
			  size_t value_size)
{
	size_t size = value_size;
	if (rd_kafka_conf_get(kconf, key, value, &size) != RD_KAFKA_CONF_OK)
		*value = '\0';
}
