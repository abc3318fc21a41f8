/*
 * common.h - types shared by every outboxd module.
 *
 * Every fallible call returns an obx_err_t that tells the caller what to do
 * next, not what went wrong (the text says that):
 *   OBX_OK        carry on
 *   OBX_RETRY     transient (server restart, broker down): reconnect
 *                 with backoff
 *   OBX_FATAL     an invariant or the environment is broken: stop,
 *                 exit 1
 *   OBX_BAD_DATA  the input cannot be processed: stop without
 *                 confirming, exit 3
 *   OBX_CONFIG    the configuration is unusable: exit 2
 */
#ifndef OUTBOXD_COMMON_H
#define OUTBOXD_COMMON_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
	OBX_OK = 0,
	OBX_RETRY,
	OBX_FATAL,
	OBX_BAD_DATA,
	OBX_CONFIG,
} obx_err_t;

/* The process exit codes (SPEC section 7), one per obx_err_t outcome. */
enum {
	OBX_EXIT_CLEAN = 0,    /* OBX_OK */
	OBX_EXIT_RUNTIME = 1,  /* OBX_RETRY left over, OBX_FATAL */
	OBX_EXIT_USAGE = 2,    /* OBX_CONFIG, bad arguments */
	OBX_EXIT_BAD_DATA = 3, /* OBX_BAD_DATA: bad data, a lost slot */
};

/* The exit code a command ending with `err` returns. */
int obx_exit_code(obx_err_t err);

/* A PostgreSQL WAL position. */
typedef uint64_t obx_lsn_t;

#define OBX_LSN_INVALID ((obx_lsn_t)0)

/* printf arguments for an LSN, used with "%X/%08X" (PostgreSQL's form). */
#define OBX_LSN_FMT	  "%X/%08X"
#define OBX_LSN_ARGS(lsn) (unsigned)((lsn) >> 32), (unsigned)(lsn)

/* Parses "X/Y" (hex halves); returns 0 on success, -1 if malformed. */
int obx_lsn_parse(const char *text, size_t len, obx_lsn_t *out);

/*
 * Allocation that does not fail: out of memory, the process says so on
 * stderr and aborts.  Nothing can go on without the memory, and stopping
 * there confirms nothing (a restart resumes from the slot).  Sizes of 0
 * allocate 1 byte, so NULL never means "empty".
 */
void *obx_xmalloc(size_t size);
void *obx_xcalloc(size_t n, size_t size);
void *obx_xrealloc(void *ptr, size_t size);
char *obx_xstrdup(const char *s);
char *obx_xstrndup(const char *s, size_t n);
/* p, or the same death when it is NULL: for what a library allocated
 * (json_dumps) and can fail only for want of memory. */
void *obx_xnonnull(void *p);

/* Monotonic clock in microseconds. */
int64_t obx_now_us(void);

/* Microseconds since the Unix epoch (wall clock). */
int64_t obx_wallclock_us(void);

/* A 64-bit hash of a string, for lookup tables of names. */
uint64_t obx_hash_str(const char *s);

/* Levenshtein distance: how many single-byte edits turn a into b. */
size_t obx_edit_distance(const char *a, const char *b);

/* printf into a fixed buffer, always NUL-terminated; for errstr arguments. */
void obx_errf(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define OBX_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Milliseconds (a setting, a timeout) as microseconds, always in 64-bit
 * arithmetic: `long` is 32 bits on some platforms, and a day in
 * microseconds is not. */
#define OBX_MS_TO_US(ms) ((int64_t)(ms)*1000)

#endif
