/* fixtures.c - helpers shared by the unit suites. */
#include <stdlib.h>
#include <string.h>

#include "suites.h"

obx_config_t *test_config(const char *const *pairs)
{
	obx_config_t *c = obx_config_new();
	char err[512];

	ck_assert_int_eq(obx_config_set(c, "database.url", "dbname=test", "t",
					err, sizeof(err)),
			 OBX_OK);
	ck_assert_int_eq(obx_config_set(c, "kafka.bootstrap.servers",
					"127.0.0.1:1", "t", err, sizeof(err)),
			 OBX_OK);
	for (; pairs && *pairs; pairs++) {
		char *kv = strdup(*pairs);
		char *eq = strchr(kv, '=');
		ck_assert_ptr_nonnull(eq);
		*eq = '\0';
		ck_assert_msg(obx_config_set(c, kv, eq + 1, "t", err,
					     sizeof(err)) == OBX_OK,
			      "%s", err);
		free(kv);
	}
	ck_assert_msg(obx_config_validate(c, err, sizeof(err)) == OBX_OK, "%s",
		      err);
	return c;
}
