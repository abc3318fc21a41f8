"""delivery.guarantee=exactly-once: the connector is killed with SIGKILL at
random moments while a workload runs, and restarted each time; Kafka's own
console consumer (Java) reading with isolation.level=read_committed then
proves that every event is there exactly once, and per key in commit
order."""
import os
import random
import signal
import subprocess
import time

from harness import IntegrationTest, Workload, check_delivery, main, wait_until
import real_kafka

EVENTS = int(os.environ.get("EOS_EVENTS", "6000"))
KILLS = int(os.environ.get("EOS_KILLS", "8"))


class Record:
    def __init__(self, key, value):
        self.key, self.value = key, value


class PayloadValues:
    """check_delivery's envelope reader for value.format=payload records."""

    @staticmethod
    def decode(record_value):
        key, payload = record_value
        return {"payload": payload, "aggregate_id": key}


def read_committed(kafka, topic, timeout_ms=15000):
    """Every record a read_committed consumer sees in `topic`: (key, value)
    in each partition's order, by Kafka's console consumer."""
    out = subprocess.run(real_kafka.java_argv(
        "org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", kafka.bootstrap,
        "--topic", topic, "--from-beginning", "--isolation-level", "read_committed",
        "--timeout-ms", str(timeout_ms), "--formatter-property", "print.key=true",
        "--formatter-property", "key.separator=|", heap="256m"),
        capture_output=True, text=True, timeout=timeout_ms / 1000 + 120)
    records = []
    assert out.returncode == 0, out.stderr[-2000:]
    for line in out.stdout.splitlines():
        key, sep, value = line.partition("|")
        if not sep:
            continue  # the tool's own notes
        records.append(Record(key, (key, value)))
    return records


class ExactlyOnceTest(IntegrationTest):

    # the frozen instance's walsender lets the slot go after this
    # (outboxd reports every second)
    pg_conf = "wal_sender_timeout = '4s'"

    def test_sigkill_at_random_moments_duplicates_nothing(self):
        rng = random.Random(int(os.environ.get("CRASH_SEED", "0")) or None)
        settings = dict(slot_name="eos", log_level="info", delivery_guarantee="exactly-once",
                        value_format="payload")
        self.pg.create_slot("eos")
        workload = Workload(self.pg, "eos", events=EVENTS, per_txn=10, keys=50).start()
        for _ in range(KILLS):
            d = self.outboxd(**settings)
            time.sleep(rng.uniform(0.3, 2.5))
            self.assertIsNone(d.proc.poll(), d.output()[-2000:])
            d.proc.send_signal(signal.SIGKILL)
            d.wait(30)
        workload.wait()
        d = self.outboxd(**settings)
        d.wait_streaming()
        end = self.pg.current_lsn()
        wait_until(lambda: self.pg.confirmed_lsn("eos") >= end, 180, "final confirmation")
        records = read_committed(self.kafka, "outbox.event.eos")
        duplicates = check_delivery(self, PayloadValues, records, "eos", EVENTS)
        print("exactly-once crash test: %d events, %d SIGKILLs, %d records read "
              "(read_committed), %d duplicates" % (EVENTS, KILLS, len(records), duplicates))
        self.assertEqual(duplicates, 0, "a read_committed consumer saw duplicates")
        self.assertEqual(d.stop(), 0)

    def test_a_lost_connection_aborts_and_sends_again(self):
        """The walsender is terminated while Kafka transactions are open:
        each time the open one is aborted and streaming starts again after
        the last commit; nothing is lost, nothing is seen twice."""
        settings = dict(slot_name="lost", delivery_guarantee="exactly-once",
                        value_format="payload", route_topic_replacement="lost.${routedByValue}")
        d = self.outboxd(**settings)
        d.wait_streaming()
        events = 20000
        # large transactions: a connection is likely cut inside one
        w = Workload(self.pg, "lost", events=events, per_txn=500, keys=50).start()
        aborts = 0
        while w.thread.is_alive() and aborts < 3:
            pid = self.pg.slot("lost")[1]
            if pid:
                self.pg.sql("SELECT pg_terminate_backend(%s)" % pid)
            time.sleep(0.5)
            aborts = d.output().count("aborted the open Kafka transaction")
        w.wait()
        self.assertGreater(aborts, 0, "no connection was cut inside a transaction:\n"
                           + d.output()[-3000:])
        end = self.pg.current_lsn()
        try:
            wait_until(lambda: self.pg.confirmed_lsn("lost") >= end, 120, "final confirmation")
        except AssertionError:
            raise AssertionError("not confirmed:\n" + d.output()[-5000:])
        records = read_committed(self.kafka, "lost.lost")
        duplicates = check_delivery(self, PayloadValues, records, "lost", events)
        self.assertEqual(duplicates, 0, "a read_committed consumer saw duplicates:\n"
                         + "\n".join(l for l in d.output().splitlines()
                                      if " debug " not in l)[-6000:])
        # the transaction metrics: every event counted once, in the
        # transaction that committed it; the aborted ones counted apart
        m = d.metrics()
        committed = m['outboxd_kafka_transactions_total{result="committed"}']
        self.assertGreater(m['outboxd_kafka_transactions_total{result="aborted"}'], 0)
        self.assertEqual(m["outboxd_kafka_transaction_events_sum"], events)
        self.assertEqual(m["outboxd_kafka_transaction_events_count"], committed)
        self.assertEqual(m["outboxd_kafka_transaction_seconds_count"], committed)
        self.assertEqual(m["outboxd_commit_to_ack_seconds_count"], events)
        self.assertEqual(d.stop(), 0)

    def test_a_second_instance_fences_the_first(self):
        """The first instance is frozen halfway through a large PostgreSQL
        transaction (its Kafka transaction open) until the server drops its
        connection; a second one takes the slot over, and its first Kafka transaction
        fences the first.  Thawed, the first stops (exit 1); a
        read_committed consumer sees every event once."""
        settings = dict(slot_name="fence", delivery_guarantee="exactly-once",
                        value_format="payload", route_topic_replacement="fence.${routedByValue}")
        first = self.outboxd(**settings)
        first.wait_streaming()
        events = 20000
        self.pg.sql("INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) "
                    "SELECT gen_random_uuid(), 'big', 'k-' || (g %% 50), 'Seq', "
                    "jsonb_build_object('seq', g) FROM generate_series(0, %d) g" % (events - 1))

        def midway():
            m = first.metrics()
            produced = sum(v for k, v in m.items()
                           if k.startswith("outboxd_events_produced_total"))
            return produced > 0
        wait_until(midway, 60, "the first instance producing", interval=0.005)
        first.proc.send_signal(signal.SIGSTOP)
        try:
            # its walsender gives up on the silent client after
            # wal_sender_timeout (terminating it instead would hang in
            # sending the client its error) and releases the slot
            second = self.outboxd(**settings)
            end = self.pg.current_lsn()
            try:
                wait_until(lambda: self.pg.confirmed_lsn("fence") >= end, 120,
                           "the second instance to confirm the transaction")
            except AssertionError:
                raise AssertionError("the second instance:\n" + second.output()[-4000:])
        finally:
            first.proc.send_signal(signal.SIGCONT)
        self.assertEqual(first.wait(60), 1, first.output()[-3000:])
        self.assertRegex(first.output(), r"another outboxd with the same "
                                         r"kafka.transactional.id took over")
        records = read_committed(self.kafka, "fence.big")
        duplicates = check_delivery(self, PayloadValues, records, "fence", events)
        self.assertEqual(duplicates, 0, "a read_committed consumer saw duplicates")
        self.assertEqual(second.stop(), 0)


if __name__ == "__main__":
    main()
