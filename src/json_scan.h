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
	JS_STRING,
	JS_NUMBER,
	JS_TRUE,
	JS_FALSE,
	JS_NULL,
	JS_OBJECT, /* only from js_peek() */
	JS_ARRAY,
} js_type_t;

typedef struct {
	const char *p, *end;
	char *arena; /* unescaped strings go here */
	int depth;
	const char *error; /* NULL until something is wrong */
	size_t error_at;   /* byte offset of the error */
	const char *start;
} js_t;

typedef struct {
	js_type_t type;
	const char *text; /* strings and numbers: NUL-terminated, in arena */
	size_t len;
} js_scalar_t;

/*
 * Bytes the arena needs for `len` bytes of input: the text, and slack for
 * the string reader, which copies whole 8-byte words.
 */
#define JS_ARENA_SIZE(len) ((len) + 9)

/* Starts reading `len` bytes into an arena of JS_ARENA_SIZE(len) bytes. */
void js_init(js_t *js, const char *data, size_t len, char *arena);

/* Type of the next value without consuming it; false at a syntax error. */
bool js_peek(js_t *js, js_type_t *type);

/* Reads '{' or '['. */
bool js_open(js_t *js, char bracket);

/*
 * Inside an object: reads the next key into *key (NUL-terminated, *key_len
 * bytes) and the ':' after it, and
 * returns true; returns false at the closing '}' (consumed) or on error
 * (js->error set).  `first` tracks the comma rule: pass a bool that starts
 * true.
 */
bool js_next_key(js_t *js, bool *first, const char **key, size_t *key_len);

/* Inside an array: true if another element follows, false at ']' or error. */
bool js_next_element(js_t *js, bool *first);

/* Reads a scalar (string, number, true, false, null). */
bool js_scalar(js_t *js, js_scalar_t *out);

/* Skips any value, nested ones included. */
bool js_skip(js_t *js);

/* True when only whitespace is left; sets an error otherwise. */
bool js_end(js_t *js);

#endif
