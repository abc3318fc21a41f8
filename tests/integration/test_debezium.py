"""Debezium side by side: one workload, captured from the same database by
Debezium's PostgreSQL connector with its outbox EventRouter (Connect
standalone, pgoutput, StringConverter) into one Kafka cluster and by outboxd
(value.format=payload, pgoutput) into another, configured alike; every event
must reach the same topic and partition with the same key, headers and value
bytes, in the same per-key order."""
import json

import real_kafka
from debezium import Debezium
from harness import Consumer, IntegrationTest, main, quote

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


if __name__ == "__main__":
    main()
