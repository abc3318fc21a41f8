/* fixtures.c - helpers shared by the unit suites. */
#include <stdio.h>
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

size_t test_load_golden(const char *path, test_golden_t *lines, size_t max)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0, n = 0;
	ck_assert_msg(f != NULL, "cannot open %s", path);
	while (n < max && getline(&line, &cap, f) != -1) {
		char *tab = strchr(line, '\t');
		ck_assert_ptr_nonnull(tab);
		ck_assert_int_eq(
		    obx_lsn_parse(line, (size_t)(tab - line), &lines[n].lsn),
		    0);
		lines[n].text = strdup(tab + 1);
		lines[n].text[strcspn(lines[n].text, "\n")] = '\0';
		n++;
	}
	free(line);
	fclose(f);
	return n;
}

void test_free_golden(test_golden_t *lines, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(lines[i].text);
}
