/* registry.c - see include/outboxd/registry.h */
#include "outboxd/registry.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "outboxd/log.h"
#include "outboxd/name_map.h"

/* An answer larger than this is no registry's: the request fails. */
#define MAX_ANSWER_BYTES (1 << 20)
/* The registry's message as quoted in errors. */
#define MAX_QUOTE 300

/* A subject whose schema id is known. */
typedef struct {
	uint32_t id;
} known_subject_t;

struct obx_registry {
	char **urls; /* without a trailing '/' */
	size_t nurls;
	size_t current; /* the URL that answered last */
	CURL *curl;
	char curl_error[CURL_ERROR_SIZE]; /* curl's CURLOPT_ERRORBUFFER */
	struct curl_slist *headers;
	char *body; /* {"schema": "<the schema as text>"} */
	char *record_name;
	obx_subject_strategy_t strategy;
	bool auto_register;
	obx_name_map_t *subjects; /* subject -> known_subject_t (owned) */
	obx_name_map_t *topics;	  /* topic -> its subject's entry */
};

typedef struct {
	char *data;
	size_t len;
} answer_t;

static size_t collect_answer(char *ptr, size_t size, size_t nmemb, void *ud)
{
	answer_t *a = ud;
	size_t n = size * nmemb;
	if (a->len + n > MAX_ANSWER_BYTES)
		return 0; /* makes curl fail the transfer */
	a->data = obx_xrealloc(a->data, a->len + n + 1);
	memcpy(a->data + a->len, ptr, n);
	a->len += n;
	a->data[a->len] = '\0';
	return n;
}

/* The registry's own message in an error answer ({"error_code": 40901,
 * "message": "..."}), else the start of the answer as it came. */
static void quote_answer(const answer_t *a, char *out, size_t out_size)
{
	json_t *doc = a->data ? json_loads(a->data, 0, NULL) : NULL;
	const char *message =
	    json_string_value(json_object_get(doc, "message"));
	if (message)
		obx_errf(out, out_size, "%.*s", MAX_QUOTE, message);
	else if (a->data)
		obx_errf(out, out_size, "%.*s", MAX_QUOTE, a->data);
	else
		obx_errf(out, out_size, "(an empty answer)");
	json_decref(doc);
}

static bool transient_status(long status)
{
	return status >= 500 || status == 408 || status == 429;
}

/*
 * One request, to each URL in turn (starting with the one that answered
 * last) until one gives an answer that is not a transient failure.  Returns
 * its HTTP status with the answer in *a and its URL in *url; 0 when none
 * did, with the last reason in why.
 */
static long call(obx_registry_t *r, const char *path, const char *body,
		 answer_t *a, const char **url, char *why, size_t why_size)
{
	char *curl_error = r->curl_error;
	for (size_t tried = 0; tried < r->nurls; tried++) {
		size_t i = (r->current + tried) % r->nurls;
		size_t n = strlen(r->urls[i]) + strlen(path) + 1;
		char *full = obx_xmalloc(n);
		snprintf(full, n, "%s%s", r->urls[i], path);
		free(a->data);
		a->data = NULL;
		a->len = 0;
		curl_error[0] = '\0';
		curl_easy_setopt(r->curl, CURLOPT_URL, full);
		curl_easy_setopt(r->curl, CURLOPT_WRITEDATA, a);
		if (body) {
			curl_easy_setopt(r->curl, CURLOPT_POSTFIELDS, body);
		} else {
			curl_easy_setopt(r->curl, CURLOPT_HTTPGET, 1L);
		}
		CURLcode rc = curl_easy_perform(r->curl);
		free(full);
		long status = 0;
		if (rc == CURLE_OK)
			curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE,
					  &status);
		*url = r->urls[i];
		if (rc != CURLE_OK) {
			obx_errf(why, why_size, "%s: %s", r->urls[i],
				 *curl_error ? curl_error
					     : curl_easy_strerror(rc));
		} else if (transient_status(status)) {
			char quote[MAX_QUOTE + 8];
			quote_answer(a, quote, sizeof(quote));
			obx_errf(why, why_size, "%s answered HTTP %ld: %s",
				 r->urls[i], status, quote);
		} else {
			r->current = i;
			return status;
		}
		if (r->nurls > 1)
			obx_debug("schema registry: %s; trying the next URL",
				  why);
	}
	return 0;
}

static char *record_full_name(const char *schema_json, char *errstr,
			      size_t errstr_size)
{
	json_error_t jerr;
	json_t *schema = json_loads(schema_json, 0, &jerr);
	const char *name = json_string_value(json_object_get(schema, "name"));
	const char *space =
	    json_string_value(json_object_get(schema, "namespace"));
	char *full = NULL;
	if (!name) {
		obx_errf(errstr, errstr_size,
			 "the envelope schema is no named record: %s",
			 schema ? "no \"name\"" : jerr.text);
	} else if (space && *space && !strchr(name, '.')) {
		size_t n = strlen(space) + strlen(name) + 2;
		full = obx_xmalloc(n);
		snprintf(full, n, "%s.%s", space, name);
	} else {
		full = obx_xstrdup(name);
	}
	json_decref(schema);
	return full;
}

static void split_urls(obx_registry_t *r, const char *list)
{
	char *copy = obx_xstrdup(list);
	for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ' || *tok == '\t')
			tok++;
		size_t n = strlen(tok);
		while (n && (tok[n - 1] == ' ' || tok[n - 1] == '\t' ||
			     tok[n - 1] == '/'))
			n--;
		if (!n)
			continue;
		r->urls =
		    obx_xrealloc(r->urls, (r->nurls + 1) * sizeof(char *));
		r->urls[r->nurls++] = obx_xstrndup(tok, n);
	}
	free(copy);
}

obx_registry_t *obx_registry_new(const obx_config_t *conf,
				 const char *schema_json, char *errstr,
				 size_t errstr_size)
{
	obx_registry_t *r = obx_xcalloc(1, sizeof(*r));
	r->subjects = obx_name_map_new();
	r->topics = obx_name_map_new();
	r->strategy = conf->subject_strategy;
	r->auto_register = conf->auto_register_schemas;
	if (conf->schema_registry_url)
		split_urls(r, conf->schema_registry_url);
	if (!r->nurls) {
		obx_errf(errstr, errstr_size,
			 "schema.registry.url names no registry");
		obx_registry_destroy(r);
		return NULL;
	}
	if (!(r->record_name =
		  record_full_name(schema_json, errstr, errstr_size))) {
		obx_registry_destroy(r);
		return NULL;
	}
	json_t *body = json_pack("{s:s}", "schema", schema_json);
	r->body = obx_xnonnull(json_dumps(body, JSON_COMPACT));
	json_decref(body);

	/* thread-safe from libcurl 7.84 on; later calls only count */
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (!(r->curl = curl_easy_init())) {
		obx_errf(errstr, errstr_size, "libcurl could not start");
		obx_registry_destroy(r);
		return NULL;
	}
	r->headers = curl_slist_append(
	    NULL, "Content-Type: application/vnd.schemaregistry.v1+json");
	r->headers = curl_slist_append(
	    r->headers,
	    "Accept: application/vnd.schemaregistry.v1+json, application/json");
	CURL *c = r->curl;
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->curl_error);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect_answer);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* other threads run */
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
			 conf->schema_registry_timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
			 conf->schema_registry_timeout_ms);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_USERAGENT, "outboxd");
	if (conf->schema_registry_user_info) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(c, CURLOPT_USERPWD,
				 conf->schema_registry_user_info);
	}
	if (conf->schema_registry_ca_location)
		curl_easy_setopt(c, CURLOPT_CAINFO,
				 conf->schema_registry_ca_location);
	if (conf->schema_registry_certificate_location)
		curl_easy_setopt(c, CURLOPT_SSLCERT,
				 conf->schema_registry_certificate_location);
	if (conf->schema_registry_key_location)
		curl_easy_setopt(c, CURLOPT_SSLKEY,
				 conf->schema_registry_key_location);
	return r;
}

void obx_registry_destroy(obx_registry_t *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nurls; i++)
		free(r->urls[i]);
	free(r->urls);
	obx_name_map_destroy(r->topics, NULL);
	obx_name_map_destroy(r->subjects, free);
	if (r->curl)
		curl_easy_cleanup(r->curl);
	curl_slist_free_all(r->headers);
	free(r->body);
	free(r->record_name);
	free(r);
}

void obx_registry_subject(const obx_registry_t *r, const char *topic, char *out,
			  size_t out_size)
{
	switch (r->strategy) {
	case OBX_SUBJECT_TOPIC:
		snprintf(out, out_size, "%s-value", topic);
		break;
	case OBX_SUBJECT_RECORD:
		snprintf(out, out_size, "%s", r->record_name);
		break;
	case OBX_SUBJECT_TOPIC_RECORD:
		snprintf(out, out_size, "%s-%s", topic, r->record_name);
		break;
	}
}

/* "/<prefix><subject, URL-escaped><suffix>" */
static char *subject_path(obx_registry_t *r, const char *prefix,
			  const char *subject, const char *suffix)
{
	char *escaped = curl_easy_escape(r->curl, subject, 0);
	size_t n = strlen(prefix) + strlen(escaped) + strlen(suffix) + 1;
	char *path = obx_xmalloc(n);
	snprintf(path, n, "%s%s%s", prefix, escaped, suffix);
	curl_free(escaped);
	return path;
}

/* The error of an answer that is no id, for subject (see registry.h). */
static obx_err_t refused(const char *subject, const char *url, long status,
			 const answer_t *a, char *errstr, size_t errstr_size)
{
	char quote[MAX_QUOTE + 8];
	quote_answer(a, quote, sizeof(quote));
	if (status == 409)
		obx_errf(errstr, errstr_size,
			 "the schema registry at %s refuses the envelope "
			 "schema under subject \"%s\" (HTTP 409: its "
			 "compatibility rules): %s",
			 url, subject, quote);
	else if (status == 401 || status == 403)
		obx_errf(errstr, errstr_size,
			 "the schema registry at %s refuses outboxd's "
			 "credentials (HTTP %ld) for subject \"%s\": %s; see "
			 "schema.registry.basic.auth.user.info",
			 url, status, subject, quote);
	else if (status == 404)
		obx_errf(errstr, errstr_size,
			 "the schema registry at %s has no envelope schema "
			 "under subject \"%s\" and auto.register.schemas is "
			 "false: register it (schemas/envelope.avsc) or set "
			 "auto.register.schemas=true (%s)",
			 url, subject, quote);
	else
		obx_errf(errstr, errstr_size,
			 "the schema registry at %s answered HTTP %ld for "
			 "subject \"%s\": %s",
			 url, status, subject, quote);
	return OBX_FATAL;
}

/* Registers (or looks up) the schema under subject. */
static obx_err_t ask_id(obx_registry_t *r, const char *subject, uint32_t *id,
			char *errstr, size_t errstr_size)
{
	char *path = subject_path(r, "/subjects/", subject,
				  r->auto_register ? "/versions" : "");
	answer_t a = { 0 };
	const char *url = NULL;
	char why[512];
	long status = call(r, path, r->body, &a, &url, why, sizeof(why));
	free(path);
	obx_err_t err = OBX_OK;
	if (!status) {
		obx_errf(errstr, errstr_size,
			 "the schema registry did not give an id for subject "
			 "\"%s\": %s",
			 subject, why);
		err = OBX_RETRY;
	} else if (status != 200) {
		err = refused(subject, url, status, &a, errstr, errstr_size);
	} else {
		json_t *doc = json_loads(a.data ? a.data : "", 0, NULL);
		json_t *value = json_object_get(doc, "id");
		json_int_t n =
		    json_is_integer(value) ? json_integer_value(value) : -1;
		json_decref(doc);
		if (n < 0 || n > INT32_MAX) {
			char quote[MAX_QUOTE + 8];
			quote_answer(&a, quote, sizeof(quote));
			obx_errf(errstr, errstr_size,
				 "the schema registry at %s answered subject "
				 "\"%s\" without a schema id: %s",
				 url, subject, quote);
			err = OBX_FATAL;
		} else {
			*id = (uint32_t)n;
			obx_info("schema registry: subject \"%s\" has the "
				 "envelope schema as id %u (%s)",
				 subject, *id, url);
		}
	}
	free(a.data);
	return err;
}

obx_err_t obx_registry_schema_id(obx_registry_t *r, const char *topic,
				 uint32_t *id, char *errstr, size_t errstr_size)
{
	known_subject_t *known = obx_name_map_get(r->topics, topic);
	if (known) {
		*id = known->id;
		return OBX_OK;
	}
	char subject[512];
	obx_registry_subject(r, topic, subject, sizeof(subject));
	/* another topic of the same subject (the record strategy) */
	if (!(known = obx_name_map_get(r->subjects, subject))) {
		uint32_t asked;
		obx_err_t err = ask_id(r, subject, &asked, errstr, errstr_size);
		if (err != OBX_OK)
			return err;
		known = obx_xmalloc(sizeof(*known));
		known->id = asked;
		obx_name_map_put(r->subjects, subject, known);
	}
	obx_name_map_put(r->topics, topic, known);
	*id = known->id;
	return OBX_OK;
}

/* Whether `topic` is one route_template makes (its placeholder stands for
 * any non-empty text). */
static bool routed_topic(const char *route_template, const char *topic,
			 size_t topic_len)
{
	static const char placeholder[] = "${routedByValue}";
	const char *at = strstr(route_template, placeholder);
	if (!at)
		return strlen(route_template) == topic_len &&
		       strncmp(route_template, topic, topic_len) == 0;
	size_t prefix = (size_t)(at - route_template);
	const char *suffix = at + sizeof(placeholder) - 1;
	size_t suffix_len = strlen(suffix);
	return topic_len > prefix + suffix_len &&
	       strncmp(topic, route_template, prefix) == 0 &&
	       strncmp(topic + topic_len - suffix_len, suffix, suffix_len) == 0;
}

/* Whether this connector writes to `subject`. */
static bool our_subject(const obx_registry_t *r, const char *route_template,
			const char *subject)
{
	size_t n = strlen(subject);
	const char *ending =
	    r->strategy == OBX_SUBJECT_TOPIC ? "value" : r->record_name;
	size_t ending_len = strlen(ending);
	if (r->strategy == OBX_SUBJECT_RECORD)
		return strcmp(subject, r->record_name) == 0;
	return n > ending_len + 1 &&
	       strcmp(subject + n - ending_len, ending) == 0 &&
	       subject[n - ending_len - 1] == '-' &&
	       routed_topic(route_template, subject, n - ending_len - 1);
}

/* Whether subject's compatibility rules accept the schema. */
static obx_err_t check_subject(obx_registry_t *r, const char *subject,
			       char *errstr, size_t errstr_size)
{
	answer_t a = { 0 };
	const char *url = NULL;
	char why[512];
	char *path = subject_path(r, "/compatibility/subjects/", subject,
				  "/versions/latest");
	long status = call(r, path, r->body, &a, &url, why, sizeof(why));
	free(path);
	json_t *doc = a.data ? json_loads(a.data, 0, NULL) : NULL;
	obx_err_t err = OBX_OK;
	if (!status) {
		obx_errf(errstr, errstr_size,
			 "the schema registry does not answer: %s", why);
		err = OBX_RETRY;
	} else if (status != 200) {
		err = refused(subject, url, status, &a, errstr, errstr_size);
	} else if (!json_is_true(json_object_get(doc, "is_compatible"))) {
		obx_errf(errstr, errstr_size,
			 "the schema registry at %s says the envelope schema "
			 "is not compatible with subject \"%s\" (its "
			 "compatibility rules)",
			 url, subject);
		err = OBX_FATAL;
	}
	json_decref(doc);
	free(a.data);
	uint32_t id;
	if (err == OBX_OK && !r->auto_register)
		err = ask_id(r, subject, &id, errstr, errstr_size);
	return err;
}

obx_err_t obx_registry_check(obx_registry_t *r, const char *route_template,
			     char *found, size_t found_size, char *errstr,
			     size_t errstr_size)
{
	answer_t a = { 0 };
	const char *url = NULL;
	char why[512];
	long status = call(r, "/subjects", NULL, &a, &url, why, sizeof(why));
	if (!status) {
		obx_errf(errstr, errstr_size,
			 "the schema registry does not answer: %s", why);
		free(a.data);
		return OBX_RETRY;
	}
	if (status != 200) {
		obx_err_t err =
		    refused("(listing)", url, status, &a, errstr, errstr_size);
		free(a.data);
		return err;
	}
	json_t *subjects = json_loads(a.data ? a.data : "", 0, NULL);
	free(a.data);
	if (!json_is_array(subjects)) {
		obx_errf(errstr, errstr_size,
			 "the schema registry at %s answered GET /subjects "
			 "with no list of subjects",
			 url);
		json_decref(subjects);
		return OBX_FATAL;
	}
	obx_err_t err = OBX_OK;
	size_t checked = 0, i;
	json_t *item;
	json_array_foreach(subjects, i, item)
	{
		const char *subject = json_string_value(item);
		if (!subject || !our_subject(r, route_template, subject))
			continue;
		if ((err = check_subject(r, subject, errstr, errstr_size)) !=
		    OBX_OK)
			break;
		checked++;
	}
	json_decref(subjects);
	if (err == OBX_OK)
		obx_errf(found, found_size,
			 "%s answers; %zu existing subject(s) of these "
			 "topics accept the envelope schema%s",
			 url, checked,
			 r->auto_register
			     ? " (new ones are registered at their first event)"
			     : " and have it registered");
	return err;
}
