/*
 * outboxd-mock-kafka - librdkafka's mock Kafka cluster as a process, driven
 * over stdin, for the integration tests and the demo.
 *
 *   outboxd-mock-kafka [-b BROKERS]
 *
 * Prints the bootstrap servers as the first line on stdout, then reads
 * commands, one per line, answering "ok" or "error: ..." to each:
 *
 *   down ID             take broker ID down (connections refused/closed)
 *   up ID               bring it back
 *   errors APIKEY N ERR push N errors ERR (a Kafka error code) for requests
 *                       of APIKEY (Produce is 0)
 *   create TOPIC P      create a topic with P partitions
 *
 * Stops at end of input (so it never outlives a test that dies), SIGINT or
 * SIGTERM.  Topics that are not created are auto-created on first use with
 * librdkafka's mock default of 4 partitions.  outboxd's state topic
 * (outboxd.state) exists from the start: the mock cluster does not answer
 * CreateTopics, with which outboxd creates it compacted.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static const char *run_command(rd_kafka_mock_cluster_t *mc, char *line)
{
	char *verb = strtok(line, " \t\n");
	char *a = strtok(NULL, " \t\n");
	char *b = strtok(NULL, " \t\n");
	char *c = strtok(NULL, " \t\n");
	rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

	if (!verb)
		return "error: empty command";
	if (strcmp(verb, "down") == 0 && a)
		err = rd_kafka_mock_broker_set_down(mc, atoi(a));
	else if (strcmp(verb, "up") == 0 && a)
		err = rd_kafka_mock_broker_set_up(mc, atoi(a));
	else if (strcmp(verb, "errors") == 0 && a && b && c) {
		int n = atoi(b);
		rd_kafka_resp_err_t *errs = calloc((size_t)n, sizeof(*errs));
		for (int i = 0; i < n; i++)
			errs[i] = (rd_kafka_resp_err_t)atoi(c);
		rd_kafka_mock_push_request_errors_array(mc, (int16_t)atoi(a),
							(size_t)n, errs);
		free(errs);
	} else if (strcmp(verb, "create") == 0 && a && b)
		err = rd_kafka_mock_topic_create(mc, a, atoi(b), 1);
	else
		return "error: unknown command";
	return err ? rd_kafka_err2str(err) : "ok";
}

int main(int argc, char **argv)
{
	int brokers = 1, opt;
	char errstr[512], num[16];

	while ((opt = getopt(argc, argv, "b:")) != -1) {
		if (opt != 'b')
			return 2;
		brokers = atoi(optarg);
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);

	/* the mock cluster lives inside an rd_kafka_t of its own; its client
	 * side is unused, so its logs (connection refused while a test holds
	 * the brokers down) are noise */
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	snprintf(num, sizeof(num), "%d", brokers);
	if (rd_kafka_conf_set(conf, "test.mock.num.brokers", num, errstr,
			      sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr))) {
		fprintf(stderr, "mock-kafka: %s\n", errstr);
		return 1;
	}
	rd_kafka_t *rk =
	    rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!rk) {
		fprintf(stderr, "mock-kafka: %s\n", errstr);
		return 1;
	}
	rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(rk);
	rd_kafka_mock_topic_create(mc, "outboxd.state", 1, 1);

	printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
	fflush(stdout);

	char *line = NULL;
	size_t cap = 0;
	while (!stop && getline(&line, &cap, stdin) != -1) {
		printf("%s\n", run_command(mc, line));
		fflush(stdout);
	}
	free(line);
	rd_kafka_destroy(rk);
	return 0;
}
