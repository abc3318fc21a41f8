/* json_scan.c - strict, allocation-free JSON reading for the decoders. */
#include "json_scan.h"

#include <stdint.h>
#include <string.h>

/* Deeper nesting than wal2json ever produces is an error, not recursion. */
#define MAX_DEPTH 32

static bool fail(obx_js_t *js, const char *what)
{
	if (!js->error) {
		js->error = what;
		js->error_at = (size_t)(js->p - js->start);
	}
	return false;
}

void obx_js_init(obx_js_t *js, const char *data, size_t len, char *arena)
{
	memset(js, 0, sizeof(*js));
	js->p = js->start = data;
	js->end = data + len;
	js->arena = arena;
}

static void skip_ws(obx_js_t *js)
{
	while (js->p < js->end && (*js->p == ' ' || *js->p == '\t' ||
				   *js->p == '\n' || *js->p == '\r'))
		js->p++;
}

bool obx_js_peek(obx_js_t *js, obx_js_type_t *type)
{
	skip_ws(js);
	if (js->p >= js->end)
		return fail(js, "unexpected end of input");
	switch (*js->p) {
	case '"':
		*type = OBX_JS_STRING;
		return true;
	case '{':
		*type = OBX_JS_OBJECT;
		return true;
	case '[':
		*type = OBX_JS_ARRAY;
		return true;
	case 't':
		*type = OBX_JS_TRUE;
		return true;
	case 'f':
		*type = OBX_JS_FALSE;
		return true;
	case 'n':
		*type = OBX_JS_NULL;
		return true;
	default:
		if (*js->p == '-' || (*js->p >= '0' && *js->p <= '9')) {
			*type = OBX_JS_NUMBER;
			return true;
		}
		return fail(js, "unexpected character");
	}
}

bool obx_js_open(obx_js_t *js, char bracket)
{
	skip_ws(js);
	if (js->p >= js->end || *js->p != bracket)
		return fail(js, bracket == '{' ? "expected an object"
					       : "expected an array");
	if (++js->depth > MAX_DEPTH)
		return fail(js, "nested too deeply");
	js->p++;
	return true;
}

static int hex4(const char *p)
{
	int v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

static char *put_utf8(char *out, unsigned cp)
{
	if (cp < 0x80) {
		*out++ = (char)cp;
	} else if (cp < 0x800) {
		*out++ = (char)(0xC0 | (cp >> 6));
		*out++ = (char)(0x80 | (cp & 0x3F));
	} else if (cp < 0x10000) {
		*out++ = (char)(0xE0 | (cp >> 12));
		*out++ = (char)(0x80 | ((cp >> 6) & 0x3F));
		*out++ = (char)(0x80 | (cp & 0x3F));
	} else {
		*out++ = (char)(0xF0 | (cp >> 18));
		*out++ = (char)(0x80 | ((cp >> 12) & 0x3F));
		*out++ = (char)(0x80 | ((cp >> 6) & 0x3F));
		*out++ = (char)(0x80 | (cp & 0x3F));
	}
	return out;
}

#define ONES  0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/*
 * Flags (with its high bit) every byte of w that is '"', '\\', a control
 * character or not ASCII: the bytes a plain run of string text stops at.
 * A borrow can flag a byte after a flagged one, never before it, so the
 * lowest flag is exact.
 */
static inline uint64_t special_bytes(uint64_t w)
{
	uint64_t quote = w ^ (ONES * '"');
	uint64_t backslash = w ^ (ONES * '\\');
	uint64_t zero_or_low = ((quote - ONES) & ~quote) |
			       ((backslash - ONES) & ~backslash) |
			       ((w - ONES * 0x20) & ~w);
	/* w's own high bits flag non-ASCII bytes */
	return (zero_or_low | w) & HIGHS;
}

/* Index of the first flagged byte of a word loaded from memory. */
static inline unsigned first_flagged(uint64_t flags)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return (unsigned)__builtin_ctzll(flags) / 8;
#else
	return (unsigned)__builtin_clzll(flags) / 8;
#endif
}

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0. */
static size_t utf8_sequence(const unsigned char *p, const unsigned char *end)
{
	size_t n;
	unsigned cp;

	if (p[0] >= 0xC2 && p[0] <= 0xDF) {
		n = 2;
		cp = p[0] & 0x1F;
	} else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
		n = 3;
		cp = p[0] & 0x0F;
	} else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
		n = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if ((size_t)(end - p) < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3F);
	}
	/* overlong forms, surrogates and values past U+10FFFF */
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
		return 0;
	return n;
}

/* A \\u escape's code point (js->p at its four hex digits), a surrogate
 * pair joined, written as UTF-8 at *out. */
static bool read_unicode_escape(obx_js_t *js, char **out)
{
	if (js->end - js->p < 4)
		return fail(js, "short \\u escape");
	int cp = hex4(js->p);
	if (cp < 0)
		return fail(js, "bad \\u escape");
	js->p += 4;
	if (cp >= 0xD800 && cp <= 0xDBFF) {
		/* a surrogate pair: the low half must follow */
		int lo;
		if (js->end - js->p < 6 || js->p[0] != '\\' ||
		    js->p[1] != 'u' || (lo = hex4(js->p + 2)) < 0 ||
		    lo < 0xDC00 || lo > 0xDFFF)
			return fail(js, "unpaired surrogate");
		js->p += 6;
		cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
	} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
		return fail(js, "unpaired surrogate");
	}
	if (cp == 0)
		return fail(js, "\\u0000 in a string");
	*out = put_utf8(*out, (unsigned)cp);
	return true;
}

/* The backslash escape at js->p, written unescaped at *out. */
static bool read_escape(obx_js_t *js, char **out)
{
	if (js->end - js->p < 2)
		return fail(js, "unterminated escape");
	char e = js->p[1];
	js->p += 2;
	switch (e) {
	case '"':
	case '\\':
	case '/':
		*(*out)++ = e;
		return true;
	case 'b':
		*(*out)++ = '\b';
		return true;
	case 'f':
		*(*out)++ = '\f';
		return true;
	case 'n':
		*(*out)++ = '\n';
		return true;
	case 'r':
		*(*out)++ = '\r';
		return true;
	case 't':
		*(*out)++ = '\t';
		return true;
	case 'u':
		return read_unicode_escape(js, out);
	default:
		return fail(js, "unknown escape");
	}
}

/* Reads a string into the arena. Escapes never make text longer. */
static bool read_string(obx_js_t *js, const char **text, size_t *len)
{
	char *out = js->arena, *begin = js->arena;

	js->p++; /* the opening quote */
	for (;;) {
		/*
		 * Eight bytes at a time, each word copied whole and kept up to
		 * its first byte that is not plain ASCII text.  Inside a
		 * string the output trails the input (the opening quote is
		 * not copied, escapes shrink), so a word is only written
		 * where 8 input bytes remain: within OBX_JS_ARENA_SIZE.
		 */
		while (js->end - js->p >= 8) {
			uint64_t w;
			memcpy(&w, js->p, 8);
			memcpy(out, &w, 8);
			uint64_t flags = special_bytes(w);
			if (flags) {
				unsigned plain = first_flagged(flags);
				js->p += plain;
				out += plain;
				break;
			}
			js->p += 8;
			out += 8;
		}
		if (js->p >= js->end)
			return fail(js, "unterminated string");
		unsigned char c = (unsigned char)*js->p;
		if (c >= 0x80) {
			size_t n =
			    utf8_sequence((const unsigned char *)js->p,
					  (const unsigned char *)js->end);
			if (!n)
				return fail(js, "invalid UTF-8 in a string");
			memcpy(out, js->p, n);
			out += n;
			js->p += n;
			continue;
		}
		if (c != '"' && c != '\\' && c >= 0x20) {
			/* plain, in the last few bytes of the input */
			*out++ = (char)c;
			js->p++;
			continue;
		}
		if (c == '"')
			break;
		if (c < 0x20)
			return fail(js, "control character in a string");
		if (!read_escape(js, &out))
			return false;
	}
	js->p++; /* the closing quote */
	*out++ = '\0';
	*text = begin;
	*len = (size_t)(out - begin - 1);
	js->arena = out;
	return true;
}

static bool digits(obx_js_t *js)
{
	const char *start = js->p;
	while (js->p < js->end && *js->p >= '0' && *js->p <= '9')
		js->p++;
	return js->p > start;
}

/* JSON number grammar; the text is copied to the arena as is. */
static bool read_number(obx_js_t *js, const char **text, size_t *len)
{
	const char *start = js->p;
	if (*js->p == '-')
		js->p++;
	if (js->p < js->end && *js->p == '0')
		js->p++;
	else if (!digits(js))
		return fail(js, "bad number");
	if (js->p < js->end && *js->p == '.') {
		js->p++;
		if (!digits(js))
			return fail(js, "bad number");
	}
	if (js->p < js->end && (*js->p == 'e' || *js->p == 'E')) {
		js->p++;
		if (js->p < js->end && (*js->p == '+' || *js->p == '-'))
			js->p++;
		if (!digits(js))
			return fail(js, "bad number");
	}
	*len = (size_t)(js->p - start);
	memcpy(js->arena, start, *len);
	js->arena[*len] = '\0';
	*text = js->arena;
	js->arena += *len + 1;
	return true;
}

static bool literal(obx_js_t *js, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(js->end - js->p) < n || memcmp(js->p, word, n) != 0)
		return fail(js, "bad literal");
	js->p += n;
	return true;
}

bool obx_js_scalar(obx_js_t *js, obx_js_scalar_t *out)
{
	if (!obx_js_peek(js, &out->type))
		return false;
	out->text = NULL;
	out->len = 0;
	switch (out->type) {
	case OBX_JS_STRING:
		return read_string(js, &out->text, &out->len);
	case OBX_JS_NUMBER:
		return read_number(js, &out->text, &out->len);
	case OBX_JS_TRUE:
		return literal(js, "true");
	case OBX_JS_FALSE:
		return literal(js, "false");
	case OBX_JS_NULL:
		return literal(js, "null");
	default:
		return fail(js, "expected a scalar");
	}
}

/* After a value: ',' continues, `close` ends; *first tracks position. */
static bool next_item(obx_js_t *js, bool *first, char close)
{
	skip_ws(js);
	if (js->p >= js->end)
		return fail(js, "unexpected end of input");
	if (*js->p == close) {
		js->p++;
		js->depth--;
		return false;
	}
	if (!*first) {
		if (*js->p != ',')
			return fail(js, "expected ',' between items");
		js->p++;
		skip_ws(js);
	}
	*first = false;
	return true;
}

bool obx_js_next_key(obx_js_t *js, bool *first, const char **key,
		     size_t *key_len)
{
	if (!next_item(js, first, '}'))
		return false;
	if (js->p >= js->end || *js->p != '"')
		return fail(js, "expected a key");
	if (!read_string(js, key, key_len))
		return false;
	skip_ws(js);
	if (js->p >= js->end || *js->p != ':')
		return fail(js, "expected ':' after a key");
	js->p++;
	return true;
}

bool obx_js_next_element(obx_js_t *js, bool *first)
{
	return next_item(js, first, ']');
}

bool obx_js_skip(obx_js_t *js)
{
	obx_js_type_t type;
	obx_js_scalar_t ignored;
	bool first = true;
	const char *key;
	size_t key_len;

	if (!obx_js_peek(js, &type))
		return false;
	if (type == OBX_JS_OBJECT) {
		if (!obx_js_open(js, '{'))
			return false;
		while (obx_js_next_key(js, &first, &key, &key_len))
			if (!obx_js_skip(js))
				return false;
		return !js->error;
	}
	if (type == OBX_JS_ARRAY) {
		if (!obx_js_open(js, '['))
			return false;
		while (obx_js_next_element(js, &first))
			if (!obx_js_skip(js))
				return false;
		return !js->error;
	}
	return obx_js_scalar(js, &ignored);
}

bool obx_js_end(obx_js_t *js)
{
	skip_ws(js);
	if (js->p != js->end)
		return fail(js, "trailing characters after the message");
	return !js->error;
}
