/* heartbeat.c - heartbeat.action.query on a timer thread. */
#include "outboxd/heartbeat.h"

#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "outboxd/log.h"
#include "outboxd/pg.h"

struct obx_heartbeat {
	const obx_config_t *conf;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stopping;
};

static void run_query(obx_heartbeat_t *hb, PGconn **conn)
{
	char err[1024];

	if (*conn && PQstatus(*conn) != CONNECTION_OK) {
		PQfinish(*conn);
		*conn = NULL;
	}
	if (!*conn &&
	    !(*conn = obx_pg_connect(hb->conf, false, "outboxd-heartbeat", err,
				     sizeof(err)))) {
		obx_warn("heartbeat: %s", err);
		return;
	}
	PGresult *res = PQexec(*conn, hb->conf->heartbeat_action_query);
	ExecStatusType st = PQresultStatus(res);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		obx_warn("heartbeat: heartbeat.action.query failed: %s",
			 PQerrorMessage(*conn));
	else
		obx_debug("heartbeat: query ran");
	PQclear(res);
}

static void *heartbeat_main(void *arg)
{
	obx_heartbeat_t *hb = arg;
	PGconn *conn = NULL;

	pthread_mutex_lock(&hb->lock);
	while (!hb->stopping) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		long ms = hb->conf->heartbeat_interval_ms;
		until.tv_sec += ms / 1000;
		until.tv_nsec += (ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		int rc = 0;
		while (!hb->stopping && rc != ETIMEDOUT)
			rc = pthread_cond_timedwait(&hb->wake, &hb->lock,
						    &until);
		if (hb->stopping)
			break;
		pthread_mutex_unlock(&hb->lock);
		run_query(hb, &conn);
		pthread_mutex_lock(&hb->lock);
	}
	pthread_mutex_unlock(&hb->lock);
	PQfinish(conn);
	return NULL;
}

obx_heartbeat_t *obx_heartbeat_start(const obx_config_t *conf)
{
	if (!conf->heartbeat_action_query || conf->heartbeat_interval_ms <= 0)
		return NULL;
	obx_heartbeat_t *hb = obx_xcalloc(1, sizeof(*hb));
	hb->conf = conf;
	pthread_mutex_init(&hb->lock, NULL);
	pthread_cond_init(&hb->wake, NULL);
	if (pthread_create(&hb->thread, NULL, heartbeat_main, hb) != 0) {
		obx_error("heartbeat: could not start its thread");
		free(hb);
		return NULL;
	}
	obx_info("heartbeat: running heartbeat.action.query every %ld ms",
		 conf->heartbeat_interval_ms);
	return hb;
}

void obx_heartbeat_stop(obx_heartbeat_t *hb)
{
	if (!hb)
		return;
	pthread_mutex_lock(&hb->lock);
	hb->stopping = true;
	pthread_cond_signal(&hb->wake);
	pthread_mutex_unlock(&hb->lock);
	pthread_join(hb->thread, NULL);
	pthread_cond_destroy(&hb->wake);
	pthread_mutex_destroy(&hb->lock);
	free(hb);
}
