"""Rows that cannot become a record (SPEC section 5), under each
errors.bad.event policy: a clear error naming the row and the LSN, and
nothing lost silently.  On a real broker whose message.max.bytes is 20000:
a record over that limit, and topic names the brokers refuse."""
import json
import re
import time

from harness import IntegrationTest, lsn_int, main, record_headers, wait_until

LOOSE = """
CREATE TABLE loose_outbox (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    aggregatetype text,
    aggregateid   text,
    type          text,
    payload       jsonb
);
"""


class BadRowTest(IntegrationTest):

    kafka_options = {"broker_conf": {"message.max.bytes": 20000}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pg.sql(LOOSE)
        # "acct.x" would collide with it: Kafka treats '.' and '_' alike
        cls.kafka.create_topic("outbox.event.acct_x", 1)

    def insert(self, agg, key, typ="T", payload="{}"):
        def lit(v):
            return "NULL" if v is None else "'" + v.replace("'", "''") + "'"
        self.pg.sql("INSERT INTO loose_outbox (aggregatetype, aggregateid, type, payload) "
                    "VALUES (%s, %s, %s, %s)" % (lit(agg), lit(key), lit(typ), lit(payload)))

    def connector(self, slot, **settings):
        d = self.outboxd(slot_name=slot, table_include_list="public.loose_outbox", **settings)
        d.wait_streaming()
        return d

    def test_dlq_receives_each_kind_of_bad_row(self):
        # no client-side size limit: the broker's own message.max.bytes
        d = self.connector("dlq", errors_dlq_topic="dead.letters")
        self.insert("acct", None)                      # NULL key
        self.insert(None, "k-2")                       # NULL route column
        self.insert("a" * 300, "k-3")                  # topic over 249 bytes
        self.insert("acct", "k-4", payload=json.dumps({"blob": "é" * 30000}))  # too large
        self.insert("acct.x", "k-6")                   # collides with acct_x
        self.insert("acct", "k-5", payload='{"fine": true}')
        dead = self.consumer.read(["dead.letters"], 5)
        self.assertEqual(len(dead), 5, d.output()[-4000:])
        dead.sort(key=lambda r: lsn_int(json.loads(r.value)["lsn"]))  # commit order
        errors = [record_headers(r)["error"] for r in dead]
        self.assertIn('column "aggregateid" (table.field.event.key) is NULL', errors[0])
        self.assertIn('column "aggregatetype" (route.by.field) is NULL', errors[1])
        self.assertIn("not a valid Kafka topic name", errors[2])
        self.assertIn("too large", errors[3].lower())
        self.assertIn("max.message.bytes of 20000", errors[3])
        self.assertIn('the brokers refuse the topic "outbox.event.acct.x"', errors[4])
        self.assertIn("collides", errors[4])
        docs = [json.loads(r.value) for r in dead]
        self.assertIsNone(dead[0].key, "no key when the key column is NULL")
        self.assertEqual(dead[1].key, b"k-2")
        self.assertEqual(docs[0]["table"], "loose_outbox")
        self.assertIsNone(docs[0]["columns"]["aggregateid"])
        # the oversized row's dead letter was cut down to fit, and says so
        self.assertEqual(docs[3]["truncated"], ["payload"])
        self.assertLess(len(docs[3]["columns"]["payload"].encode()), 2000)
        for doc in docs:
            self.assertRegex(doc["lsn"], r"^[0-9A-F]+/[0-9A-F]{8}$")
        self.assertEqual(len(self.consumer.read(["outbox.event.acct"], 1)), 1)
        end = self.pg.current_lsn()
        wait_until(lambda: self.pg.confirmed_lsn("dlq") >= end, 30, "confirm past dead letters")
        log = d.output()
        self.assertRegex(log, r"bad outbox row in public\.loose_outbox at [0-9A-F]+/[0-9A-F]{8} "
                              r"\(xid \d+\): column \"aggregateid\"")
        self.assertEqual(d.stop(), 0)

    def test_missing_mapped_column_goes_to_the_dlq(self):
        d = self.connector("missing", table_field_event_type="kind")
        self.insert("acct2", "k-1")
        dead = self.consumer.read(["outbox.dlq"], 1)
        self.assertTrue(any('"kind" (table.field.event.type) is missing from public.loose_outbox'
                            in record_headers(r)["error"] for r in dead))
        self.assertEqual(d.stop(), 0)

    def test_fail_policy_stops_and_confirms_nothing_past_the_row(self):
        d = self.connector("failpol", errors_bad_event="fail")
        self.insert("acct3", "k-1")
        self.consumer.read(["outbox.event.acct3"], 1)
        before = self.pg.current_lsn()
        self.insert("acct3", None)
        self.assertEqual(d.wait(60), 3, d.output()[-2000:])
        self.assertRegex(d.output(), r"bad outbox row in public\.loose_outbox at "
                                     r"[0-9A-F]+/[0-9A-F]{8} .*is NULL \(errors\.bad\.event=fail\)")
        self.assertLessEqual(self.pg.confirmed_lsn("failpol"), self.pg.commit_start(
            before, "loose_outbox", "aggregatetype = 'acct3' AND aggregateid IS NULL"))
        # a restart meets the same row again: nothing skipped
        d = self.connector("failpol", errors_bad_event="fail")
        self.assertEqual(d.wait(60), 3)

    def test_skip_policy_logs_the_loss_and_moves_on(self):
        d = self.connector("skippol", errors_bad_event="skip")
        self.insert("acct4", None)
        self.insert("acct4", "k-2")
        self.assertEqual(len(self.consumer.read(["outbox.event.acct4"], 1)), 1)
        self.assertRegex(d.output(), r"error skipping bad outbox row in public\.loose_outbox at "
                                     r"[0-9A-F]+/[0-9A-F]{8}.*this event is lost")
        end = self.pg.current_lsn()
        wait_until(lambda: self.pg.confirmed_lsn("skippol") >= end, 30, "confirm past the row")
        self.assertEqual(d.stop(), 0)


class MissingTopicTest(IntegrationTest):
    """A topic that does not exist (deleted; the brokers do not auto-create)
    is an infrastructure fault, never a bad row: its events wait, whatever
    errors.bad.event says, and nothing after them is confirmed."""

    kafka_options = {"broker_conf": {"auto.create.topics.enable": "false"}}

    def test_deleted_topic_holds_its_events_until_it_exists_again(self):
        self.kafka.create_topic("outbox.dlq", 1)
        for policy in ("skip", "dlq"):
            with self.subTest(policy=policy):
                aggregate = "vanish" + policy
                topic = "outbox.event." + aggregate
                self.kafka.create_topic(topic, 1)
                d = self.outboxd(slot_name=aggregate, errors_bad_event=policy)
                d.wait_streaming()
                self.insert_events([(aggregate, "k-1", "Before", '{"n": 0}')])
                self.assertEqual(len(self.consumer.read([topic], 1)), 1)

                self.kafka.delete_topic(topic)
                wait_until(lambda: topic not in self.kafka.topics(), 30, "deletion")
                held_commits = []  # where each held transaction ends
                for i in range(1, 4):
                    self.insert_events([(aggregate, "k-1", "Held", '{"n": %d}' % i)])
                    held_commits.append(self.pg.current_lsn())
                d.wait_for_log(r'topic "%s" does not exist and the brokers do not create '
                               r'it: holding its event' % re.escape(topic), timeout=90)
                wait_until(lambda: d.http("/readyz")[0] == 503, 30, "/readyz to say so")
                self.assertEqual(d.metrics()["outboxd_kafka_topic_missing"], 1)
                time.sleep(2)  # several status intervals
                # (an idle keepalive may confirm WAL written before the
                # first held transaction, never its commit)
                self.assertLess(self.pg.confirmed_lsn(aggregate), held_commits[0],
                                "nothing confirmed past the held events")
                self.assertEqual(self.consumer.high_watermarks("outbox.dlq"), 0,
                                 "not routed to the dead letter topic")
                bad = sum(v for k, v in d.metrics().items()
                          if k.startswith("outboxd_bad_events_total"))
                self.assertEqual(bad, 0, "not a bad row: neither skipped nor dead-lettered")

                self.kafka.create_topic(topic, 1)
                records = self.consumer.read([topic], 3, timeout=90)
                held = {self.envelopes.decode(r.value)["payload"] for r in records}
                self.assertEqual(held, {'{"n": %d}' % i for i in range(1, 4)},
                                 "every held event arrives once the topic exists")
                wait_until(lambda: d.http("/readyz")[0] == 200, 30, "ready again")
                self.assertEqual(d.metrics()["outboxd_kafka_topic_missing"], 0)
                self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    main()
