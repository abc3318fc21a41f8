/* test_pg.c - conninfo redaction, in both of libpq's forms. */
#include <string.h>

#include "outboxd/pg.h"
#include "suites.h"

static void assert_redacted(const char *conninfo, const char *const *secrets,
			    const char *const *kept)
{
	char out[1024];
	obx_pg_redact_conninfo(conninfo, out, sizeof(out));
	for (; *secrets; secrets++)
		ck_assert_msg(!strstr(out, *secrets), "%s leaked: %s", *secrets,
			      out);
	for (; *kept; kept++)
		ck_assert_msg(strstr(out, *kept), "%s missing: %s", *kept, out);
}

START_TEST(every_secret_option_is_redacted)
{
	const char *secrets[] = { "Pa55", "K3y", NULL };
	const char *kept[] = { "password=********", "sslpassword=********",
			       "user=app", "dbname=shop", NULL };
	assert_redacted("host=db user=app password=Pa55 sslpassword=K3y "
			"dbname=shop",
			secrets, kept);
	assert_redacted("postgresql://app:Pa55@db:5432/shop?sslpassword=K3y",
			secrets, kept);
	assert_redacted("postgres://app:Pa55@db/shop?sslpassword=K3y&"
			"application_name=x",
			secrets, kept);
}
END_TEST

START_TEST(an_unparsable_string_is_withheld_whole)
{
	char out[256];
	obx_pg_redact_conninfo("host=db password='unterminated", out,
			       sizeof(out));
	ck_assert_str_eq(out, "(unparsable connection string)");
}
END_TEST

Suite *pg_suite(void)
{
	Suite *s = suite_create("pg");
	TCase *tc = tcase_create("redaction");
	tcase_add_test(tc, every_secret_option_is_redacted);
	tcase_add_test(tc, an_unparsable_string_is_withheld_whole);
	suite_add_tcase(s, tc);
	return s;
}
