/* test_tracker.c - the LSN invariant under every ack order we can draw. */
#include <stdlib.h>

#include "outboxd/tracker.h"
#include "suites.h"

/*
 * The model: transactions in commit order, each with a set of events.  The
 * highest confirmable LSN is the commit of the longest prefix of closed,
 * non-abandoned-or-skipped transactions whose events are all acked.
 */
typedef struct {
	obx_txn_t *handle;
	int events, acked;
	obx_lsn_t commit;
	int closed, abandoned;
} model_txn_t;

static obx_lsn_t model_confirmed(const model_txn_t *txns, int n,
				 obx_lsn_t floor)
{
	obx_lsn_t best = floor;
	for (int i = 0; i < n; i++) {
		if (!txns[i].closed || txns[i].acked < txns[i].events)
			break;
		if (!txns[i].abandoned && txns[i].commit > best)
			best = txns[i].commit;
	}
	return best;
}

START_TEST(random_ack_orders_match_the_model)
{
	enum { TXNS = 60, ROUNDS = 400 };
	srand(12345);
	for (int round = 0; round < ROUNDS; round++) {
		obx_tracker_t *t = obx_tracker_new(100);
		model_txn_t txns[TXNS] = { 0 };
		/* every event, as (txn index), acked in random order */
		int pending[TXNS * 8], npending = 0, ntx = 0;
		obx_lsn_t lsn = 1000;

		while (ntx < TXNS || npending > 0) {
			int stream_step =
			    ntx < TXNS && (npending == 0 || rand() % 3 != 0);
			if (stream_step) {
				model_txn_t *m = &txns[ntx];
				m->handle = obx_tracker_begin(t, 0, 0);
				m->events = rand() % 5; /* some have none */
				for (int e = 0; e < m->events; e++) {
					obx_tracker_add_event(t, m->handle);
					pending[npending++] = ntx;
				}
				lsn += 1 + (obx_lsn_t)(rand() % 50);
				m->commit = lsn;
				/* rarely, the stream breaks inside a txn */
				if (rand() % 40 == 0) {
					m->abandoned = 1;
					obx_tracker_abandon_open(t);
				} else {
					obx_tracker_commit(t, m->handle, lsn);
				}
				m->closed = 1;
				ntx++;
			} else {
				int k = rand() % npending;
				int owner = pending[k];
				pending[k] = pending[--npending];
				txns[owner].acked++;
				obx_tracker_ack(t, txns[owner].handle);
			}
			obx_lsn_t want = model_confirmed(txns, ntx, 100);
			ck_assert_uint_eq(obx_tracker_confirmed(t), want);
			ck_assert_uint_eq(obx_tracker_inflight(t),
					  (size_t)npending);
		}
		ck_assert_uint_eq(obx_tracker_pending_txns(t), 0);
		obx_tracker_destroy(t);
	}
}
END_TEST

START_TEST(open_transaction_blocks_confirmation)
{
	obx_tracker_t *t = obx_tracker_new(10);
	obx_txn_t *a = obx_tracker_begin(t, 0, 0);
	obx_tracker_add_event(t, a);
	obx_tracker_ack(t, a);
	/* acked, but not committed yet: nothing moves, keepalives neither */
	ck_assert_uint_eq(obx_tracker_confirmed(t), 10);
	obx_tracker_idle_position(t, 500);
	ck_assert_uint_eq(obx_tracker_confirmed(t), 10);
	obx_tracker_commit(t, a, 50);
	ck_assert_uint_eq(obx_tracker_confirmed(t), 50);
	obx_tracker_destroy(t);
}
END_TEST

START_TEST(idle_keepalive_confirms_wal_end)
{
	obx_tracker_t *t = obx_tracker_new(10);
	obx_tracker_idle_position(t, 400);
	ck_assert_uint_eq(obx_tracker_confirmed(t), 400);
	/* never backwards */
	obx_tracker_idle_position(t, 300);
	ck_assert_uint_eq(obx_tracker_confirmed(t), 400);

	obx_txn_t *a = obx_tracker_begin(t, 0, 0);
	obx_tracker_add_event(t, a);
	obx_tracker_commit(t, a, 450);
	obx_tracker_idle_position(t, 900);
	ck_assert_uint_eq(obx_tracker_confirmed(t), 400);
	obx_tracker_ack(t, a);
	ck_assert_uint_eq(obx_tracker_confirmed(t), 450);
	obx_tracker_idle_position(t, 900);
	ck_assert_uint_eq(obx_tracker_confirmed(t), 900);
	obx_tracker_destroy(t);
}
END_TEST

START_TEST(empty_transactions_fold_into_a_waiting_one)
{
	obx_tracker_t *t = obx_tracker_new(0);
	obx_txn_t *busy = obx_tracker_begin(t, 0, 0);
	obx_tracker_add_event(t, busy);
	obx_tracker_commit(t, busy, 100);
	for (obx_lsn_t lsn = 101; lsn < 10101; lsn++) {
		obx_txn_t *noise = obx_tracker_begin(t, 0, 0);
		obx_tracker_commit(t, noise, lsn);
	}
	/* 10000 noise transactions while Kafka holds one ack: bounded */
	ck_assert_uint_le(obx_tracker_pending_txns(t), 2);
	ck_assert_uint_eq(obx_tracker_confirmed(t), 0);
	obx_tracker_ack(t, busy);
	ck_assert_uint_eq(obx_tracker_confirmed(t), 10100);
	obx_tracker_destroy(t);
}
END_TEST

START_TEST(forget_drops_confirmations_of_another_timeline)
{
	obx_tracker_t *t = obx_tracker_new(0);
	obx_txn_t *acked = obx_tracker_begin(t, 0, 0);
	obx_tracker_commit(t, acked, 500);
	obx_txn_t *waiting = obx_tracker_begin(t, 0, 0);
	obx_tracker_add_event(t, waiting);
	obx_tracker_commit(t, waiting, 900);
	obx_txn_t *open = obx_tracker_begin(t, 0, 0);
	obx_tracker_add_event(t, open);
	ck_assert_uint_eq(obx_tracker_confirmed(t), 500);
	/* 900 was produced whole, not yet acknowledged; the open one not */
	ck_assert_uint_eq(obx_tracker_produced(t), 900);

	/* the new server's slot is at 300: nothing above it stays confirmed,
	 * and the old transactions' late acks confirm nothing */
	obx_tracker_forget(t, 300);
	ck_assert_uint_eq(obx_tracker_confirmed(t), 300);
	ck_assert_uint_eq(obx_tracker_produced(t), 300);
	ck_assert_uint_eq(obx_tracker_inflight(t), 2);
	obx_tracker_ack(t, waiting);
	obx_tracker_ack(t, open);
	ck_assert_uint_eq(obx_tracker_confirmed(t), 300);
	ck_assert_uint_eq(obx_tracker_pending_txns(t), 0);

	/* what the new server streams confirms as usual */
	obx_txn_t *fresh = obx_tracker_begin(t, 0, 0);
	obx_tracker_add_event(t, fresh);
	obx_tracker_commit(t, fresh, 400);
	obx_tracker_ack(t, fresh);
	ck_assert_uint_eq(obx_tracker_confirmed(t), 400);
	obx_tracker_destroy(t);
}
END_TEST

Suite *tracker_suite(void)
{
	Suite *s = suite_create("tracker");
	TCase *tc = tcase_create("invariant");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, random_ack_orders_match_the_model);
	tcase_add_test(tc, open_transaction_blocks_confirmation);
	tcase_add_test(tc, idle_keepalive_confirms_wal_end);
	tcase_add_test(tc, empty_transactions_fold_into_a_waiting_one);
	tcase_add_test(tc, forget_drops_confirmations_of_another_timeline);
	suite_add_tcase(s, tc);
	return s;
}
