/* http.c - the operations endpoints on libmicrohttpd's own thread. */
#include "outboxd/http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct obx_http {
	struct MHD_Daemon *daemon;
	obx_http_sources_t src;
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status,
			     const char *type, char *body, size_t len)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, "Content-Type", type);
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result text(struct MHD_Connection *conn, unsigned status,
			    const char *msg)
{
	char *body = strdup(msg);
	if (!body)
		return MHD_NO;
	return reply(conn, status, "text/plain; charset=utf-8", body,
		     strlen(body));
}

static enum MHD_Result serve_metrics(obx_http_t *h, struct MHD_Connection *conn)
{
	char *body = NULL;
	size_t len = 0;

	if (h->src.retained_wal_bytes)
		obx_metrics_set_retained(h->src.metrics,
					 h->src.retained_wal_bytes(h->src.ctx));
	FILE *out = open_memstream(&body, &len);
	if (!out)
		return MHD_NO;
	obx_metrics_write(h->src.metrics, out);
	fclose(out);
	return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4", body, len);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn,
			      const char *url, const char *method,
			      const char *version, const char *upload_data,
			      size_t *upload_data_size, void **con_cls)
{
	obx_http_t *h = cls;
	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)con_cls;

	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only\n");
	if (strcmp(url, "/metrics") == 0)
		return serve_metrics(h, conn);
	if (strcmp(url, "/healthz") == 0) {
		bool alive =
		    obx_metrics_since_tick(h->src.metrics) < h->src.liveness_s;
		return text(conn,
			    alive ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
			    alive ? "ok\n" : "the process loop is stuck\n");
	}
	if (strcmp(url, "/readyz") == 0) {
		if (!obx_metrics_streaming(h->src.metrics))
			return text(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
				    "not streaming from the replication "
				    "slot\n");
		if (h->src.kafka_reachable &&
		    !h->src.kafka_reachable(h->src.ctx))
			return text(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
				    "kafka is not reachable\n");
		return text(conn, MHD_HTTP_OK, "ready\n");
	}
	return text(conn, MHD_HTTP_NOT_FOUND,
		    "not found: try /metrics, /healthz or /readyz\n");
}

/* Parses "host:port", ":port" or "[v6]:port". */
static int parse_listen(const char *listen, struct sockaddr_storage *addr,
			socklen_t *len)
{
	char host[128] = "";
	const char *colon = strrchr(listen, ':');
	if (!colon || colon - listen >= (long)sizeof(host))
		return -1;
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port < 0 || port > 65535)
		return -1;
	memcpy(host, listen, (size_t)(colon - listen));
	memset(addr, 0, sizeof(*addr));
	if (host[0] == '[') {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)addr;
		host[strlen(host) - 1] = '\0';
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*a6);
		return inet_pton(AF_INET6, host + 1, &a6->sin6_addr) == 1 ? 0
									  : -1;
	}
	struct sockaddr_in *a4 = (struct sockaddr_in *)addr;
	a4->sin_family = AF_INET;
	a4->sin_port = htons((uint16_t)port);
	*len = sizeof(*a4);
	if (!host[0]) {
		a4->sin_addr.s_addr = htonl(INADDR_ANY);
		return 0;
	}
	return inet_pton(AF_INET, host, &a4->sin_addr) == 1 ? 0 : -1;
}

obx_http_t *obx_http_start(const char *listen, const obx_http_sources_t *src,
			   char *errstr, size_t errstr_size)
{
	struct sockaddr_storage addr;
	socklen_t len;
	obx_http_t *h;

	if (parse_listen(listen, &addr, &len) < 0) {
		obx_errf(errstr, errstr_size,
			 "http.listen \"%s\" is not host:port (e.g. "
			 "0.0.0.0:8080, [::]:8080)",
			 listen);
		return NULL;
	}
	h = obx_xcalloc(1, sizeof(*h));
	h->src = *src;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD;
	if (addr.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	h->daemon = MHD_start_daemon(
	    flags, 0, NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR,
	    (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned)10, MHD_OPTION_END);
	if (!h->daemon) {
		obx_errf(errstr, errstr_size,
			 "could not listen on %s (http.listen): address in "
			 "use or not available",
			 listen);
		free(h);
		return NULL;
	}
	return h;
}

void obx_http_stop(obx_http_t *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->daemon);
	free(h);
}
