/* test_startpoint.c - where a connection starts, and the state record. */
#include <stdlib.h>
#include <string.h>

#include "outboxd/startpoint.h"
#include "outboxd/state.h"
#include "suites.h"

#define SYSID	 7714093477768295281ULL
#define OTHER_ID 7714093477768299999ULL

static obx_state_view_t no_state;

/* A server on timeline 1 at WAL 0/5000 whose slot is at 0/1000. */
static obx_start_facts_t facts(const obx_state_view_t *state)
{
	return (obx_start_facts_t){ .system_id = SYSID,
				    .timeline = 1,
				    .wal_end = 0x5000,
				    .slot_exists = true,
				    .slot_confirmed = 0x1000,
				    .state = state ? state : &no_state };
}

/* This process streamed before, from `sysid` on `timeline`, up to `lsn`. */
static void streamed_before(obx_start_facts_t *f, uint64_t sysid,
			    uint32_t timeline, obx_lsn_t lsn)
{
	f->connected_before = true;
	f->last_system_id = sysid;
	f->last_timeline = timeline;
	f->produced = lsn;
}

static obx_state_view_t recorded(uint64_t sysid, uint32_t timeline,
				 obx_lsn_t lsn, obx_slot_event_t event)
{
	obx_state_view_t v = { 0 };
	obx_state_record_t rec = { .system_id = sysid,
				   .timeline = timeline,
				   .lsn = lsn,
				   .event = event,
				   .written_us = 1798675200000000LL };
	strcpy(rec.database, "shop");
	strcpy(rec.slot, "outboxd");
	if (sysid == SYSID) {
		v.found = true;
		v.mine = rec;
	} else {
		v.other_found = true;
		v.other = rec;
	}
	return v;
}

static obx_start_plan_t plan_for(const obx_start_facts_t *f,
				 const char *const *settings)
{
	obx_config_t *conf = test_config(settings);
	obx_start_plan_t plan;
	obx_start_plan(conf, f, &plan);
	obx_config_destroy(conf);
	return plan;
}

START_TEST(first_start_creates_the_slot_and_records_it)
{
	obx_start_facts_t f = facts(NULL);
	f.slot_exists = false;
	f.timeline = 2;
	ck_assert(!obx_start_needs_history(&f)); /* no timeline streamed on */
	obx_start_plan_t plan = plan_for(&f, NULL);
	ck_assert_int_eq(plan.action, OBX_START_CREATE_SLOT);
	ck_assert(plan.record);

	const char *no_create[] = { "slot.create=false", NULL };
	plan = plan_for(&f, no_create);
	ck_assert_int_eq(plan.action, OBX_START_REFUSE);
	ck_assert_ptr_nonnull(strstr(plan.why, "slot.create is false"));
}
END_TEST

START_TEST(a_slot_lost_after_streaming_is_never_recreated)
{
	/* across restarts: the state topic remembers */
	obx_state_view_t state = recorded(SYSID, 1, 0x2A00, OBX_SLOT_STREAMED);
	obx_start_facts_t f = facts(&state);
	f.slot_exists = false;
	obx_start_plan_t plan = plan_for(&f, NULL);
	ck_assert_int_eq(plan.action, OBX_START_REFUSE);
	ck_assert_ptr_nonnull(strstr(plan.why, "\"outboxd\" does not exist"));
	ck_assert_ptr_nonnull(strstr(plan.why, "up to LSN 0/00002A00"));
	ck_assert_ptr_nonnull(strstr(plan.why, "outboxd slot create --yes"));
	ck_assert_ptr_nonnull(strstr(plan.why, "2026-12-31T"));

	/* a drop by the CLI is named as such */
	state = recorded(SYSID, 1, 0x2A00, OBX_SLOT_DROPPED);
	plan = plan_for(&f, NULL);
	ck_assert_int_eq(plan.action, OBX_START_REFUSE);
	ck_assert_ptr_nonnull(strstr(plan.why, "by `outboxd slot drop`"));

	/* within one process: its own memory */
	f = facts(NULL);
	f.slot_exists = false;
	streamed_before(&f, SYSID, 1, 0x3000);
	plan = plan_for(&f, NULL);
	ck_assert_int_eq(plan.action, OBX_START_REFUSE);
	ck_assert_ptr_nonnull(strstr(plan.why, "up to LSN 0/00003000"));
}
END_TEST

START_TEST(another_server_is_refused)
{
	obx_state_view_t state =
	    recorded(OTHER_ID, 1, 0x2A00, OBX_SLOT_STREAMED);
	obx_start_facts_t f = facts(&state);
	obx_start_plan_t plan = plan_for(&f, NULL);
	ck_assert_int_eq(plan.action, OBX_START_REFUSE);
	ck_assert_ptr_nonnull(strstr(plan.why, "7714093477768299999"));
	ck_assert_ptr_nonnull(strstr(plan.why, "7714093477768295281"));
	ck_assert_ptr_nonnull(strstr(plan.why, "slot create --yes"));

	/* the same with the slot missing there: still another server */
	f.slot_exists = false;
	ck_assert_int_eq(plan_for(&f, NULL).action, OBX_START_REFUSE);

	/* accepted (a record for this server exists too): streams */
	state.found = true;
	state.mine = state.other;
	state.mine.system_id = SYSID;
	f.slot_exists = true;
	ck_assert_int_eq(plan_for(&f, NULL).action, OBX_START_STREAM);

	/* within one process */
	f = facts(NULL);
	streamed_before(&f, OTHER_ID, 1, 0);
	plan = plan_for(&f, NULL);
	ck_assert_int_eq(plan.action, OBX_START_REFUSE);
	ck_assert_ptr_nonnull(strstr(plan.why, "another PostgreSQL cluster"));
}
END_TEST

START_TEST(resumes_after_what_kafka_acknowledged)
{
	/* the slot's persisted position lags (a server restart) */
	obx_state_view_t state = recorded(SYSID, 1, 0x4000, OBX_SLOT_STREAMED);
	obx_start_facts_t f = facts(&state);
	ck_assert(!obx_start_needs_history(&f)); /* the same timeline */
	obx_start_plan_t plan = plan_for(&f, NULL);
	ck_assert_int_eq(plan.action, OBX_START_STREAM);
	ck_assert_uint_eq(plan.resume_at, 0x4000);
	ck_assert(!plan.forget_confirmed);
	ck_assert(!plan.record);
	ck_assert_ptr_nonnull(strstr(plan.why, "12288 bytes"));

	/* this process's own confirmation wins over the older record */
	streamed_before(&f, SYSID, 1, 0x4800);
	ck_assert_uint_eq(plan_for(&f, NULL).resume_at, 0x4800);

	/* nothing to skip when the slot is as far */
	f.produced = 0x1000;
	plan = plan_for(&f, NULL);
	ck_assert_uint_eq(plan.resume_at, OBX_LSN_INVALID);
	ck_assert_str_eq(plan.why, "");
}
END_TEST

START_TEST(a_new_timeline_its_history_does_not_name_skips_nothing)
{
	obx_state_view_t state = recorded(SYSID, 1, 0x4000, OBX_SLOT_STREAMED);
	obx_start_facts_t f = facts(&state);
	f.timeline = 2;
	obx_start_plan_t plan = plan_for(&f, NULL);
	ck_assert_int_eq(plan.action, OBX_START_STREAM);
	ck_assert_uint_eq(plan.resume_at, OBX_LSN_INVALID);
	ck_assert(plan.forget_confirmed);
	ck_assert(plan.record);
	ck_assert_ptr_nonnull(strstr(plan.why, "timeline 2"));

	/* a history of other timelines only (a restore elsewhere) */
	f.timeline_history = "3\t0/3000\tno recovery target specified\n";
	plan = plan_for(&f, NULL);
	ck_assert(plan.forget_confirmed);
	ck_assert_uint_eq(plan.resume_at, OBX_LSN_INVALID);
	ck_assert_ptr_nonnull(strstr(plan.why, "does not name"));

	/* within one process */
	f = facts(NULL);
	f.timeline = 2;
	streamed_before(&f, SYSID, 1, 0x4000);
	plan = plan_for(&f, NULL);
	ck_assert(plan.forget_confirmed);
	ck_assert_uint_eq(plan.resume_at, OBX_LSN_INVALID);
}
END_TEST

START_TEST(a_new_timeline_skips_what_both_timelines_share)
{
	/* timeline 1 ended at 0/3000, Kafka has all up to 0/4000 of it */
	obx_state_view_t state = recorded(SYSID, 1, 0x4000, OBX_SLOT_STREAMED);
	obx_start_facts_t f = facts(&state); /* the slot is at 0/1000 */
	f.timeline = 2;
	ck_assert(obx_start_needs_history(&f));
	f.timeline_history = "1\t0/3000\tno recovery target specified\n";
	obx_start_plan_t plan = plan_for(&f, NULL);
	ck_assert_int_eq(plan.action, OBX_START_STREAM);
	ck_assert_uint_eq(plan.resume_at, 0x3000); /* never past the fork */
	ck_assert(plan.forget_confirmed);
	ck_assert(plan.record);
	ck_assert_ptr_nonnull(strstr(plan.why, "ended at 0/00003000"));
	ck_assert_ptr_nonnull(strstr(plan.why, "8192 bytes"));

	/* acknowledged up to before the fork: resumes there */
	state = recorded(SYSID, 1, 0x2000, OBX_SLOT_STREAMED);
	ck_assert_uint_eq(plan_for(&f, NULL).resume_at, 0x2000);

	/* nothing acknowledged past the slot: the slot's position */
	state = recorded(SYSID, 1, 0x0800, OBX_SLOT_STREAMED);
	plan = plan_for(&f, NULL);
	ck_assert_uint_eq(plan.resume_at, OBX_LSN_INVALID);
	ck_assert(plan.forget_confirmed);
	ck_assert_ptr_nonnull(strstr(plan.why, "confirming only"));

	/* within one process: what it could confirm, never what is only in
	 * flight */
	f = facts(NULL);
	f.timeline = 2;
	f.timeline_history = "1\t0/3000\tno recovery target specified\n";
	streamed_before(&f, SYSID, 1, 0x2C00);
	f.confirmed_before = 0x2800;
	ck_assert_uint_eq(plan_for(&f, NULL).resume_at, 0x2800);

	/* two failovers: where the timeline streamed on left the history */
	state = recorded(SYSID, 1, 0x4000, OBX_SLOT_STREAMED);
	f = facts(&state);
	f.timeline = 3;
	f.timeline_history = "1\t0/2000\tno recovery target specified\n"
			     "\n"
			     "2\t0/3000\tno recovery target specified\n";
	ck_assert_uint_eq(plan_for(&f, NULL).resume_at, 0x2000);
	state = recorded(SYSID, 2, 0x4000, OBX_SLOT_STREAMED);
	ck_assert_uint_eq(plan_for(&f, NULL).resume_at, 0x3000);
}
END_TEST

START_TEST(timeline_histories_are_read_as_postgresql_writes_them)
{
	obx_lsn_t end = 0;
	const char *history = "# a comment\n"
			      "   \n"
			      "1\t0/3000060\tno recovery target specified\n"
			      "2\t1/A0\tat restore point \"x\"\n"
			      "5 2/10 before 2000-01-01 00:00:00+00";
	ck_assert_int_eq(obx_timeline_end(history, 1, &end), 0);
	ck_assert_uint_eq(end, 0x3000060);
	ck_assert_int_eq(obx_timeline_end(history, 2, &end), 0);
	ck_assert_uint_eq(end, 0x1000000A0ULL);
	ck_assert_int_eq(obx_timeline_end(history, 5, &end), 0);
	ck_assert_uint_eq(end, 0x200000010ULL);
	ck_assert_int_eq(obx_timeline_end(history, 3, &end), -1);
	ck_assert_int_eq(obx_timeline_end("", 1, &end), -1);
	ck_assert_int_eq(obx_timeline_end(NULL, 1, &end), -1);
	/* a malformed line before the one asked for: nothing is trusted */
	const char *bad[] = { "x\t0/10\n1\t0/20\n",  "1\n",
			      "1\tnot-an-lsn\n",     "1x\t0/10\n",
			      "99999999999\t0/10\n", "\t0/10\n" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(obx_timeline_end(bad[i], 1, &end) == -1,
			      "accepted \"%s\"", bad[i]);
}
END_TEST

START_TEST(a_confirmation_beyond_the_server_is_forgotten)
{
	obx_state_view_t state = recorded(SYSID, 1, 0x9000, OBX_SLOT_STREAMED);
	obx_start_facts_t f = facts(&state); /* WAL ends at 0x5000 */
	obx_start_plan_t plan = plan_for(&f, NULL);
	ck_assert(plan.forget_confirmed);
	ck_assert_uint_eq(plan.resume_at, OBX_LSN_INVALID);
	ck_assert_ptr_nonnull(strstr(plan.why, "beyond the server's WAL end"));
}
END_TEST

START_TEST(no_record_yet_is_recorded)
{
	obx_start_facts_t f = facts(NULL);
	obx_start_plan_t plan = plan_for(&f, NULL);
	ck_assert_int_eq(plan.action, OBX_START_STREAM);
	ck_assert(plan.record);
	ck_assert_uint_eq(plan.resume_at, OBX_LSN_INVALID);
}
END_TEST

START_TEST(state_records_round_trip)
{
	obx_state_record_t rec = { .system_id = 18446744073709551615ULL,
				   .timeline = 7,
				   .lsn = 0x16B3748A0ULL,
				   .event = OBX_SLOT_RESET,
				   .written_us = 1798675200123456LL };
	strcpy(rec.database, "shop");
	strcpy(rec.slot, "orders_slot");
	char *json = obx_state_encode(&rec);
	ck_assert_ptr_nonnull(strstr(json, "\"lsn\":\"1/6B3748A0\""));
	ck_assert_ptr_nonnull(
	    strstr(json, "\"system_identifier\":\"18446744073709551615\""));
	obx_state_record_t back;
	ck_assert_int_eq(obx_state_decode(json, strlen(json), &back), 0);
	ck_assert_uint_eq(back.system_id, rec.system_id);
	ck_assert_uint_eq(back.timeline, 7);
	ck_assert_uint_eq(back.lsn, rec.lsn);
	ck_assert_int_eq(back.event, OBX_SLOT_RESET);
	ck_assert_int_eq(back.written_us, rec.written_us);
	ck_assert_str_eq(back.database, "shop");
	ck_assert_str_eq(back.slot, "orders_slot");
	free(json);

	char key[256];
	obx_state_key(42, "shop", "outboxd", key, sizeof(key));
	ck_assert_str_eq(key, "42/shop/outboxd");

	/* fields a later version adds are ignored */
	const char *newer =
	    "{\"version\":1,\"system_identifier\":\"42\",\"database\":\"d\","
	    "\"slot\":\"s\",\"timeline\":1,\"lsn\":\"0/10\",\"event\":"
	    "\"streamed\",\"checkpoint\":{\"txn\":9}}";
	ck_assert_int_eq(obx_state_decode(newer, strlen(newer), &back), 0);
	ck_assert_uint_eq(back.lsn, 0x10);
}
END_TEST

START_TEST(foreign_records_are_not_state)
{
	const char *bad[] = {
		"",
		"not json",
		"{}",
		"{\"version\":2,\"system_identifier\":\"42\",\"database\":"
		"\"d\","
		"\"slot\":\"s\",\"timeline\":1,\"lsn\":\"0/10\",\"event\":"
		"\"streamed\"}",
		"{\"version\":1,\"system_identifier\":\"4x2\",\"database\":"
		"\"d\",\"slot\":\"s\",\"timeline\":1,\"lsn\":\"0/10\","
		"\"event\":\"streamed\"}",
		"{\"version\":1,\"system_identifier\":\"42\",\"database\":"
		"\"d\","
		"\"slot\":\"s\",\"timeline\":1,\"lsn\":\"zz\",\"event\":"
		"\"streamed\"}",
		"{\"version\":1,\"system_identifier\":\"42\",\"database\":"
		"\"d\","
		"\"slot\":\"s\",\"timeline\":1,\"lsn\":\"0/10\",\"event\":"
		"\"vanished\"}",
		"{\"version\":1,\"system_identifier\":\"42\",\"database\":"
		"\"d\","
		"\"slot\":\"s\",\"timeline\":-1,\"lsn\":\"0/10\",\"event\":"
		"\"streamed\"}",
	};
	obx_state_record_t rec;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(obx_state_decode(bad[i], strlen(bad[i]), &rec) ==
				  -1,
			      "accepted: %s", bad[i]);
}
END_TEST

Suite *startpoint_suite(void)
{
	Suite *s = suite_create("startpoint");
	TCase *tc = tcase_create("plan");
	tcase_add_test(tc, first_start_creates_the_slot_and_records_it);
	tcase_add_test(tc, a_slot_lost_after_streaming_is_never_recreated);
	tcase_add_test(tc, another_server_is_refused);
	tcase_add_test(tc, resumes_after_what_kafka_acknowledged);
	tcase_add_test(tc,
		       a_new_timeline_its_history_does_not_name_skips_nothing);
	tcase_add_test(tc, a_new_timeline_skips_what_both_timelines_share);
	tcase_add_test(tc,
		       timeline_histories_are_read_as_postgresql_writes_them);
	tcase_add_test(tc, a_confirmation_beyond_the_server_is_forgotten);
	tcase_add_test(tc, no_record_yet_is_recorded);
	tcase_add_test(tc, state_records_round_trip);
	tcase_add_test(tc, foreign_records_are_not_state);
	suite_add_tcase(s, tc);
	return s;
}
