/* tracker.c - FIFO of transactions; confirms only fully acked prefixes. */
#include "outboxd/tracker.h"

#include <stdlib.h>

struct obx_txn {
	obx_txn_t *next;
	size_t pending;	      /* events not yet acked */
	obx_lsn_t commit_lsn; /* valid once closed */
	bool closed;
	bool abandoned; /* never confirms: the stream broke inside it */
	int64_t commit_time_us;
	int64_t received_us;
};

struct obx_tracker {
	obx_txn_t *head, *tail; /* oldest first */
	obx_txn_t *free_list;	/* recycled nodes: no allocation per txn */
	obx_txn_t *open;
	obx_txn_t *before_tail; /* the tail's predecessor, when known */
	size_t ntxns;
	size_t inflight;
	obx_lsn_t confirmed;
	obx_lsn_t produced; /* the newest closed transaction's commit end */
};

obx_tracker_t *obx_tracker_new(obx_lsn_t confirmed)
{
	obx_tracker_t *t = obx_xcalloc(1, sizeof(*t));
	t->confirmed = confirmed;
	return t;
}

static void free_chain(obx_txn_t *txn)
{
	while (txn) {
		obx_txn_t *next = txn->next;
		free(txn);
		txn = next;
	}
}

void obx_tracker_destroy(obx_tracker_t *t)
{
	if (!t)
		return;
	free_chain(t->head);
	free_chain(t->free_list);
	free(t);
}

/* Pops every finished transaction at the head, moving `confirmed`. */
static void advance(obx_tracker_t *t)
{
	while (t->head && t->head->closed && t->head->pending == 0) {
		obx_txn_t *done = t->head;
		if (!done->abandoned && done->commit_lsn > t->confirmed)
			t->confirmed = done->commit_lsn;
		t->head = done->next;
		if (!t->head)
			t->tail = NULL;
		if (t->before_tail == done)
			t->before_tail = NULL;
		done->next = t->free_list;
		t->free_list = done;
		t->ntxns--;
	}
}

int64_t obx_txn_commit_time(const obx_txn_t *txn)
{
	return txn->commit_time_us;
}

int64_t obx_txn_received_time(const obx_txn_t *txn)
{
	return txn->received_us;
}

obx_txn_t *obx_tracker_begin(obx_tracker_t *t, int64_t commit_time_us,
			     int64_t received_us)
{
	obx_txn_t *txn = t->free_list;
	if (txn)
		t->free_list = txn->next;
	else
		txn = obx_xmalloc(sizeof(*txn));
	*txn = (obx_txn_t){ .commit_time_us = commit_time_us,
			    .received_us = received_us };
	t->before_tail = t->tail;
	if (t->tail)
		t->tail->next = txn;
	else
		t->head = txn;
	t->tail = txn;
	t->open = txn;
	t->ntxns++;
	return txn;
}

void obx_tracker_add_event(obx_tracker_t *t, obx_txn_t *txn)
{
	txn->pending++;
	t->inflight++;
}

void obx_tracker_commit(obx_tracker_t *t, obx_txn_t *txn, obx_lsn_t commit_lsn)
{
	txn->commit_lsn = commit_lsn;
	if (commit_lsn > t->produced)
		t->produced = commit_lsn;
	txn->closed = true;
	if (t->open == txn)
		t->open = NULL;
	/*
	 * A transaction without events behind a finished-but-unacked one can
	 * only be confirmed together with it: fold it in, so that noise
	 * traffic during a Kafka outage does not grow the FIFO.
	 */
	obx_txn_t *prev = t->before_tail;
	if (txn == t->tail && txn->pending == 0 && prev && prev->closed &&
	    !prev->abandoned) {
		prev->commit_lsn = commit_lsn;
		prev->next = NULL;
		t->tail = prev;
		t->before_tail = NULL;
		txn->next = t->free_list;
		t->free_list = txn;
		t->ntxns--;
	}
	advance(t);
}

void obx_tracker_ack(obx_tracker_t *t, obx_txn_t *txn)
{
	txn->pending--;
	t->inflight--;
	if (txn == t->head)
		advance(t);
}

void obx_tracker_abandon_open(obx_tracker_t *t)
{
	if (!t->open)
		return;
	t->open->abandoned = true;
	t->open->closed = true;
	t->open = NULL;
	advance(t);
}

void obx_tracker_forget(obx_tracker_t *t, obx_lsn_t confirmed)
{
	for (obx_txn_t *txn = t->head; txn; txn = txn->next) {
		txn->abandoned = true;
		txn->closed = true;
	}
	t->open = NULL;
	t->before_tail = NULL;
	t->confirmed = confirmed;
	t->produced = confirmed;
	advance(t);
}

void obx_tracker_idle_position(obx_tracker_t *t, obx_lsn_t wal_end)
{
	if (!t->head && wal_end > t->confirmed)
		t->confirmed = wal_end;
}

obx_lsn_t obx_tracker_confirmed(const obx_tracker_t *t)
{
	return t->confirmed;
}

obx_lsn_t obx_tracker_produced(const obx_tracker_t *t)
{
	return t->produced > t->confirmed ? t->produced : t->confirmed;
}

size_t obx_tracker_inflight(const obx_tracker_t *t)
{
	return t->inflight;
}

size_t obx_tracker_pending_txns(const obx_tracker_t *t)
{
	return t->ntxns;
}
