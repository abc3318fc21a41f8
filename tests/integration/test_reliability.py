"""PostgreSQL faults: the connector recovers by itself, loses nothing, and
never confirms an unacknowledged event.  Kafka faults: test_kafka_faults."""
import os
import signal
import subprocess
import time

from harness import (PG_BIN, IntegrationTest, Workload, check_delivery, main, wait_until)


class PostgresFaultTest(IntegrationTest):

    def stream_and_check(self, d, workload, topic, timeout=120):
        workload.wait()
        records = self.consumer.read([topic], workload.events, timeout=timeout)
        try:
            dups = check_delivery(self, self.envelopes, records, workload.aggregate,
                                  workload.events)
        except AssertionError as e:  # what outboxd said, for the next reader
            raise AssertionError("%s\n%d records read; outboxd's log:\n%s" % (
                e, len(records), d.output()[-6000:])) from None
        print("%s: %d events, %d duplicates, %d client retries"
              % (topic, workload.events, dups, workload.failures))
        self.assertIsNone(d.proc.poll(), "recovered by itself:\n" + d.output()[-2000:])
        return dups

    def test_server_restarted_twice_mid_workload(self):
        d = self.outboxd(slot_name="restarts")
        d.wait_streaming()
        events = 8000
        w = Workload(self.pg, "restarts", events=events).start()
        for part in (1, 2):
            wait_until(lambda: w.committed > events * part // 3, 120, "workload progress")
            self.pg.restart()
        dups = self.stream_and_check(d, w, "outbox.event.restarts")
        self.assertGreaterEqual(d.metrics()["outboxd_reconnects_total"], 2)
        # PostgreSQL 15 saves a slot's confirmed position lazily, so after
        # a restart it resends acknowledged transactions: outboxd resumes
        # after what it produced instead of producing them again
        self.assertLessEqual(dups, events // 100, "duplicates after two server restarts")
        self.assertGreater(d.metrics()["outboxd_resume_skipped_wal_bytes_total"], 0)
        end = self.pg.current_lsn()
        wait_until(lambda: self.pg.confirmed_lsn("restarts") >= end, 60, "confirm after restarts")
        self.assertEqual(d.stop(), 0)

    def test_walsender_terminated(self):
        d = self.outboxd(slot_name="terminated")
        d.wait_streaming()
        w = Workload(self.pg, "terminated", events=2000).start()
        wait_until(lambda: w.committed > 200, 30, "workload progress")
        pid = self.pg.slot("terminated")[1]
        self.pg.sql("SELECT pg_terminate_backend(%s)" % pid)
        self.stream_and_check(d, w, "outbox.event.terminated")
        self.assertGreaterEqual(d.metrics()["outboxd_reconnects_total"], 1)
        self.assertEqual(d.stop(), 0)

    def test_slot_busy_during_a_rolling_restart(self):
        old = self.outboxd(slot_name="rolling")
        old.wait_streaming()
        new = self.outboxd(slot_name="rolling")
        new.wait_for_log(r"is active for PID.*reconnecting in")
        self.assertIsNone(new.proc.poll(), "the second connector waits, no crash")
        self.assertEqual(old.stop(), 0)
        new.wait_for_log(r"streaming from replication slot", timeout=60)
        self.insert_events([("rolling", "r-1", "AfterHandover", '{"n": 1}')])
        self.assertEqual(len(self.consumer.read(["outbox.event.rolling"], 1)), 1)
        self.assertEqual(new.stop(), 0)

    def test_stalled_connection_is_detected(self):
        d = self.outboxd(slot_name="stall", replication_timeout_ms="3000")
        d.wait_streaming()
        pid = int(self.pg.slot("stall")[1])
        # a frozen walsender: the socket stays open, nothing comes
        os.kill(pid, signal.SIGSTOP)
        try:
            d.wait_for_log(r"no message from the server for 3000 ms", timeout=30)
        finally:
            os.kill(pid, signal.SIGCONT)
        # the thawed walsender finds its client gone and releases the slot
        d.wait_for_log(r"streaming from replication slot \"stall\"[^\n]*\n(.|\n)*"
                       r"streaming from replication slot \"stall\"", timeout=90)
        self.insert_events([("stall", "s-1", "AfterStall", '{"n": 1}')])
        self.assertEqual(len(self.consumer.read(["outbox.event.stall"], 1)), 1)
        self.assertEqual(d.stop(), 0)

    def test_connection_refused_at_start_is_retried(self):
        self.pg.stop()
        try:
            d = self.outboxd(slot_name="refused")
            d.wait_for_log(r"could not connect to the server.*reconnecting in")
            self.assertIsNone(d.proc.poll())
        finally:
            self.pg.start()
        d.wait_streaming()
        self.assertEqual(d.stop(), 0)

    def test_slot_dropped_while_running_is_a_lost_slot(self):
        d = self.outboxd(slot_name="dropped")
        d.wait_streaming()

        def drop():
            pid = self.pg.slot("dropped")[1]
            if pid:
                self.pg.sql("SELECT pg_terminate_backend(%s)" % pid)
            try:
                self.pg.sql("SELECT pg_drop_replication_slot('dropped')")
                return True
            except Exception:
                return False
        wait_until(drop, 30, "dropping the slot")
        self.assertEqual(d.wait(60), 3, d.output()[-2000:])
        self.assertIn('replication slot "dropped" does not exist', d.output())
        self.assertIsNone(self.pg.slot("dropped"), "not silently recreated")

    def test_invalidated_slot_is_a_lost_slot(self):
        d = self.outboxd(slot_name="invalid")
        d.wait_streaming()
        self.assertEqual(d.stop(), 0)
        self.pg.invalidate_slot("invalid")
        try:
            d = self.outboxd(slot_name="invalid")
            self.assertEqual(d.wait(60), 3, d.output()[-2000:])
            self.assertRegex(d.output(), r"replication slot \"invalid\" is lost")
        finally:
            self.pg.sql("SELECT pg_drop_replication_slot('invalid')")


class GermanServerTest(IntegrationTest):
    """The faults whose handling depends on what the server answers, on a
    server whose messages are German: outboxd tells a retry from a lost
    slot by SQLSTATE and connection status alone, never by message text."""

    pg_conf = "lc_messages = 'de_DE.UTF-8'"

    def test_the_server_speaks_german(self):
        out = subprocess.run(
            [PG_BIN + "/psql", "-X", "-h", self.pg.root, "-p", str(self.pg.port), "-U", "postgres",
             "-d", self.pg.dbname, "-c", "SELECT * FROM no_such_table"],
            capture_output=True, text=True)
        self.assertIn("FEHLER", out.stderr, "the precondition of this class")

    stream_and_check = PostgresFaultTest.stream_and_check
    test_walsender_terminated = PostgresFaultTest.test_walsender_terminated
    test_slot_dropped_while_running_is_a_lost_slot = \
        PostgresFaultTest.test_slot_dropped_while_running_is_a_lost_slot
    test_invalidated_slot_is_a_lost_slot = PostgresFaultTest.test_invalidated_slot_is_a_lost_slot


if __name__ == "__main__":
    main()
