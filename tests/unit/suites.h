/* suites.h - one Check suite per module; main.c runs the one named. */
#ifndef OUTBOXD_TEST_SUITES_H
#define OUTBOXD_TEST_SUITES_H

#include <check.h>

#include "outboxd/config.h"

/* A validated config with the defaults plus the given "key=value" pairs
 * (NULL-terminated); the required keys are filled in. */
obx_config_t *test_config(const char *const *pairs);

#define SUITE(name) Suite *name##_suite(void);
#include "suites.def"
#undef SUITE

#endif
