"""Crash consistency: the connector is killed with SIGKILL at random moments
while a workload runs, and restarted each time.  An independent consumer
then proves that no event is missing and that, per key, first deliveries
follow commit order; it reports how many duplicates the crashes caused."""
import os
import random
import signal
import time

from harness import IntegrationTest, Workload, check_delivery, main, wait_until

EVENTS = int(os.environ.get("CRASH_EVENTS", "20000"))
KILLS = int(os.environ.get("CRASH_KILLS", "6"))


class CrashConsistencyTest(IntegrationTest):

    def test_sigkill_at_random_moments(self):
        rng = random.Random(int(os.environ.get("CRASH_SEED", "0")) or None)
        # the slot exists before the first commit: left to outboxd's first
        # start (slow under ASan) the first transaction could commit before
        # the slot, and its events were never outboxd's to deliver
        self.pg.create_slot("crash")
        # written over about as long as the kills take
        workload = Workload(self.pg, "crash", events=EVENTS, per_txn=10, keys=50,
                            seconds=2.5 * KILLS).start()
        kills = 0
        while kills < KILLS:
            d = self.outboxd(slot_name="crash", log_level="info")
            time.sleep(rng.uniform(0.3, 2.5))
            self.assertIsNone(d.proc.poll(), d.output()[-2000:])
            d.proc.send_signal(signal.SIGKILL)
            d.wait(30)
            kills += 1
            # the slot is released when the server notices the walsender's
            # client is gone; the next start waits for it if need be
        workload.wait()
        d = self.outboxd(slot_name="crash", log_level="info")
        d.wait_streaming()
        end = self.pg.current_lsn()
        wait_until(lambda: self.pg.confirmed_lsn("crash") >= end, 180, "final confirmation")
        records = self.consumer.read(["outbox.event.crash"], EVENTS, timeout=120)
        duplicates = check_delivery(self, self.envelopes, records, "crash", EVENTS)
        print("crash test: %d events, %d SIGKILLs, %d records read, %d duplicates (%.1f%%)"
              % (EVENTS, kills, len(records), duplicates, 100.0 * duplicates / EVENTS))
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    main()
