/* suites.h - one Check suite per module; main.c runs the one named. */
#ifndef OUTBOXD_TEST_SUITES_H
#define OUTBOXD_TEST_SUITES_H

#include <check.h>

#include "outboxd/config.h"

/* A validated config with the defaults plus the given "key=value" pairs
 * (NULL-terminated); the required keys are filled in. */
obx_config_t *test_config(const char *const *pairs);

/* One line of a golden file captured from PostgreSQL (tests/data): the
 * message's LSN, a tab, its text (wal2json's JSON, pgoutput's bytes in
 * hex). */
typedef struct {
	obx_lsn_t lsn;
	char *text;
} test_golden_t;

/* Reads up to max lines of a golden file; test_free_golden() frees them. */
size_t test_load_golden(const char *path, test_golden_t *lines, size_t max);
void test_free_golden(test_golden_t *lines, size_t n);

#define SUITE(name) Suite *name##_suite(void);
#include "suites.def"
#undef SUITE

#endif
