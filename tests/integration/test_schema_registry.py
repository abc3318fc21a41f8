"""value.format=avro-registry: values in Confluent's schema registry framing,
decoded by a registry-aware deserializer that is not ours (confluent_kafka's
AvroDeserializer, from PyPI, fetching the schema by id), against the
stand-in registry of schema_registry.py (see its docstring for why)."""
import json
import os
import sys
from datetime import datetime, timezone

from harness import IntegrationTest, main, run_cli, wait_until, write_properties
import real_kafka
from schema_registry import SchemaRegistry

# confluent_kafka and its Avro dependencies, installed by
# scripts/install-deps.sh into a folder of their own
sys.path.append(os.environ.get("PYTHON_PACKAGES", os.path.join(
    os.path.dirname(real_kafka.KAFKA_LIBS), "python")))
from confluent_kafka.schema_registry import SchemaRegistryClient  # noqa: E402
from confluent_kafka.schema_registry.avro import AvroDeserializer  # noqa: E402
from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: E402

ENVELOPE_SUBJECT = "io.outboxd.Envelope"


class SchemaRegistryTest(IntegrationTest):

    def setUp(self):
        super().setUp()
        self.registries = []

    def tearDown(self):
        super().tearDown()
        for r in self.registries:
            r.stop()

    def registry(self, **kw):
        r = SchemaRegistry(**kw)
        self.registries.append(r)
        return r

    def connector(self, registry, slot, **settings):
        settings.setdefault("schema.registry.url", registry.url)
        return self.outboxd(slot_name=slot, value_format="avro-registry",
                            route_topic_replacement=slot + ".${routedByValue}", **settings)

    def decode_all(self, registry, records, **client_conf):
        client = SchemaRegistryClient(dict({"url": registry.url}, **client_conf))
        deserializer = AvroDeserializer(client)
        return [deserializer(r.value, SerializationContext(r.topic, MessageField.VALUE))
                for r in records]

    def assert_events(self, decoded, records, expected):
        """Every field of every event, against the rows written."""
        self.assertEqual(len(decoded), len(expected))
        by_key = {r.key.decode(): (d, r) for d, r in zip(decoded, records)}
        for aggregate, key, event_type, payload in expected:
            d, r = by_key[key]
            headers = dict(r.headers)
            self.assertEqual(d["id"], headers["id"].decode())
            self.assertEqual(d["aggregate_type"], aggregate)
            self.assertEqual(d["aggregate_id"], key)
            self.assertEqual(d["type"], event_type)
            self.assertEqual(None if d["payload"] is None else json.loads(d["payload"]),
                             None if payload is None else json.loads(payload))
            # timestamp-micros, as a datetime: the commit, moments ago
            self.assertLess(abs((datetime.now(timezone.utc) - d["timestamp"]).total_seconds()),
                            600)
            self.assertEqual(d["source"]["db"], self.pg.dbname)
            self.assertEqual((d["source"]["schema"], d["source"]["table"]), ("public", "outbox"))
            self.assertGreater(d["source"]["lsn"], 0)
            self.assertGreater(d["source"]["txid"], 0)
            self.assertEqual(d["fields"], {})
            self.assertEqual(r.value[0], 0, "magic byte")

    def test_confluent_deserializer_reads_every_event_over_tls_with_basic_auth(self):
        tls = real_kafka.Tls(os.path.join(self.workdir, "registry-tls"))
        registry = self.registry(users={"outboxd": "s3cret"}, tls=tls)
        d = self.connector(registry, "sr", schema_registry_basic_auth_user_info="outboxd:s3cret",
                           schema_registry_ssl_ca_location=tls.ca)
        d.wait_streaming()
        rows = [("order", "o-1", "Created", '{"total": 12.5, "note": "ünïcode ✓"}'),
                ("order", "o-2", "Paid", None),
                ("customer", "c-1", "Registered", '{"name": "Zoë"}')]
        self.insert_events(rows)
        self.insert_events([("order", "o-3", "Created", '{"n": 3}')])
        rows.append(("order", "o-3", "Created", '{"n": 3}'))
        records = self.consumer.read(["sr.order", "sr.customer"], 4)
        decoded = self.decode_all(registry, records, **{
            "basic.auth.user.info": "outboxd:s3cret", "ssl.ca.location": tls.ca})
        self.assert_events(decoded, records, rows)
        # one registration per subject, then the id from the cache
        self.assertEqual(sorted(registry.subjects), ["sr.customer-value", "sr.order-value"])
        posts = [p for m, p in registry.requests if m == "POST"]
        self.assertEqual(sorted(posts), ["/subjects/sr.customer-value/versions",
                                         "/subjects/sr.order-value/versions"])
        self.assertEqual(d.stop(), 0)

    def test_subject_name_strategies(self):
        registry = self.registry()
        for slot, strategy, subjects in (
                ("record", "RecordNameStrategy", [ENVELOPE_SUBJECT]),
                ("topicrecord", "io.confluent.kafka.serializers.subject.TopicRecordNameStrategy",
                 ["topicrecord.a-" + ENVELOPE_SUBJECT, "topicrecord.b-" + ENVELOPE_SUBJECT])):
            with self.subTest(strategy=strategy):
                registry.subjects.clear()
                d = self.connector(registry, slot, value_subject_name_strategy=strategy)
                d.wait_streaming()
                rows = [("a", "k-1", "E", '{"x": 1}'), ("b", "k-2", "E", '{"x": 2}')]
                self.insert_events(rows)
                records = self.consumer.read([slot + ".a", slot + ".b"], 2)
                self.assert_events(self.decode_all(registry, records), records, rows)
                self.assertEqual(sorted(registry.subjects), subjects)
                self.assertEqual(d.stop(), 0)

    def test_registry_down_holds_events_at_start_and_mid_stream(self):
        registry = self.registry()
        registry.stop()
        d = self.connector(registry, "down", schema_registry_request_timeout_ms="1000")
        d.wait_streaming()
        before = self.pg.current_lsn()
        self.insert_events([("a", "k-1", "E", '{"n": 1}')])
        d.wait_for_log(r"the schema registry did not give an id for subject \"down.a-value\": "
                       r".*holding its event and everything after it unconfirmed", timeout=30)
        wait_until(lambda: d.http("/readyz")[0] == 503, 30, "/readyz to say so")
        self.assertLessEqual(self.pg.confirmed_lsn("down"), self.pg.commit_start(
            before, "outbox", "aggregatetype = 'a' AND aggregateid = 'k-1'"),
            "nothing confirmed past it")
        registry.start()
        self.assertEqual(len(self.consumer.read(["down.a"], 1)), 1)
        d.wait_for_log(r"the schema registry answers: producing again")
        wait_until(lambda: d.http("/readyz")[0] == 200, 30, "ready again")
        # mid-stream: a new subject while the registry is down
        registry.stop()
        before = self.pg.current_lsn()
        self.insert_events([("b", "k-2", "E", '{"n": 2}')])
        self.insert_events([("a", "k-3", "E", '{"n": 3}')])  # after it: held too
        wait_until(lambda: d.http("/readyz")[0] == 503, 30, "/readyz to say so")
        self.assertLessEqual(self.pg.confirmed_lsn("down"), before)
        registry.start()
        records = self.consumer.read(["down.a", "down.b"], 3)
        self.assert_events(self.decode_all(registry, records), records,
                           [("a", "k-1", "E", '{"n": 1}'), ("b", "k-2", "E", '{"n": 2}'),
                            ("a", "k-3", "E", '{"n": 3}')])
        end = self.pg.current_lsn()
        wait_until(lambda: self.pg.confirmed_lsn("down") >= end, 60, "confirmed after")
        self.assertEqual(d.stop(), 0)

    def test_refusals_stop_without_confirming(self):
        """409 (incompatible), 401 (credentials), and a schema that is not
        registered with auto.register.schemas=false: exit 1, nothing
        confirmed past the event, the registry's reason in the log."""
        registry = self.registry(users={"outboxd": "right"})
        # an older schema of the subject that the envelope cannot read
        registry.put("refuse.a-value", {"type": "record", "name": "Envelope",
                                        "namespace": "io.outboxd",
                                        "fields": [{"name": "id", "type": "long"}]})
        cases = [
            ("refuse", {"schema_registry_basic_auth_user_info": "outboxd:right"},
             r"refuses the envelope schema under subject \"refuse.a-value\" \(HTTP 409"),
            ("refusecred", {"schema_registry_basic_auth_user_info": "outboxd:wrong"},
             r"refuses outboxd's credentials \(HTTP 401\)"),
            ("refuselookup", {"schema_registry_basic_auth_user_info": "outboxd:right",
                              "auto_register_schemas": "false"},
             r"has no envelope schema under subject \"refuselookup.a-value\" and "
             r"auto.register.schemas is false"),
        ]
        for slot, settings, message in cases:
            with self.subTest(slot=slot):
                d = self.connector(registry, slot, **settings)
                d.wait_streaming()
                before = self.pg.current_lsn()
                self.insert_events([("a", "k-" + slot, "E", '{}')])
                self.assertEqual(d.wait(60), 1, d.output()[-3000:])
                self.assertRegex(d.output(), message)
                self.assertLessEqual(self.pg.confirmed_lsn(slot), before)

    def test_lookup_finds_a_registered_schema(self):
        registry = self.registry()
        with open(os.environ["SCHEMA_FILE"]) as f:
            schema_id = registry.put("look.a-value", json.load(f))
        d = self.connector(registry, "look", auto_register_schemas="false")
        d.wait_streaming()
        self.insert_events([("a", "k-1", "E", '{"n": 1}')])
        (record,) = self.consumer.read(["look.a"], 1)
        self.assertEqual(int.from_bytes(record.value[1:5], "big"), schema_id)
        self.assert_events(self.decode_all(registry, [record]), [record],
                           [("a", "k-1", "E", '{"n": 1}')])
        self.assertEqual([m for m, _ in registry.requests].count("POST"), 1)
        self.assertEqual(d.stop(), 0)

    def test_check_reports_the_registry(self):
        registry = self.registry()
        conf = os.path.join(self.workdir, "check-registry.properties")

        def check(**settings):
            values = {"database.url": self.pg.url, "kafka.bootstrap.servers": self.kafka.bootstrap,
                      "value.format": "avro-registry", "schema.registry.url": registry.url,
                      "route.topic.replacement": "chk.${routedByValue}", "errors.bad.event": "skip"}
            values.update(settings)
            write_properties(conf, values)
            return run_cli("check", "-c", conf)

        out = check()
        self.assertRegex(out.stdout, r"PASS +schema registry +\S+ answers; 0 existing subject")
        registry.put("chk.a-value", {"type": "record", "name": "Envelope",
                                     "namespace": "io.outboxd",
                                     "fields": [{"name": "id", "type": "long"}]})
        out = check()
        self.assertNotEqual(out.returncode, 0)
        self.assertRegex(out.stdout, r"FAIL +schema registry +.*not compatible with subject "
                                     r"\"chk.a-value\"")
        out = check(auto_register_schemas="false", route_topic_replacement="other.${routedByValue}")
        self.assertEqual(out.returncode, 0, out.stdout)
        registry.stop()
        out = check(schema_registry_request_timeout_ms="1000")
        self.assertRegex(out.stdout, r"FAIL +schema registry +the schema registry does not answer")


if __name__ == "__main__":
    main()
