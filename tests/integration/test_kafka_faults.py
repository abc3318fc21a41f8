"""Kafka faults while events flow: the connector retries, loses nothing,
keeps per-key order and never confirms an unacknowledged event.

On librdkafka's mock cluster the faults are injected protocol error codes;
on the real broker they are SIGKILLed brokers, with five requests in flight,
where the broker's own idempotent-sequence checks keep order.  The mock does
not check those sequences (librdkafka 2.0.2's Produce handler checks only
producer id and epoch), so there an injected error on an early batch could
let a later one land first; its runs keep one request in flight."""
import time

from harness import (KAFKA_KIND, IntegrationTest, Workload, check_delivery, main,
                     wait_until)


class KafkaFaultTest(IntegrationTest):

    kafka_kinds = ("mock", "real")

    def produce_through(self, slot, fault, in_flight, events=500, seconds=None):
        """Runs a workload while `fault()` disturbs Kafka; every event must
        arrive, in per-key order, and the slot be confirmed to the end."""
        d = self.outboxd(slot_name=slot,
                         kafka_max_in_flight_requests_per_connection=str(in_flight),
                         kafka_message_timeout_ms="600000")
        d.wait_streaming()
        self.insert_events([(slot, "e-0", "Warm", '{"seq": -1}')])
        self.consumer.read(["outbox.event." + slot], 1)
        before = self.pg.current_lsn()
        w = Workload(self.pg, slot, events=events, seconds=seconds).start()
        fault()
        w.wait()
        end = self.pg.current_lsn()
        self.assertGreater(end, before)
        wait_until(lambda: self.pg.confirmed_lsn(slot) >= end, 120, "confirm after the faults")
        records = self.consumer.read(["outbox.event." + slot], events + 1, timeout=120)
        dups = check_delivery(self, self.envelopes,
                              [r for r in records if dict(r.headers)["eventType"] != b"Warm"],
                              slot, events)
        print("%s: %d events, %d duplicates" % (slot, events, dups))
        self.assertIsNone(d.proc.poll(), "recovered by itself:\n" + d.output()[-2000:])
        self.assertEqual(d.stop(), 0)

    if KAFKA_KIND == "mock":
        def test_injected_produce_errors_are_retried(self):
            # NOT_LEADER_OR_FOLLOWER (6), NOT_ENOUGH_REPLICAS (19)
            self.produce_through("errs", lambda: [self.kafka.inject_produce_errors(3, code)
                                                  for code in (6, 19)], in_flight=1)

        def test_request_timeouts_are_retried(self):
            # REQUEST_TIMED_OUT (7): "possibly persisted", retried
            self.produce_through("timeouts", lambda: self.kafka.inject_produce_errors(3, 7),
                                 in_flight=1)
    else:
        def test_broker_killed_with_five_requests_in_flight(self):
            def kill_and_restart_twice():
                for _ in range(2):
                    time.sleep(0.5)
                    self.kafka.brokers_down()
                    time.sleep(2)
                    self.kafka.brokers_up()
            self.produce_through("kills", kill_and_restart_twice, in_flight=5, events=3000,
                                 seconds=15)

    def test_silent_brokers_and_a_full_queue_are_waited_out(self):
        d = self.outboxd(slot_name="qfull", kafka_queue_buffering_max_messages="10",
                         kafka_message_timeout_ms="600000")
        d.wait_streaming()
        self.kafka.brokers_down()
        try:
            w = Workload(self.pg, "qfull", events=300).start()
            w.wait()
            # no acknowledgement for 5 s: said, counted, metadata asked again
            d.wait_for_log(r"Kafka acknowledged nothing for 5 s with \d+ events in flight",
                           timeout=30)
            self.assertEqual(d.metrics()["outboxd_kafka_ack_stalls_total"], 1)
            self.assertIsNone(d.proc.poll())
            self.assertLess(self.pg.confirmed_lsn("qfull"), self.pg.current_lsn())
        finally:
            self.kafka.brokers_up()
        records = self.consumer.read(["outbox.event.qfull"], 300, timeout=90)
        check_delivery(self, self.envelopes, records, "qfull", 300)
        self.assertEqual(d.stop(), 0)


class FatalKafkaErrorTest(IntegrationTest):
    """An error a real broker returns only when librdkafka's idempotent
    producer has lost track of its sequence numbers (seen on the real
    three-broker cluster in a leader failover), so it is injected here."""

    kafka_kinds = ("mock",)

    def test_fatal_idempotence_error_replaces_the_producer(self):
        d = self.outboxd(slot_name="fatal")
        d.wait_streaming()
        self.insert_events([("fatal", "f-0", "Warmup", '{}')])
        self.consumer.read(["outbox.event.fatal"], 1)
        before = self.pg.current_lsn()
        # OUT_OF_ORDER_SEQUENCE_NUMBER (45): fatal for the idempotent
        # producer; the connector replaces it and resends from the slot
        self.kafka.inject_produce_errors(5, 45)
        self.insert_events([("fatal", "f-1", "Doomed", '{}')])
        d.wait_for_log("starting a new Kafka producer that resends everything after the "
                       "confirmed LSN")
        self.assertLessEqual(self.pg.confirmed_lsn("fatal"),
                             self.pg.commit_start(before, "outbox", "type = 'Doomed'"),
                             "nothing past the failed event is confirmed")
        records = self.consumer.read(["outbox.event.fatal"], 2, timeout=90)
        self.assertIn(b"Doomed", [dict(r.headers)["eventType"] for r in records])
        end = self.pg.current_lsn()
        wait_until(lambda: self.pg.confirmed_lsn("fatal") >= end, 60, "confirmed after")
        self.assertIsNone(d.proc.poll(), "never exits:\n" + d.output()[-3000:])
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    main()
