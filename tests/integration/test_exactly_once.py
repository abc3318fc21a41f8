"""delivery.guarantee=exactly-once on real brokers: crashes, broker and
server restarts, lost connections, commits in doubt and a second
instance; Kafka's own Java consumer reading with
isolation.level=read_committed (RealKafka.read_committed) then proves that
every event is there exactly once, and per key in commit order."""
import json
import os
import random
import signal
import time

from harness import IntegrationTest, Workload, check_delivery, main, wait_until

EVENTS = int(os.environ.get("EOS_EVENTS", "10000"))
KILLS = int(os.environ.get("EOS_KILLS", "20"))


class Record:
    def __init__(self, key, value):
        self.key, self.value = key, value


class PayloadValues:
    """check_delivery's envelope reader for value.format=payload records."""

    @staticmethod
    def decode(record_value):
        key, payload = record_value
        return {"payload": payload, "aggregate_id": key}


class DeadLetterValues:
    """check_delivery's reader for dead letters (value: the JSON document
    of the bad row, whose columns are text)."""

    @staticmethod
    def decode(record_value):
        key, doc = record_value
        return {"payload": json.loads(doc)["columns"]["payload"], "aggregate_id": key}


def bad(slot):
    """An aggregate type whose rows route to "<prefix>.bad <slot>", not a
    valid topic name: each is a bad row, sent to the dead letter topic
    inside the same Kafka transactions as the good rows."""
    return "bad " + slot


def read_committed_each(kafka, topics):
    """Every record a read_committed consumer that is not librdkafka sees
    in each of `topics` (RealKafka.read_committed), as check_delivery reads
    them: a list per topic, each partition in its order."""
    return [[Record(key, (key, value)) for key, value in records]
            for records in kafka.read_committed(topics)]


def read_committed(kafka, topic):
    """read_committed_each for one topic."""
    return read_committed_each(kafka, [topic])[0]


class CrashesBody:
    """The crash test, one body for each Kafka the classes below give it:
    the connector is SIGKILLed KILLS times at random moments while a
    workload runs, restarted each time; a Kafka broker (on the cluster: the
    transaction coordinator) is restarted twice and PostgreSQL once, each
    while a connector streams.  A read_committed consumer that is not
    librdkafka then finds every event exactly once, per key in commit
    order."""

    # the walsender of a connector blocked in a Kafka call (or frozen, in
    # the fencing test) gives up on it after this (outboxd reports every
    # second): outages also cut replication connections inside Kafka
    # transactions
    pg_conf = "wal_sender_timeout = '4s'"

    def coordinator(self):
        """The broker leading __transaction_state (one partition here)."""
        leaders = self.kafka.leaders("__transaction_state")
        return leaders.get(0) or self.kafka.brokers[0].id

    def restart_broker(self):
        victim = self.coordinator()
        self.kafka.kill(victim)
        time.sleep(2)
        self.kafka.start(victim)
        return victim

    def test_sigkills_broker_and_server_restarts_duplicate_nothing(self):
        rng = random.Random(int(os.environ.get("CRASH_SEED", "0")) or None)
        slot = "eos_crash"
        settings = dict(slot_name=slot, log_level="info", delivery_guarantee="exactly-once",
                        value_format="payload", route_topic_replacement="eos.${routedByValue}")
        self.pg.create_slot(slot)
        # written over about as long as the kills' random waits add up to
        workload = Workload(self.pg, slot, events=EVENTS, per_txn=10, keys=50,
                            seconds=1.4 * KILLS).start()
        faults = {KILLS // 4: "broker", KILLS // 2: "server", 3 * KILLS // 4: "broker"}
        done = []
        for i in range(KILLS):
            d = self.outboxd(**settings)
            time.sleep(rng.uniform(0.3, 2.5))
            if faults.get(i) == "broker":
                done.append("broker %d restarted" % self.restart_broker())
            elif faults.get(i) == "server":
                self.pg.restart()
                done.append("PostgreSQL restarted")
            self.assertIsNone(d.proc.poll(), d.output()[-3000:])
            d.proc.send_signal(signal.SIGKILL)
            d.wait(30)
        workload.wait()
        d = self.outboxd(**settings)
        d.wait_streaming()
        end = self.pg.current_lsn()
        wait_until(lambda: self.pg.confirmed_lsn(slot) >= end, 180, "final confirmation")
        records = read_committed(self.kafka, "eos." + slot)
        duplicates = check_delivery(self, PayloadValues, records, slot, EVENTS)
        print("exactly-once crash test on %d broker(s): %d events, %d SIGKILLs, %s; %d records "
              "read (read_committed), %d duplicates" % (
                  len(self.kafka.brokers), EVENTS, KILLS, ", ".join(done), len(records),
                  duplicates))
        self.assertEqual(duplicates, 0, "a read_committed consumer saw duplicates")
        self.assertEqual(len(records), EVENTS)
        self.assertEqual(d.stop(), 0)


class ExactlyOnceTest(IntegrationTest):

    pg_conf = CrashesBody.pg_conf
    # the coordinator looks for transactions past their timeout every
    # 10 s by default; the oversized-transaction test needs it sooner
    kafka_options = {"broker_conf": {
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": 200},
        "proxied": True}  # test_a_commit_reported_failed_...

    def test_a_transaction_too_large_for_the_timeout_stops_and_says_why(self):
        """A PostgreSQL transaction is never split, so one that takes
        longer than kafka.transaction.timeout.ms to produce cannot commit:
        the coordinator aborts it, and Kafka reports that as fencing.  The
        connector stops (exit 1) naming the setting to raise, not another
        instance, and confirms nothing of it; raised, the same transaction
        goes through, each event once."""
        slot, rows = "oversized", 300000
        settings = dict(slot_name=slot, delivery_guarantee="exactly-once",
                        value_format="payload", log_level="info",
                        route_topic_replacement="oversized.${routedByValue}",
                        kafka_transaction_timeout_ms="1000")
        d = self.outboxd(**settings)
        d.wait_streaming()
        self.pg.sql("INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) "
                    "SELECT gen_random_uuid(), '%s', 'k-' || (g %% 50), 'Seq', "
                    "jsonb_build_object('seq', g) FROM generate_series(0, %d) g"
                    % (slot, rows - 1))
        end = self.pg.current_lsn()
        self.assertEqual(d.wait(120), 1, d.output()[-3000:])
        self.assertRegex(d.output(), r"error .*the Kafka transaction was open \d+ ms, near or "
                                     r"past kafka\.transaction\.timeout\.ms=1000, .* raise "
                                     r"kafka\.transaction\.timeout\.ms")
        self.assertNotIn("took over", d.output())
        # (confirmations while the server decoded it, before its first
        # message, may lie inside its WAL: the server resends it whole)
        self.assertLess(self.pg.confirmed_lsn(slot), end)
        settings["kafka_transaction_timeout_ms"] = "60000"
        d = self.outboxd(**settings)
        wait_until(lambda: self.pg.confirmed_lsn(slot) >= end, 180, "the transaction to commit")
        records = read_committed(self.kafka, "oversized." + slot)
        duplicates = check_delivery(self, PayloadValues, records, slot, rows)
        self.assertEqual(duplicates, 0, "a read_committed consumer saw duplicates")
        self.assertEqual(d.stop(), 0)

    def test_a_slot_behind_the_checkpoint_sends_nothing_twice(self):
        """A crash between a Kafka commit and the status update leaves the
        slot behind the checkpoint.  Made here by putting back a copy of
        the slot taken before a first run: on restart every transaction at
        (the last one the first run committed) or below the checkpoint is
        skipped, every one above it is sent, each once."""
        slot, first_half, events, dead_letters = "behind", 1000, 2000, 200
        settings = dict(slot_name=slot, delivery_guarantee="exactly-once",
                        value_format="payload", route_topic_replacement="behind.${routedByValue}",
                        errors_dlq_topic="behind.dlq")
        self.pg.create_slot(slot)
        self.pg.sql("SELECT pg_copy_logical_replication_slot('%s', '%s_before')" % (slot, slot))
        Workload(self.pg, slot, events=first_half, per_txn=20, keys=50).start().wait()
        Workload(self.pg, bad(slot), events=dead_letters // 2, per_txn=5, keys=10).start().wait()
        d = self.outboxd(**settings)
        end = self.pg.current_lsn()
        wait_until(lambda: self.pg.confirmed_lsn(slot) >= end, 120, "the first run to confirm")
        self.assertEqual(d.stop(), 0)
        checkpoint = self.pg.confirmed_lsn(slot)
        self.pg.sql("SELECT pg_drop_replication_slot('%s')" % slot)
        self.pg.sql("SELECT pg_copy_logical_replication_slot('%s_before', '%s')" % (slot, slot))
        self.pg.sql("SELECT pg_drop_replication_slot('%s_before')" % slot)
        self.assertLess(self.pg.confirmed_lsn(slot), checkpoint)
        # the same ids again (no-ops) and the second half, after the checkpoint
        Workload(self.pg, slot, events=events, per_txn=20, keys=50).start().wait()
        Workload(self.pg, bad(slot), events=dead_letters, per_txn=5, keys=10).start().wait()
        d = self.outboxd(**settings)
        end = self.pg.current_lsn()
        wait_until(lambda: self.pg.confirmed_lsn(slot) >= end, 120, "the second run to confirm")
        self.assertEqual(d.metrics()["outboxd_resumes_ahead_of_slot_total"], 1,
                         d.output()[-3000:])
        records, dead = read_committed_each(self.kafka, ["behind." + slot, "behind.dlq"])
        duplicates = check_delivery(self, PayloadValues, records, slot, events)
        self.assertEqual(duplicates, 0, "a read_committed consumer saw duplicates")
        self.assertEqual(len(records), events)
        # dead letters are skipped with their transactions, the same way
        self.assertEqual(check_delivery(self, DeadLetterValues, dead, bad(slot), dead_letters),
                         0, "a read_committed consumer saw a dead letter twice")
        self.assertEqual(len(dead), dead_letters)
        self.assertEqual(d.stop(), 0)

    def test_a_lost_connection_aborts_and_sends_again(self):
        """The walsender is terminated while Kafka transactions are open:
        each time the open one is aborted and streaming starts again after
        the last commit; nothing is lost, nothing is seen twice, dead
        letters included."""
        settings = dict(slot_name="lost", delivery_guarantee="exactly-once",
                        value_format="payload", route_topic_replacement="lost.${routedByValue}",
                        errors_dlq_topic="lost.dlq")
        d = self.outboxd(**settings)
        d.wait_streaming()
        events, dead_letters = 20000, 1000
        # large transactions: a connection is likely cut inside one
        w = Workload(self.pg, "lost", events=events, per_txn=500, keys=50).start()
        bad_rows = Workload(self.pg, bad("lost"), events=dead_letters, per_txn=50, keys=10).start()
        aborts = 0
        while w.thread.is_alive() and aborts < 3:
            pid = self.pg.slot("lost")[1]
            if pid:
                self.pg.sql("SELECT pg_terminate_backend(%s)" % pid)
            time.sleep(0.5)
            aborts = d.output().count("aborted the open Kafka transaction")
        w.wait()
        bad_rows.wait()
        self.assertGreater(aborts, 0, "no connection was cut inside a transaction:\n"
                           + d.output()[-3000:])
        end = self.pg.current_lsn()
        try:
            wait_until(lambda: self.pg.confirmed_lsn("lost") >= end, 120, "final confirmation")
        except AssertionError:
            raise AssertionError("not confirmed:\n" + d.output()[-5000:])
        records, dead = read_committed_each(self.kafka, ["lost.lost", "lost.dlq"])
        duplicates = check_delivery(self, PayloadValues, records, "lost", events)
        self.assertEqual(duplicates, 0, "a read_committed consumer saw duplicates:\n"
                         + "\n".join(l for l in d.output().splitlines()
                                      if " debug " not in l)[-6000:])
        self.assertEqual(check_delivery(self, DeadLetterValues, dead, bad("lost"), dead_letters),
                         0, "a read_committed consumer saw a dead letter twice")
        # the transaction metrics: every event and dead letter counted
        # once, in the transaction that committed it; the aborted ones apart
        m = d.metrics()
        committed = m['outboxd_kafka_transactions_total{result="committed"}']
        self.assertGreater(m['outboxd_kafka_transactions_total{result="aborted"}'], 0)
        self.assertEqual(m["outboxd_kafka_transaction_events_sum"], events + dead_letters)
        self.assertEqual(m["outboxd_kafka_transaction_events_count"], committed)
        self.assertEqual(m["outboxd_kafka_transaction_seconds_count"], committed)
        self.assertEqual(m["outboxd_commit_to_ack_seconds_count"], events + dead_letters)
        self.assertEqual(d.stop(), 0)

    def test_a_commit_reported_failed_sends_again_only_what_kafka_lacks(self):
        """The connector is told that a Kafka commit failed, through a
        proxy that answers its EndTxn(commit) with an error: once after the
        broker committed it (a commit in doubt: its abort is then refused,
        the producer is replaced, and the checkpoint read again shows the
        commit went through), once without the broker seeing it.  Either
        way streaming goes on and a read_committed consumer sees every
        event exactly once."""
        events, slots = 2000, []
        proxy = self.kafka.proxy(self.kafka.brokers[0].id)
        for committed in (True, False):
            slot = "doubt_%s" % ("committed" if committed else "failed")
            self.pg.create_slot(slot)
            d = self.outboxd(**{"slot_name": slot, "delivery_guarantee": "exactly-once",
                                "value_format": "payload",
                                "route_topic_replacement": "doubt.${routedByValue}",
                                "kafka.bootstrap.servers": self.kafka.bootstrap_for("PROXIED")})
            d.wait_streaming()
            w = Workload(self.pg, slot, events=events, per_txn=10, keys=20, seconds=6).start()
            wait_until(lambda: d.metrics().get(
                'outboxd_kafka_transactions_total{result="committed"}', 0) > 0,
                60, "a first Kafka commit")
            proxy.fail_next_commit(forward=committed)
            self.assertTrue(proxy.tampered.wait(30), "no commit was failed:\n"
                            + d.output()[-3000:])
            w.wait()
            end = self.pg.current_lsn()
            try:
                wait_until(lambda: self.pg.confirmed_lsn(slot) >= end, 120,
                           "final confirmation")
            except AssertionError:
                raise AssertionError("not confirmed:\n" + d.output()[-5000:])
            log = d.output()
            self.assertIn("could not commit the Kafka transaction", log)
            # in doubt, the abort is refused and the producer replaced
            self.assertEqual("gave up the open Kafka transaction" in log, committed,
                             log[-5000:])
            self.assertEqual("committed after all" in log, committed, log[-5000:])
            self.assertEqual(d.stop(), 0)
            slots.append(slot)
        for slot, records in zip(slots, read_committed_each(
                self.kafka, ["doubt." + slot for slot in slots])):
            duplicates = check_delivery(self, PayloadValues, records, slot, events)
            self.assertEqual(duplicates, 0, "%s: a read_committed consumer saw duplicates"
                             % slot)
            self.assertEqual(len(records), events, slot)

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


class ExactlyOnceCrashTest(CrashesBody, IntegrationTest):
    """The crash test on a single broker.  For CI's time budget each build
    runs it on one kind of Kafka: this one in the sanitize build's run
    (pgoutput), the cluster in the plain build's (wal2json)."""

    plugins = ("pgoutput",)


class ExactlyOnceClusterTest(CrashesBody, IntegrationTest):
    """The crash test on the three-broker cluster (replication factor 3,
    min.insync.replicas=2): restarting the transaction coordinator moves it
    to another broker."""

    kafka_options = {"brokers": 3}
    plugins = ("wal2json",)


if __name__ == "__main__":
    main()
