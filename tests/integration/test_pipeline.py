"""End to end: PostgreSQL (pgoutput or wal2json) -> outboxd -> Kafka, checked
by an independent consumer (kafka-python) and Avro decoder (python3-avro)."""
import datetime
import json
import os
import tempfile

from harness import (IntegrationTest, lsn_int, main, quote, record_headers, run_cli,
                     wait_until, write_properties)


class PipelineTest(IntegrationTest):

    def test_events_reach_kafka_as_avro_envelopes(self):
        d = self.outboxd(slot_name="pipeline")
        d.wait_streaming()

        big = json.dumps({"blob": "x" * 200_000})
        unicode_payload = json.dumps({"name": "Zoë ✓ 日本 🚀", "quote": "it's \"q\""},
                                     ensure_ascii=False)
        expected = []  # (aggregatetype, key, type, payload)
        # multi-row transactions over two aggregate types, with noise rows
        for txn in range(10):
            rows = []
            for i in range(5):
                agg = "order" if i % 2 == 0 else "customer"
                key = "%s-%d" % (agg, i % 3)
                rows.append((agg, key, "Seq", json.dumps({"txn": txn, "i": i})))
            self.insert_events(rows)
            expected.extend(rows)
        # insert-then-delete in one transaction still publishes
        self.pg.sql("BEGIN; INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) "
                    "VALUES ('00000000-0000-0000-0000-0000000000aa', 'order', 'order-9', "
                    "'Deleted', '{\"gone\": true}'); DELETE FROM outbox WHERE "
                    "id = '00000000-0000-0000-0000-0000000000aa'; COMMIT;")
        expected.append(("order", "order-9", "Deleted", '{"gone": true}'))
        specials = [("order", "order-ü", "Unicode", unicode_payload),
                    ("payment", "pay-1", "Big", big),
                    ("payment", "pay-2", "Empty", None)]
        for row in specials:
            self.insert_events([row])
        expected.extend(specials)
        # a transaction on the noise table only
        self.pg.sql("UPDATE orders SET status = 'SHIPPED'")

        topics = ["outbox.event.order", "outbox.event.customer", "outbox.event.payment"]
        records = self.consumer.read(topics, len(expected))
        self.assertEqual(len(records), len(expected), "every outbox row once")

        by_key = {}
        for r in records:
            env = self.envelopes.decode(r.value)
            h = record_headers(r)
            self.assertEqual(r.topic, "outbox.event." + env["aggregate_type"])
            self.assertEqual(r.key.decode(), env["aggregate_id"])
            self.assertEqual(h["id"], env["id"])
            self.assertEqual(h["eventType"], env["type"])
            self.assertEqual(h["aggregateType"], env["aggregate_type"])
            self.assertEqual(env["source"]["db"], "shop")
            self.assertEqual(env["source"]["schema"], "public")
            self.assertEqual(env["source"]["table"], "outbox")
            self.assertGreater(env["source"]["lsn"], 0)
            self.assertGreater(env["source"]["txid"], 0)
            self.assertEqual(env["fields"], {})
            by_key.setdefault(r.key.decode(), []).append(env)

        # the payload is the server's jsonb text, byte for byte
        as_text = self.pg.jsonb_text([p for _, _, _, p in expected])
        expected = [(a, k, t, as_text[i]) for i, (a, k, t, _) in enumerate(expected)]
        got = sorted((e["aggregate_type"], e["aggregate_id"], e["type"], e["payload"])
                     for envs in by_key.values() for e in envs)
        self.assertEqual(sorted(got, key=str), sorted(expected, key=str), "payload text kept exactly")

        # per-key order follows commit order (source.lsn grows per key)
        for key, envs in by_key.items():
            lsns = [e["source"]["lsn"] for e in envs]
            self.assertEqual(lsns, sorted(lsns), "order of key %s" % key)
            seq = [json.loads(e["payload"])["txn"] for e in envs if e["type"] == "Seq"]
            self.assertEqual(seq, sorted(seq))

        # the commit time, as timestamp-micros (python-avro makes a datetime)
        now = datetime.datetime.now(datetime.timezone.utc)
        for envs in by_key.values():
            for e in envs:
                self.assertLess(abs((now - e["timestamp"]).total_seconds()), 600)

        # nothing in flight: the slot is confirmed up to the WAL end, so a
        # quiet outbox does not pin WAL
        end = self.pg.current_lsn()
        wait_until(lambda: self.pg.confirmed_lsn("pipeline") >= end, 30,
                   "confirmed_flush_lsn to reach %x" % end)

        self.assertEqual(d.stop(), 0)
        out = d.output()
        self.assertIn("stopped cleanly", out)
        self.assertEqual(self.pg.slot("pipeline")[1], "", "slot released (no active pid)")

    def test_table_names_resolve_like_sql_and_a_missing_table_stops_the_start(self):
        # unquoted names fold to lower case, as in SQL: public.Outbox is
        # the table outbox (wal2json alone would compare "Outbox" exactly
        # and match nothing)
        d = self.outboxd(slot_name="folded", table_include_list="public.Outbox")
        d.wait_streaming()
        self.insert_events([("folded", "k-1", "Folded", '{"n": 1}')])
        self.assertEqual(len(self.consumer.read(["outbox.event.folded"], 1)), 1)
        self.assertEqual(d.stop(), 0)
        # a quoted name keeps its case, and there is no table "Outbox"
        d = self.outboxd(slot_name="quoted", table_include_list='public."Outbox"')
        self.assertEqual(d.wait(60), 2, d.output())
        self.assertIn("table public.Outbox of table.include.list does not exist", d.output())
        self.assertIn("the nearest existing table is public.outbox", d.output())
        self.assertIsNone(self.pg.slot("quoted"), "no slot pins WAL for it")

    def test_partitioned_outbox_is_routed_as_its_table(self):
        # wal2json names each row by its partition; events are attributed
        # to the configured (partitioned) table, from every partition,
        # also one created while streaming, at any depth
        self.pg.sql("""
            CREATE SCHEMA billing;
            CREATE TABLE billing.events (
                id uuid NOT NULL, aggregatetype varchar(255) NOT NULL,
                aggregateid varchar(255) NOT NULL, type varchar(255) NOT NULL,
                payload jsonb, PRIMARY KEY (id, aggregatetype)
            ) PARTITION BY LIST (aggregatetype);
            CREATE TABLE billing.events_a PARTITION OF billing.events FOR VALUES IN ('parta');
            CREATE TABLE billing.events_b PARTITION OF billing.events FOR VALUES IN ('partb')
                PARTITION BY HASH (id);
            CREATE TABLE billing.events_b0 PARTITION OF billing.events_b
                FOR VALUES WITH (MODULUS 2, REMAINDER 0);
            CREATE TABLE billing.events_b1 PARTITION OF billing.events_b
                FOR VALUES WITH (MODULUS 2, REMAINDER 1);
            CREATE TABLE billing.events_rest PARTITION OF billing.events DEFAULT;
            CREATE TABLE billing.invoices (id int PRIMARY KEY, total int);
        """)
        d = self.outboxd(slot_name="partitioned", table_include_list="billing.events")
        d.wait_streaming()
        self.pg.sql("CREATE TABLE billing.events_c PARTITION OF billing.events "
                    "FOR VALUES IN ('partc')")

        def insert(aggregate, n):
            self.pg.sql("BEGIN; INSERT INTO billing.invoices VALUES (%d, 1) "
                        "ON CONFLICT (id) DO UPDATE SET total = 2;"
                        "INSERT INTO billing.events VALUES (gen_random_uuid(), '%s', 'k-%d', "
                        "'Part', '{\"n\": %d}'); COMMIT;" % (n, aggregate, n, n))
        expected = {}
        for n, aggregate in enumerate(["parta", "partb", "partb", "partz", "partc"] * 2):
            insert(aggregate, n)
            expected.setdefault(aggregate, set()).add(n)
        topics = ["outbox.event." + a for a in expected]
        records = self.consumer.read(topics, 10)
        got = {}
        for r in records:
            env = self.envelopes.decode(r.value)
            self.assertEqual((env["source"]["schema"], env["source"]["table"]),
                             ("billing", "events"), "attributed to the partitioned table")
            self.assertEqual(r.topic, "outbox.event." + env["aggregate_type"])
            got.setdefault(env["aggregate_type"], set()).add(json.loads(env["payload"])["n"])
        self.assertEqual(got, expected, "every event from every partition")
        # an UPDATE on a partition is an UPDATE on the outbox table
        self.pg.sql("UPDATE billing.events SET type = 'Changed' WHERE aggregatetype = 'parta'")
        d.wait_for_log(r"UPDATE on outbox table billing\.events is not an event")
        self.assertEqual(d.stop(), 0)

    def test_restart_resumes_where_kafka_acked(self):
        d = self.outboxd(slot_name="resume")
        d.wait_streaming()
        self.insert_events([("resume", "r-1", "First", '{"n": 1}')])
        self.assertEqual(len(self.consumer.read(["outbox.event.resume"], 1)), 1)
        self.assertEqual(d.stop(), 0)

        # written while the connector is down: the slot keeps it
        self.insert_events([("resume", "r-1", "Second", '{"n": 2}')])
        d = self.outboxd(slot_name="resume")
        d.wait_streaming()
        records = self.consumer.read(["outbox.event.resume"], 2)
        types = [self.envelopes.decode(r.value)["type"] for r in records]
        self.assertEqual(types, ["First", "Second"], "no loss, no duplicate after a clean stop")
        self.assertEqual(d.stop(), 0)

    def test_additional_fields_custom_topic_and_tombstones(self):
        d = self.outboxd(slot_name="extras",
                         route_topic_replacement="events.${routedByValue}.v1",
                         route_tombstone_on_empty_payload="true",
                         table_fields_additional_placement="tenant:header:tenantId,"
                                                           "tenant:envelope,created_at:envelope:created")
        d.wait_streaming()
        self.pg.sql("INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, tenant) "
                    "VALUES (gen_random_uuid(), 'invoice', 'i-1', 'Issued', '{\"n\": 1}', 'acme'), "
                    "(gen_random_uuid(), 'invoice', 'i-1', 'Voided', NULL, 'acme')")
        records = self.consumer.read(["events.invoice.v1"], 2)
        self.assertEqual(len(records), 2)
        first, tomb = records
        self.assertEqual(record_headers(first)["tenantId"], "acme")
        env = self.envelopes.decode(first.value)
        self.assertEqual(env["fields"]["tenant"], "acme")
        self.assertIn("created", env["fields"])
        self.assertIsNone(tomb.value, "NULL payload with tombstones on is a null value")
        self.assertEqual(record_headers(tomb)["eventType"], "Voided")
        self.assertEqual(d.stop(), 0)

    def test_bad_rows_go_to_the_dead_letter_topic(self):
        d = self.outboxd(slot_name="dlq")
        d.wait_streaming()
        self.insert_events([("bad topic/name", "k-1", "Broken", '{"n": 1}'),
                            ("fine", "k-1", "Ok", '{"n": 2}')])
        dead = self.consumer.read(["outbox.dlq"], 1)
        self.assertEqual(len(dead), 1)
        h = record_headers(dead[0])
        self.assertIn("not a valid Kafka topic name", h["error"])
        doc = json.loads(dead[0].value)
        self.assertEqual(doc["columns"]["aggregatetype"], "bad topic/name")
        self.assertEqual(doc["table"], "outbox")
        self.assertRegex(doc["lsn"], r"^[0-9A-F]+/[0-9A-F]{8}$")
        self.assertEqual(len(self.consumer.read(["outbox.event.fine"], 1)), 1)
        # the dead-lettered row's LSN is confirmed once both are acked
        lsn = lsn_int(doc["lsn"])
        wait_until(lambda: self.pg.confirmed_lsn("dlq") > lsn, 30, "confirm past the bad row")
        self.assertIn("sent to \"outbox.dlq\"", d.output())
        self.assertEqual(d.stop(), 0)

    def test_update_on_outbox_with_fatal_behavior_stops(self):
        d = self.outboxd(slot_name="fatalop", table_op_invalid_behavior="fatal")
        d.wait_streaming()
        self.insert_events([("fatal", "f-1", "Created", '{}')])
        self.consumer.read(["outbox.event.fatal"], 1)
        # where the UPDATE's commit record can begin at the earliest (the
        # server may log other records, e.g. running-xacts snapshots, before
        # it, and an idle connector may confirm those)
        before_commit = lsn_int(self.pg.sql(
            "BEGIN; UPDATE outbox SET type = 'Changed' WHERE aggregatetype = 'fatal';"
            "SELECT pg_current_wal_insert_lsn(); COMMIT;")[0][0])
        self.assertEqual(d.wait(60), 3, d.output())
        out = d.output()
        self.assertRegex(out, r"UPDATE on outbox table public\.outbox is not an event at "
                              r"[0-9A-F]+/[0-9A-F]{8}")
        self.assertLessEqual(self.pg.confirmed_lsn("fatalop"), before_commit,
                             "the UPDATE's transaction is not confirmed")

    def test_update_with_default_behavior_is_skipped_with_a_warning(self):
        d = self.outboxd(slot_name="warnop")
        d.wait_streaming()
        self.pg.sql("UPDATE outbox SET type = type")
        self.pg.sql("TRUNCATE outbox")
        d.wait_for_log(r"warn UPDATE on outbox table public\.outbox is not an event")
        d.wait_for_log(r"warn TRUNCATE on outbox table public\.outbox is not an event")
        self.assertEqual(d.stop(), 0)


    def test_logical_decoding_messages_are_events(self):
        """outbox.messages.prefix: events written without an outbox table."""
        d = self.outboxd(slot_name="messages", outbox_messages_prefix="outbox")
        d.wait_streaming()

        def content(event_id, key, payload='{"amount" : 12.50, "note": "Zoë ✓"}'):
            return ('{"id": "%s", "aggregatetype": "msg", "aggregateid": "%s", '
                    '"type": "Paid", "tenant": "acme", "payload": %s}' % (event_id, key, payload))

        def emit(text, transactional=True, prefix="outbox"):
            return "SELECT pg_logical_emit_message(%s, '%s', %s);" % (
                "true" if transactional else "false", prefix, quote(text))

        self.pg.sql("BEGIN; UPDATE orders SET status = 'PAID';" + emit(content("m-1", "k-1")) + "COMMIT;")
        # rolled back: never an event
        self.pg.sql("BEGIN;" + emit(content("m-rolled-back", "k-1")) + "ROLLBACK;")
        # not part of a transaction, or another application's: ignored
        self.pg.sql(emit(content("m-untied", "k-1"), transactional=False))
        self.pg.sql("BEGIN;" + emit(content("m-other", "k-1"), prefix="other") + "COMMIT;")
        # bad ones go where bad rows go, with their bytes
        self.pg.sql("BEGIN;" + emit("not json") + emit('{"id": "m-nokey", "aggregatetype": "msg", '
                                                       '"type": "Paid", "payload": null}') + "COMMIT;")
        last = lsn_int(self.pg.sql("BEGIN;" + emit(content("m-2", "k-1", "[]")) +
                                   "SELECT pg_current_wal_insert_lsn(); COMMIT;")[0][0])

        records = self.consumer.read(["outbox.event.msg"], 2)
        self.assertEqual([record_headers(r)["id"] for r in records], ["m-1", "m-2"])
        env = self.envelopes.decode(records[0].value)
        self.assertEqual(records[0].key, b"k-1")
        self.assertEqual(env["type"], "Paid")
        # a JSON value is kept as written; source names the message prefix
        self.assertEqual(env["payload"], '{"amount" : 12.50, "note": "Zoë ✓"}')
        self.assertEqual(self.envelopes.decode(records[1].value)["payload"], "[]")
        self.assertEqual((env["source"]["schema"], env["source"]["table"]), ("", "outbox"))
        self.assertGreater(env["source"]["txid"], 0)
        # keyless dead letters may land on any partition: matched by error
        dead = {record_headers(r)["error"]: json.loads(r.value)
                for r in self.consumer.read(["outbox.dlq"], 2)}
        errors = sorted(dead)
        self.assertIn('field "aggregateid" (table.field.event.key) is missing from the message',
                      errors[0])
        self.assertIn("not a JSON object", errors[1])
        self.assertEqual(dead[errors[1]]["columns"], {"content": "not json"})
        self.assertEqual(dead[errors[0]]["columns"]["id"], "m-nokey")
        self.assertRegex(d.output(), r"ignored a non-transactional logical decoding message "
                                     r'with prefix "outbox" at [0-9A-F]+/[0-9A-F]{8}')
        wait_until(lambda: self.pg.confirmed_lsn("messages") > last, 30, "confirm past the messages")
        self.assertEqual(d.stop(), 0)

    def test_columns_added_and_dropped_mid_stream(self):
        d = self.outboxd(slot_name="ddl")
        d.wait_streaming()
        self.insert_events([("ddl", "d-1", "Before", "{}")])
        self.pg.sql("ALTER TABLE outbox ADD COLUMN region text DEFAULT 'eu'")
        self.pg.sql("INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, region) "
                    "VALUES (gen_random_uuid(), 'ddl', 'd-1', 'Added', '{}', 'us')")
        self.pg.sql("ALTER TABLE outbox DROP COLUMN region")
        self.insert_events([("ddl", "d-1", "Dropped", "{}")])
        records = self.consumer.read(["outbox.event.ddl"], 3)
        self.assertEqual([record_headers(r)["eventType"] for r in records],
                         ["Before", "Added", "Dropped"])
        self.assertEqual(d.stop(), 0)


class PublicationTest(IntegrationTest):
    """pgoutput's publication: created, extended, verified, or refused."""

    plugins = ("pgoutput",)

    def publication(self, name):
        return self.pg.sql("SELECT pubinsert, pubupdate, pubdelete, pubtruncate, pubviaroot "
                           "FROM pg_publication WHERE pubname = '%s'" % name)

    def published(self, name):
        return sorted(self.pg.sql("SELECT schemaname, tablename FROM pg_publication_tables "
                                  "WHERE pubname = '%s'" % name))

    def test_created_on_exactly_the_outbox_tables(self):
        d = self.outboxd(slot_name="pub_made", publication_name="pub_made")
        d.wait_streaming()
        # DELETE is never an event, and the cleanup job's deletes would
        # double the stream: not published
        self.assertEqual(self.publication("pub_made"), [["t", "t", "f", "t", "t"]])
        self.assertEqual(self.published("pub_made"), [["public", "outbox"]])
        self.assertIn('created publication "pub_made"', d.output())
        self.assertEqual(d.stop(), 0)

    def test_a_missing_table_is_added_with_its_start(self):
        self.pg.sql("CREATE TABLE outbox_b (LIKE outbox INCLUDING ALL);"
                    "CREATE PUBLICATION pub_add FOR TABLE outbox WITH (publish = 'insert')")
        d = self.outboxd(slot_name="pub_add", publication_name="pub_add",
                         table_include_list="public.outbox,public.outbox_b")
        d.wait_streaming()
        self.assertRegex(d.output(), r'added public\.outbox_b to publication "pub_add": their '
                                     r"events are published from about [0-9A-F]+/[0-9A-F]+ on")
        self.assertIn("does not publish UPDATE or TRUNCATE", d.output())
        self.assertEqual(self.published("pub_add"), [["public", "outbox"], ["public", "outbox_b"]])
        self.pg.sql("INSERT INTO outbox_b (id, aggregatetype, aggregateid, type, payload) "
                    "VALUES (gen_random_uuid(), 'added', 'a-1', 'Made', '{}')")
        self.assertEqual(len(self.consumer.read(["outbox.event.added"], 1)), 1)
        self.assertEqual(d.stop(), 0)

    def test_what_would_lose_events_is_refused(self):
        self.pg.sql("CREATE PUBLICATION pub_partial FOR TABLE orders;"
                    "CREATE PUBLICATION pub_filtered FOR TABLE outbox "
                    "WHERE (aggregatetype <> 'secret')")
        cases = [
            ({"publication_name": "pub_none", "publication_autocreate_mode": "disabled"},
             'publication "pub_none" does not exist (publication.autocreate.mode=disabled): '
             'create it with CREATE PUBLICATION "pub_none" FOR TABLE "public"."outbox"'),
            ({"publication_name": "pub_partial", "publication_autocreate_mode": "disabled"},
             'publication "pub_partial" does not publish public.outbox '
             '(publication.autocreate.mode=disabled): run ALTER PUBLICATION "pub_partial" '
             'ADD TABLE "public"."outbox"'),
            ({"publication_name": "pub_filtered"},
             'publication "pub_filtered" filters the rows or columns of public.outbox'),
        ]
        for settings, message in cases:
            d = self.outboxd(slot_name="refused", **settings)
            self.assertEqual(d.wait(60), 2, d.output())
            self.assertIn(message, d.output())
            self.assertIsNone(self.pg.slot("refused"), "no slot before its publication fits")
        self.assertEqual(self.published("pub_partial"), [["public", "orders"]], "left alone")

    def test_a_publication_dropped_under_its_slot_stops_the_connector(self):
        d = self.outboxd(slot_name="pub_gone", publication_name="pub_gone")
        d.wait_streaming()
        self.assertEqual(d.stop(), 0)
        self.pg.sql("DROP PUBLICATION pub_gone")
        self.insert_events([("gone", "g-1", "Lost", "{}")])
        # recreated at start, but the server decodes the slot's older WAL
        # with the catalog of its time, where it did not exist
        d = self.outboxd(slot_name="pub_gone", publication_name="pub_gone")
        self.assertEqual(d.wait(60), 3, d.output())
        self.assertIn('publication "pub_gone" does not exist', d.output())
        self.assertEqual(self.pg.confirmed_lsn("pub_gone") < self.pg.current_lsn(), True)

    def test_check_and_slot_create(self):
        fd, path = tempfile.mkstemp(suffix=".properties", dir=self.workdir)
        os.close(fd)
        base = {"database.url": self.pg.url, "kafka.bootstrap.servers": self.kafka.bootstrap,
                "slot.name": "pub_cli", "publication.name": "pub_cli"}

        def publication_line(**settings):
            r = run_cli("check", "-c", write_properties(path, dict(base, **settings)))
            line = [l for l in r.stdout.splitlines() if " publication " in l]
            self.assertEqual(len(line), 1, r.stdout)
            return r.returncode, line[0]

        rc, line = publication_line()
        self.assertEqual(rc, 0, line)
        self.assertRegex(line, r'^PASS publication +"pub_cli" is created at start')
        rc, line = publication_line(**{"publication.autocreate.mode": "disabled"})
        self.assertEqual(rc, 1)
        self.assertRegex(line, r'^FAIL publication +"pub_cli" does not exist')
        # slot create makes the publication first, then the slot
        r = run_cli("slot", "create", "-c", write_properties(path, base))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.published("pub_cli"), [["public", "outbox"]])
        self.assertIsNotNone(self.pg.slot("pub_cli"))
        rc, line = publication_line(**{"publication.autocreate.mode": "disabled"})
        self.assertEqual(rc, 0, line)
        self.assertRegex(line, r'^PASS publication +"pub_cli" publishes every outbox table')


if __name__ == "__main__":
    main()
