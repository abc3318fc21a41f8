/*
 * json_scan.h - a small, allocation-free JSON reader for the decoders.
 *
 * It reads one JSON text strictly (RFC 8259 grammar) without building a
 * tree: strings are unescaped into a caller-provided arena (at most as long
 * as the input, since unescaping never grows text) and NUL-terminated;
 * numbers are handed back as their exact source text.  Not a public header:
 * only decoder*.c use it.
 */
#ifndef OUTBOXD_JSON_SCAN_H
#define OUTBOXD_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
	OBX_JS_STRING,
	OBX_JS_NUMBER,
	OBX_JS_TRUE,
	OBX_JS_FALSE,
	OBX_JS_NULL,
	OBX_JS_OBJECT, /* only from obx_js_peek() */
	OBX_JS_ARRAY,
} obx_js_type_t;

typedef struct {
	const char *p, *end;
	char *arena; /* unescaped strings go here */
	int depth;
	const char *error; /* NULL until something is wrong */
	size_t error_at;   /* byte offset of the error */
	const char *start;
} obx_js_t;

typedef struct {
	obx_js_type_t type;
	const char *text; /* strings and numbers: NUL-terminated, in arena */
	size_t len;
} obx_js_scalar_t;

/*
 * Bytes the arena needs for `len` bytes of input: the text, and slack for
 * the string reader, which copies whole 8-byte words.
 */
#define OBX_JS_ARENA_SIZE(len) ((len) + 9)

/* Starts reading `len` bytes into an arena of OBX_JS_ARENA_SIZE(len) bytes. */
void obx_js_init(obx_js_t *js, const char *data, size_t len, char *arena);

/* Type of the next value without consuming it; false at a syntax error. */
bool obx_js_peek(obx_js_t *js, obx_js_type_t *type);

/* Reads '{' or '['. */
bool obx_js_open(obx_js_t *js, char bracket);

/*
 * Inside an object: reads the next key into *key (NUL-terminated, *key_len
 * bytes) and the ':' after it, and
 * returns true; returns false at the closing '}' (consumed) or on error
 * (js->error set).  `first` tracks the comma rule: pass a bool that starts
 * true.
 */
bool obx_js_next_key(obx_js_t *js, bool *first, const char **key,
		     size_t *key_len);

/* Inside an array: true if another element follows, false at ']' or error. */
bool obx_js_next_element(obx_js_t *js, bool *first);

/* Reads a scalar (string, number, true, false, null). */
bool obx_js_scalar(obx_js_t *js, obx_js_scalar_t *out);

/* Skips any value, nested ones included. */
bool obx_js_skip(obx_js_t *js);

/* True when only whitespace is left; sets an error otherwise. */
bool obx_js_end(obx_js_t *js);

#endif
