"""Debezium side by side: one workload, captured from the same database by
Debezium's PostgreSQL connector with its outbox EventRouter (Connect
standalone, pgoutput, StringConverter) into one Kafka cluster and by outboxd
(value.format=payload, pgoutput) into another, configured alike; every event
must reach the same topic and partition with the same key, headers and value
bytes, in the same per-key order."""
import json
import os
import tempfile

import real_kafka
from debezium import Debezium
from harness import Consumer, IntegrationTest, main, quote, run_cli, write_properties

TOPICS = ["outbox.event.order", "outbox.event.customer", "outbox.event.payment",
          "outbox.event.kunde"]
# Debezium writes only the `id` header unless told to place more; outboxd
# always writes `eventType` and `aggregateType` after it: a Debezium user
# gets those with these placements, in this order
DEBEZIUM_PLACEMENT = ("type:header:eventType,aggregatetype:header:aggregateType,"
                      "tenant:header:tenantId")


class DebeziumCompatibilityTest(IntegrationTest):

    plugins = ("pgoutput",)  # Debezium dropped wal2json in 2.0
    pg_conf = "listen_addresses = '127.0.0.1'"  # pgjdbc speaks TCP only

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.kafka_b = real_kafka.RealKafka()

    @classmethod
    def tearDownClass(cls):
        cls.kafka_b.destroy()
        super().tearDownClass()

    def workload(self):
        """Several aggregate types, unicode, NULL and 200 KB payloads, an
        additional column (NULL once), multi-row transactions;
        (aggregatetype, key, type, payload, tenant) rows in commit order."""
        rows = []
        for txn in range(6):
            batch = [("order" if i % 3 else "customer", "k-%d" % (i % 4), "Seq",
                      json.dumps({"txn": txn, "i": i}), "acme") for i in range(5)]
            rows.append(batch)
        rows.append([("kunde", "k-ü", "Grüße", json.dumps({"name": "Zoë ✓ 日本 🚀"},
                                                        ensure_ascii=False), "ü-tenant")])
        rows.append([("payment", "p-1", "Big", json.dumps({"blob": "x" * 200_000}), "acme"),
                     ("payment", "p-1", "Empty", None, None)])
        for batch in rows:
            values = ",".join("(gen_random_uuid(), %s, %s, %s, %s, %s)" % (
                quote(a), quote(k), quote(t), "NULL" if p is None else quote(p) + "::jsonb",
                "NULL" if tenant is None else quote(tenant)) for a, k, t, p, tenant in batch)
            self.pg.sql("BEGIN; UPDATE orders SET status = 'PAID';"
                        "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, "
                        "tenant) VALUES %s; COMMIT;" % values)
        return [r for batch in rows for r in batch]

    @staticmethod
    def captured(kafka, count):
        """{event id: (topic, partition, key, headers, value)} and the event
        ids per (topic, key) in offset order."""
        consumer = Consumer(kafka.bootstrap)
        records = consumer.read(TOPICS, count, timeout=120)
        consumer.close()
        by_id, order = {}, {}
        for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
            headers = [(k, v) for k, v in r.headers if not k.startswith("__debezium")]
            event_id = dict(headers)["id"].decode()
            by_id[event_id] = (r.topic, r.partition, r.key, headers, r.value)
            order.setdefault((r.topic, r.key), []).append(event_id)
        return by_id, order

    def test_the_same_records_as_debezium(self):
        dbz = Debezium(self.pg, self.kafka, slot="dbz", publication="dbz",
                       connector={"extended.headers.enabled": "false"},
                       table_fields_additional_placement=DEBEZIUM_PLACEMENT)
        try:
            ours = self.outboxd(slot_name="obx", value_format="payload",
                                kafka_bootstrap_servers=self.kafka_b.bootstrap,
                                table_fields_additional_placement="tenant:header:tenantId")
            ours.wait_streaming()
            rows = self.workload()
            theirs, their_order = self.captured(self.kafka, len(rows))
            mine, my_order = self.captured(self.kafka_b, len(rows))
        finally:
            dbz.stop()
        self.assertEqual(len(theirs), len(rows), "Debezium wrote every event once")
        self.assertEqual(len(mine), len(rows), "outboxd wrote every event once")
        self.assertEqual(sorted(mine), sorted(theirs), "the same event ids")
        for event_id, record in theirs.items():
            self.assertEqual(mine[event_id], record, "event %s" % event_id)
        self.assertEqual(my_order, their_order, "the same per-key order")
        # the value is the payload's jsonb text; a NULL payload a null value
        values = {dict(r[3])["eventType"]: r[4] for r in mine.values()}
        self.assertIsNone(values[b"Empty"])
        self.assertEqual(json.loads(values[b"Big"])["blob"], "x" * 200_000)
        # a NULL additional column is a header with a null value
        empty = [r for r in mine.values() if dict(r[3])["eventType"] == b"Empty"][0]
        self.assertIn(("tenantId", None), empty[3])
        self.assertEqual(ours.stop(), 0)


class DebeziumHandoverTest(IntegrationTest):
    """Replacing a running Debezium connector without a gap
    (docs/migrating-from-debezium.md): outboxd on Debezium's own slot, or on
    a slot of its own created before Debezium stops.  Both connectors write
    the same topics, as the consumers' topics are the same before and after."""

    plugins = ("pgoutput",)
    pg_conf = "listen_addresses = '127.0.0.1'"

    def write(self, prefix, first, count):
        """count events with ids `prefix-<n>`, a transaction of 5 each."""
        ids = ["%s-%03d" % (prefix, n) for n in range(first, first + count)]
        for i in range(0, count, 5):
            values = ",".join("(md5(%s)::uuid, %s, 'k-%d', 'Moved', '{}')" % (
                quote(e), quote(prefix), n % 3) for n, e in enumerate(ids[i:i + 5]))
            self.pg.sql("INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) "
                        "VALUES %s" % values)
        return [self.pg.sql("SELECT md5(%s)::uuid" % quote(e))[0][0] for e in ids]

    def delivered(self, prefix, at_least):
        records = self.consumer.read(["outbox.event." + prefix], at_least, timeout=90)
        return [dict(r.headers)["id"].decode() for r in records]

    def hand_over(self, prefix, outboxd_settings, before_stop=None):
        """Debezium delivers a first batch and stops; a second batch is
        written while nothing runs; outboxd starts and a third follows.
        Returns (every id written, every id in Kafka, the first batch)."""
        dbz = Debezium(self.pg, self.kafka, slot="dbz_" + prefix, publication="dbz_" + prefix,
                       connector={"extended.headers.enabled": "false"},
                       table_fields_additional_placement="type:header:eventType,"
                                                         "aggregatetype:header:aggregateType")
        try:
            if before_stop:
                before_stop()
            first = self.write(prefix, 0, 20)
            self.delivered(prefix, 20)
        finally:
            dbz.stop()
        self.assertFalse(self.pg.slot("dbz_" + prefix)[1], "Debezium let go of its slot")
        second = self.write(prefix, 20, 20)
        d = self.outboxd(value_format="payload", **outboxd_settings)
        d.wait_streaming()
        third = self.write(prefix, 40, 20)
        written = first + second + third
        in_kafka = self.delivered(prefix, len(written))
        self.assertEqual(set(in_kafka), set(written), "no gap: every event reached Kafka")
        self.assertEqual(d.stop(), 0)
        return written, in_kafka, first

    def test_outboxd_on_debeziums_slot(self):
        # the slot and publication Debezium made: events after its last
        # confirmed position may come twice, none is lost
        written, in_kafka, first = self.hand_over(
            "onslot", {"slot_name": "dbz_onslot", "publication_name": "dbz_onslot",
                       "slot_create": "false"})
        duplicates = len(in_kafka) - len(written)
        self.assertLessEqual(duplicates, len(first), "only what Debezium sent can repeat")
        print("on Debezium's slot: %d duplicates of %d events" % (duplicates, len(written)))

    def test_outboxd_on_a_slot_created_before_debezium_stops(self):
        fd, path = tempfile.mkstemp(suffix=".properties", dir=self.workdir)
        os.close(fd)
        settings = {"slot_name": "obx_before", "publication_name": "obx_before"}

        def create_slot():
            r = run_cli("slot", "create", "-c", write_properties(path, dict(
                {"database.url": self.pg.url, "kafka.bootstrap.servers": self.kafka.bootstrap},
                **settings)))
            self.assertEqual(r.returncode, 0, r.stderr)

        written, in_kafka, first = self.hand_over("before", settings, before_stop=create_slot)
        # exactly what Debezium delivered after the slot existed comes again
        again = [e for e in set(in_kafka) if in_kafka.count(e) > 1]
        self.assertEqual(sorted(again), sorted(first))
        self.assertEqual(len(in_kafka), len(written) + len(first))


if __name__ == "__main__":
    main()
