/*
 * main.c - argv, signals, exit codes and the outer reconnect loop.
 * Only this file exits.  Exit codes (SPEC section 7): 0 clean stop, 1 runtime
 * failure, 2 usage or configuration error, 3 bad data or a lost slot.
 */
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "outboxd/commands.h"
#include "outboxd/config.h"
#include "outboxd/envelope.h"
#include "outboxd/heartbeat.h"
#include "outboxd/http.h"
#include "outboxd/probes.h"
#include "outboxd/log.h"
#include "outboxd/pg.h"
#include "outboxd/metrics.h"
#include "outboxd/pipeline.h"
#include "outboxd/producer.h"

#ifndef OUTBOXD_VERSION
#define OUTBOXD_VERSION "unknown"
#endif

#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS	 30000
/* A connection that streamed this long resets the backoff. */
#define BACKOFF_RESET_US (30 * 1000000LL)
/* /healthz fails when the loop has not ticked for this long. */
#define LIVENESS_S 120.0

extern char **environ;

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: outboxd run    [-c FILE]   stream outbox events to Kafka "
	    "until SIGTERM/SIGINT\n"
	    "       outboxd check  [-c FILE]   preflight: PASS/FAIL per item\n"
	    "       outboxd slot status [-c FILE]\n"
	    "       outboxd slot create [-c FILE] [--yes]\n"
	    "       outboxd slot drop   [-c FILE] [--yes]\n"
	    "       outboxd slot reset  [-c FILE] (--to-current | --to-lsn "
	    "LSN) [--yes]\n"
	    "       outboxd schema             print the Avro envelope "
	    "schema\n"
	    "       outboxd config-reference   print the configuration "
	    "reference (Markdown)\n"
	    "       outboxd version\n");
}

/* Options after the subcommand words; `first` is argv's index of them. */
static obx_config_t *parse_options(int argc, char **argv, int first,
				   obx_slot_options_t *slot)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "yes", no_argument, NULL, 'y' },
		{ "to-current", no_argument, NULL, 'C' },
		{ "to-lsn", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *file = NULL;
	char err[1024];
	int opt;

	optind = first;
	while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			file = optarg;
			break;
		case 'y':
		case 'C':
		case 'L':
			if (!slot) {
				usage(stderr);
				exit(OBX_EXIT_USAGE);
			}
			if (opt == 'y')
				slot->yes = true;
			else if (opt == 'C')
				slot->to_current = true;
			else if (obx_lsn_parse(optarg, strlen(optarg),
					       &slot->to_lsn) < 0) {
				fprintf(stderr,
					"outboxd: --to-lsn \"%s\" is not an "
					"LSN like 0/16B3748\n",
					optarg);
				exit(OBX_EXIT_USAGE);
			} else
				slot->have_lsn = true;
			break;
		case 'h':
			usage(stdout);
			exit(OBX_EXIT_CLEAN);
		default:
			usage(stderr);
			exit(OBX_EXIT_USAGE);
		}
	}
	if (optind != argc) {
		usage(stderr);
		exit(OBX_EXIT_USAGE);
	}
	obx_config_t *conf = obx_config_new();
	if ((file &&
	     obx_config_load_file(conf, file, err, sizeof(err)) != OBX_OK) ||
	    obx_config_load_env(conf, environ, err, sizeof(err)) != OBX_OK ||
	    obx_config_validate(conf, err, sizeof(err)) != OBX_OK) {
		obx_error("configuration: %s", err);
		obx_config_destroy(conf);
		exit(OBX_EXIT_USAGE);
	}
	obx_log_setup((obx_log_level_t)conf->log_level,
		      (obx_log_format_t)conf->log_format);
	return conf;
}

static void install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	/* no SA_RESTART: poll() must return so the loop sees the flag */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* Full jitter in [delay/2, delay], so a fleet does not retry in step. */
static long jittered(long delay_ms)
{
	return delay_ms / 2 + (long)(rand() % (delay_ms / 2 + 1));
}

/* Waits delay_ms, serving Kafka deliveries meanwhile; false if stopped. */
static bool backoff_wait(obx_pipeline_t *p, obx_metrics_t *m, long delay_ms)
{
	int64_t deadline = obx_now_us() + OBX_MS_TO_US(delay_ms);
	char err[512];

	while (!stop_requested && obx_now_us() < deadline) {
		obx_metrics_tick(m);
		if (obx_pipeline_drain(p, 100, err, sizeof(err)) == OBX_FATAL)
			return true; /* the next run reports it */
		struct timespec nap = { 0, 50 * 1000000L };
		nanosleep(&nap, NULL);
	}
	return !stop_requested;
}

static int cmd_run(int argc, char **argv)
{
	obx_config_t *conf = parse_options(argc, argv, 2, NULL);
	char err[2048], url[1024];
	obx_err_t rc;

	obx_pg_redact_conninfo(conf->database_url, url, sizeof(url));
	obx_info("outboxd %s starting: database %s, slot \"%s\", plugin %s",
		 OUTBOXD_VERSION, url, conf->slot_name,
		 obx_config_plugin(conf));
	if (obx_producer_check_durability(conf, err, sizeof(err)) != OBX_OK) {
		obx_error("%s", err);
		obx_config_destroy(conf);
		return OBX_EXIT_USAGE;
	}
	obx_metrics_t *metrics = obx_metrics_new();
	obx_pipeline_t *p = obx_pipeline_new(conf, metrics, err, sizeof(err));
	if (!p) {
		obx_error("%s", err);
		obx_metrics_destroy(metrics);
		obx_config_destroy(conf);
		return OBX_EXIT_RUNTIME;
	}
	obx_probes_t *probes = obx_probes_new(conf, p);
	obx_http_t *http = NULL;
	if (conf->http_listen) {
		obx_http_sources_t src =
		    obx_probes_sources(probes, metrics, LIVENESS_S);
		http =
		    obx_http_start(conf->http_listen, &src, err, sizeof(err));
		if (!http) {
			obx_error("%s", err);
			obx_probes_destroy(probes);
			obx_pipeline_destroy(p);
			obx_metrics_destroy(metrics);
			obx_config_destroy(conf);
			return OBX_EXIT_USAGE;
		}
		obx_info("serving /metrics, /healthz and /readyz on %s",
			 conf->http_listen);
	}
	obx_heartbeat_t *heartbeat = obx_heartbeat_start(conf);
	install_signals();
	srand((unsigned)(getpid() ^ time(NULL)));

	long backoff = BACKOFF_FIRST_MS;
	for (;;) {
		int64_t started = obx_now_us();
		rc = obx_pipeline_run(p, &stop_requested, err, sizeof(err));
		if (rc != OBX_RETRY)
			break;
		if (obx_now_us() - started > BACKOFF_RESET_US)
			backoff = BACKOFF_FIRST_MS;
		long delay = jittered(backoff);
		if (stop_requested)
			obx_warn("%s", err);
		else
			obx_warn("%s; reconnecting in %ld ms", err, delay);
		if (stop_requested || !backoff_wait(p, metrics, delay)) {
			/* stopped while disconnected: drain first */
			rc =
			    obx_pipeline_stop_disconnected(p, err, sizeof(err));
			break;
		}
		backoff =
		    backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
	if (rc != OBX_OK)
		obx_error("%s", err);
	obx_heartbeat_stop(heartbeat);
	obx_http_stop(http); /* before the pipeline its callbacks use */
	obx_probes_destroy(probes);
	obx_pipeline_destroy(p);
	obx_metrics_destroy(metrics);
	obx_config_destroy(conf);
	return obx_exit_code(rc);
}

static int cmd_slot(int argc, char **argv)
{
	obx_slot_options_t opts = { .interactive = isatty(STDIN_FILENO) };
	if (argc < 3) {
		usage(stderr);
		return OBX_EXIT_USAGE;
	}
	const char *action = argv[2];
	obx_config_t *conf = parse_options(argc, argv, 3, &opts);
	int rc;

	if (strcmp(action, "status") == 0) {
		rc = obx_cmd_slot_status(conf);
	} else if (strcmp(action, "create") == 0) {
		rc = obx_cmd_slot_create(conf, &opts);
	} else if (strcmp(action, "drop") == 0) {
		rc = obx_cmd_slot_drop(conf, &opts);
	} else if (strcmp(action, "reset") == 0) {
		if (opts.to_current == opts.have_lsn) {
			fprintf(stderr, "outboxd: slot reset needs one of "
					"--to-current or --to-lsn LSN\n");
			rc = OBX_EXIT_USAGE;
		} else {
			rc = obx_cmd_slot_reset(conf, &opts);
		}
	} else {
		fprintf(stderr, "outboxd: unknown slot action \"%s\"\n",
			action);
		usage(stderr);
		rc = OBX_EXIT_USAGE;
	}
	obx_config_destroy(conf);
	return rc;
}

static int cmd_check(int argc, char **argv)
{
	obx_config_t *conf = parse_options(argc, argv, 2, NULL);
	int rc = obx_cmd_check(conf);
	obx_config_destroy(conf);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return OBX_EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "run") == 0)
		return cmd_run(argc, argv);
	if (strcmp(cmd, "check") == 0)
		return cmd_check(argc, argv);
	if (strcmp(cmd, "slot") == 0)
		return cmd_slot(argc, argv);
	if (strcmp(cmd, "schema") == 0) {
		fputs(obx_envelope_schema_json(), stdout);
		return OBX_EXIT_CLEAN;
	}
	if (strcmp(cmd, "config-reference") == 0) {
		obx_config_write_reference(stdout);
		return OBX_EXIT_CLEAN;
	}
	if (strcmp(cmd, "version") == 0) {
		printf("outboxd %s\n", OUTBOXD_VERSION);
		return OBX_EXIT_CLEAN;
	}
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 ||
	    strcmp(cmd, "help") == 0) {
		usage(stdout);
		return OBX_EXIT_CLEAN;
	}
	fprintf(stderr, "outboxd: unknown command \"%s\"\n", cmd);
	usage(stderr);
	return OBX_EXIT_USAGE;
}
