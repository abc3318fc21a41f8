/* decoder.c - picks the plugin decoder; shared timestamp parsing. */
#include "outboxd/decoder.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "decoder_internal.h"

struct obx_decoder {
	const obx_decoder_ops_t *ops;
	void *state;
};

static const obx_decoder_ops_t *const decoders[] = { &obx_wal2json_decoder,
						     &obx_pgoutput_decoder };

obx_decoder_t *obx_decoder_new(const obx_config_t *conf, char *errstr,
			       size_t errstr_size)
{
	const char *plugin = obx_config_plugin(conf);

	for (size_t i = 0; i < OBX_ARRAY_LEN(decoders); i++) {
		if (strcmp(decoders[i]->plugin, plugin) != 0)
			continue;
		obx_decoder_t *dec = obx_xcalloc(1, sizeof(*dec));
		dec->ops = decoders[i];
		dec->state = dec->ops->create(conf, errstr, errstr_size);
		if (!dec->state) {
			free(dec);
			return NULL;
		}
		return dec;
	}
	obx_errf(errstr, errstr_size, "no decoder for plugin \"%s\"", plugin);
	return NULL;
}

void obx_decoder_destroy(obx_decoder_t *dec)
{
	if (!dec)
		return;
	dec->ops->destroy(dec->state);
	free(dec);
}

obx_err_t obx_decoder_start_options(const obx_decoder_t *dec,
				    const bool *partitioned, char *buf,
				    size_t size)
{
	return dec->ops->start_options(dec->state, partitioned, buf, size);
}

obx_err_t obx_decoder_decode(obx_decoder_t *dec, const char *data, size_t len,
			     obx_lsn_t lsn, obx_change_t *out, char *errstr,
			     size_t errstr_size)
{
	return dec->ops->decode(dec->state, data, len, lsn, out, errstr,
				errstr_size);
}

/* Reads exactly `n` digits at *p; -1 if they are not there. */
static int read_digits(const char **p, const char *end, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++, (*p)++) {
		if (*p >= end || !isdigit((unsigned char)**p))
			return -1;
		v = v * 10 + (**p - '0');
	}
	return v;
}

static int expect(const char **p, const char *end, char c)
{
	if (*p >= end || **p != c)
		return -1;
	(*p)++;
	return 0;
}

int obx_parse_timestamptz(const char *text, size_t len, int64_t *out_us)
{
	const char *p = text, *end = text + len;
	struct tm tm = { 0 };
	int year, mon, day, hour, min, sec, frac_us = 0;

	if ((year = read_digits(&p, end, 4)) < 0 || expect(&p, end, '-') ||
	    (mon = read_digits(&p, end, 2)) < 0 || expect(&p, end, '-') ||
	    (day = read_digits(&p, end, 2)) < 0 ||
	    (expect(&p, end, ' ') && expect(&p, end, 'T')) ||
	    (hour = read_digits(&p, end, 2)) < 0 || expect(&p, end, ':') ||
	    (min = read_digits(&p, end, 2)) < 0 || expect(&p, end, ':') ||
	    (sec = read_digits(&p, end, 2)) < 0)
		return -1;
	if (p < end && *p == '.') {
		int digits = 0;
		for (p++; p < end && isdigit((unsigned char)*p); p++, digits++)
			if (digits < 6)
				frac_us = frac_us * 10 + (*p - '0');
		if (digits == 0)
			return -1;
		for (; digits < 6; digits++)
			frac_us *= 10;
	}
	int offset_s = 0;
	if (p < end && (*p == '+' || *p == '-')) {
		int sign = *p++ == '-' ? -1 : 1;
		int oh = read_digits(&p, end, 2), om = 0, os = 0;
		if (oh < 0)
			return -1;
		if (p < end && *p == ':' &&
		    (p++, (om = read_digits(&p, end, 2)) < 0))
			return -1;
		if (p < end && *p == ':' &&
		    (p++, (os = read_digits(&p, end, 2)) < 0))
			return -1;
		offset_s = sign * (oh * 3600 + om * 60 + os);
	} else if (p < end && *p == 'Z') {
		p++;
	}
	if (p != end || mon < 1 || mon > 12 || day < 1 || day > 31 ||
	    hour > 23 || min > 59 || sec > 60)
		return -1;
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	int64_t epoch_s = (int64_t)timegm(&tm) - offset_s;
	*out_us = epoch_s * 1000000 + frac_us;
	return 0;
}
