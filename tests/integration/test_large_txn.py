"""One transaction with 500,000 outbox rows streams through with bounded
memory (backpressure) and is confirmed only once its last event is acked.
Counts by high watermarks: the mock cluster keeps only the last 5 MiB of
each partition."""
import os
import time

from harness import IntegrationTest, main, wait_until

ROWS = int(os.environ.get("LARGE_TXN_ROWS", "500000"))


def peak_rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0


def sanitized(pid):
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


class LargeTransactionTest(IntegrationTest):

    def test_half_a_million_rows_in_one_transaction(self):
        d = self.outboxd(slot_name="large", log_level="info", stats_interval_ms="5000")
        d.wait_streaming()
        before = self.pg.current_lsn()
        self.pg.sql("INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) "
                    "SELECT gen_random_uuid(), 'bulk', 'k-' || (g %% 64), 'Bulk', "
                    "jsonb_build_object('seq', g, 'pad', repeat('x', 200)) "
                    "FROM generate_series(1, %d) g" % ROWS)
        end = self.pg.current_lsn()

        # `end` is the end of the transaction's commit record (nothing else
        # writes here).  While the walsender is still decoding, outboxd has
        # nothing in flight and may confirm the keepalive position, which
        # lies inside the transaction, before its commit: a restart still
        # decodes the whole transaction.  What must never happen is a
        # confirmation at its commit while events are unacknowledged.
        samples = 0
        highest = 0
        while True:
            # confirmed first: an ack that lands between the two reads must
            # not look like a confirmation ahead of it (acks=all answers
            # only once the high watermark covers the records)
            confirmed = self.pg.confirmed_lsn("large")
            acked = self.consumer.high_watermarks("outbox.event.bulk")
            if acked >= ROWS:
                break
            self.assertLess(confirmed, end,
                            "confirmed the commit with %d of %d acked" % (acked, ROWS))
            highest = max(highest, confirmed)
            self.assertIsNone(d.proc.poll(), d.output()[-2000:])
            samples += 1
            time.sleep(0.5)
        self.assertGreater(samples, 0, "sampled while streaming")
        wait_until(lambda: self.pg.confirmed_lsn("large") >= end, 60, "confirm after the last ack")
        self.assertEqual(self.consumer.high_watermarks("outbox.event.bulk"), ROWS)
        rss = peak_rss_mb(d.proc.pid)
        print("large transaction: %d rows, %.0f MB of WAL, highest confirmation before the last "
              "ack %.0f MB into it, outboxd peak RSS %.0f MiB (%s build)"
              % (ROWS, (end - before) / 1e6, max(0, highest - before) / 1e6, rss, "sanitizer" if "sanitize" in os.environ.get("OUTBOXD_BIN", "") else "plain"))
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    main()
