/* suites.h - one Check suite per module; main.c runs the one named. */
#ifndef OUTBOXD_TEST_SUITES_H
#define OUTBOXD_TEST_SUITES_H

#include <check.h>

#include "outboxd/config.h"

/* A validated config with the defaults plus the given "key=value" pairs
 * (NULL-terminated); the required keys are filled in. */
obx_config_t *test_config(const char *const *pairs);

Suite *config_suite(void);
Suite *decoder_suite(void);
Suite *router_suite(void);
Suite *envelope_suite(void);
Suite *tracker_suite(void);
Suite *startpoint_suite(void);

#endif
