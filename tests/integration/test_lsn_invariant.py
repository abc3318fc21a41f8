"""The one invariant (SPEC section 1): the slot's confirmed_flush_lsn never
passes an event Kafka has not acknowledged.  Acks are held back by taking the
brokers down; the LSN must stand still, then move once they return."""
import signal
import time

from harness import IntegrationTest, main, wait_until


class LsnInvariantTest(IntegrationTest):

    def test_confirmed_lsn_waits_for_kafka_acks(self):
        d = self.outboxd(slot_name="hold", kafka_message_timeout_ms="600000")
        d.wait_streaming()
        self.insert_events([("hold", "h-0", "Warmup", '{"n": 0}')])
        self.assertEqual(len(self.consumer.read(["outbox.event.hold"], 1)), 1)
        self.consumer.close()

        self.kafka.brokers_down()
        try:
            idle = self.pg.current_lsn()
            wait_until(lambda: self.pg.confirmed_lsn("hold") >= idle, 30,
                       "idle confirmation before the outage")
            before = self.pg.current_lsn()
            for i in range(1, 21):
                self.insert_events([("hold", "h-%d" % (i % 4), "Held", '{"n": %d}' % i)])
            # noise transactions after the held events must not move it either
            for _ in range(5):
                self.pg.sql("UPDATE orders SET status = 'X'")
            samples = []
            for _ in range(8):  # several status intervals of the connector
                samples.append(self.pg.confirmed_lsn("hold"))
                time.sleep(0.5)
            # the bound: where the first held transaction's commit starts
            bound = self.pg.commit_start(before, "outbox",
                                         "type = 'Held' AND payload->>'n' = '1'")
            self.assertTrue(all(s <= bound for s in samples),
                            "confirmed %s passed the first held commit at %x while events "
                            "were unacked" % ([hex(s) for s in samples], bound))
            self.assertIsNone(d.proc.poll(), "still running during the outage")
        finally:
            self.kafka.brokers_up()

        end = self.pg.current_lsn()
        self.consumer = __import__("harness").Consumer(self.kafka.bootstrap)
        records = self.consumer.read(["outbox.event.hold"], 21, timeout=90)
        self.assertEqual(len(records), 21, "everything arrives after the outage")
        held = sorted(self.envelopes.decode(r.value)["payload"] for r in records
                      if r.headers and dict(r.headers)["eventType"] == b"Held")
        self.assertEqual(len(held), 20)
        wait_until(lambda: self.pg.confirmed_lsn("hold") >= end, 60,
                   "the LSN to move once Kafka acked")
        self.assertEqual(d.stop(), 0)

    def test_backpressure_stops_reading_but_keeps_the_connection(self):
        # a tiny in-flight limit: the connector must stop reading the slot,
        # keep answering the server, and resume by itself
        d = self.outboxd(slot_name="pressure", max_inflight_events="5",
                         kafka_message_timeout_ms="600000")
        d.wait_streaming()
        self.kafka.brokers_down()
        try:
            for i in range(10):
                self.insert_events([("pressure", "p-%d" % (i % 3), "E", '{"n": %d}' % j)
                                    for j in range(10)])
            time.sleep(3)
            slot = self.pg.slot("pressure")
            self.assertNotEqual(slot[1], "", "still connected while backpressured")
        finally:
            self.kafka.brokers_up()
        self.assertEqual(len(self.consumer.read(["outbox.event.pressure"], 100, timeout=90)), 100)
        self.assertEqual(d.stop(), 0)

    def test_sigterm_waits_for_kafka_connected_or_not(self):
        """Events in flight (brokers down), then SIGTERM, with the server
        connection up or gone: the stop waits for the acks, bounded by
        shutdown.timeout.ms, and exits 0 only when everything drained."""
        cases = ((True, False, 5000, 1), (True, True, 60000, 0), (False, False, 5000, 1))
        for disconnected, brokers_return, timeout_ms, code in cases:
            with self.subTest(disconnected=disconnected, brokers_return=brokers_return):
                slot = aggregate = "sigterm%d%d" % (disconnected, code)
                d = self.outboxd(slot_name=slot, shutdown_timeout_ms=str(timeout_ms),
                                 kafka_message_timeout_ms="600000")
                d.wait_streaming()
                self.kafka.brokers_down()
                try:
                    before = self.pg.current_lsn()
                    wait_until(lambda: self.pg.confirmed_lsn(slot) >= before, 30,
                               "idle confirmation before the outage")
                    self.insert_events([(aggregate, "k-%d" % i, "InFlight", '{"n": %d}' % i)
                                        for i in range(5)])
                    committed = self.pg.current_lsn()  # the end of their commit
                    wait_until(lambda: d.metrics()["outboxd_inflight_events"] == 5, 30,
                               "events in flight")
                    if disconnected:
                        # immediate: a fast shutdown waits for the walsender,
                        # which waits for outboxd to confirm what Kafka holds
                        self.pg.stop("immediate")
                    try:
                        if disconnected:
                            d.wait_for_log(r"could not connect to the server.*reconnecting in")
                        d.proc.send_signal(signal.SIGTERM)
                        if brokers_return:
                            time.sleep(1)
                            self.kafka.brokers_up()
                        self.assertEqual(d.wait(90), code, d.output()[-3000:])
                    finally:
                        if disconnected:
                            self.pg.start()
                finally:
                    self.kafka.brokers_up()
                if code:
                    self.assertIn("Kafka did not acknowledge everything within "
                                  "shutdown.timeout.ms: 5 events stay unconfirmed", d.output())
                    self.assertLess(self.pg.confirmed_lsn(slot), committed,
                                    "nothing confirmed past them")
                else:
                    self.assertIn("stopped while disconnected; Kafka acknowledged everything",
                                  d.output())
                    self.assertGreaterEqual(
                        len(self.consumer.read(["outbox.event." + aggregate], 5)), 5)

    def test_delivery_that_finally_fails_stops_without_confirming(self):
        d = self.outboxd(slot_name="timeout", kafka_message_timeout_ms="3000")
        d.wait_streaming()
        self.kafka.brokers_down()
        try:
            before = self.pg.current_lsn()
            self.insert_events([("timeout", "t-1", "Lost?", '{"n": 1}')])
            self.assertEqual(d.wait(60), 1, d.output())
        finally:
            self.kafka.brokers_up()
        self.assertRegex(d.output(), r"a Kafka delivery failed: .*stopping without confirming")
        self.assertLessEqual(self.pg.confirmed_lsn("timeout"),
                             self.pg.commit_start(before, "outbox", "type = 'Lost?'"))
        # a restart sends it again: nothing was lost
        d = self.outboxd(slot_name="timeout")
        d.wait_streaming()
        records = self.consumer.read(["outbox.event.timeout"], 1)
        self.assertEqual(len(records), 1)
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    main()
