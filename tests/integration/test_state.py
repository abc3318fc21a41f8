"""The state topic: a restart never takes a lost slot or another server for a
first start (SPEC section 7), and the operator accepts a gap explicitly."""
import collections
import json
import re
import time

from harness import IntegrationTest, lsn_int, main, run_cli, wait_until


class StateTopicTest(IntegrationTest):

    def stream_one(self, slot, topic, event_type):
        d = self.outboxd(slot_name=slot)
        d.wait_streaming()
        self.insert_events([(topic, "k-1", event_type, '{"n": 1}')])
        return d

    def types(self, topic, count):
        records = self.consumer.read(["outbox.event." + topic], count)
        return [self.envelopes.decode(r.value)["type"] for r in records]

    def state_records(self):
        """The state topic as an independent client reads it."""
        records = self.consumer.read(["outboxd.state"], 1, timeout=10)
        return [(r.key.decode(), json.loads(r.value)) for r in records]

    def test_slot_dropped_while_stopped_stays_lost_across_restarts(self):
        d = self.stream_one("gone", "gone", "Before")
        self.assertEqual(self.types("gone", 1), ["Before"])
        self.assertEqual(d.stop(), 0)
        confirmed = lsn_int(self.pg.slot("gone")[0])
        self.pg.sql("SELECT pg_drop_replication_slot('gone')")
        # written while no slot exists: these events are the gap
        self.insert_events([("gone", "k-1", "Lost", '{"n": 2}')])

        # the restart right after an exit 3 (Kubernetes) refuses as well
        for attempt in range(2):
            d = self.outboxd(slot_name="gone")
            self.assertEqual(d.wait(60), 3, d.output()[-3000:])
            out = d.output()
            self.assertIn('replication slot "gone" does not exist', out)
            self.assertIn("outboxd slot create --yes", out)
            m = re.search(r"streamed from it up to LSN ([0-9A-F]+/[0-9A-F]+)", out)
            self.assertIsNotNone(m, out[-2000:])
            self.assertEqual(lsn_int(m.group(1)), confirmed, "names the last confirmed LSN")
            self.assertIsNone(self.pg.slot("gone"), "not recreated (attempt %d)" % attempt)

        # without --yes: says what would be skipped, changes nothing
        r = run_cli("slot", "create", "-c", d.conf_path)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("will never be published", r.stdout)
        self.assertIn("nothing changed", r.stdout)
        self.assertIsNone(self.pg.slot("gone"))

        r = run_cli("slot", "create", "--yes", "-c", d.conf_path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIsNotNone(self.pg.slot("gone"))
        key, created = [kv for kv in self.state_records() if kv[0].endswith("/shop/gone")][-1]
        self.assertEqual(created["event"], "created")
        self.assertEqual(key, "%s/shop/gone" % self.pg.system_identifier())

        d = self.stream_one("gone", "gone", "After")
        self.assertEqual(self.types("gone", 2), ["Before", "After"],
                         "streams again from the new slot; the gap stays a gap")
        self.assertEqual(d.stop(), 0)

    def test_kafka_unreachable_at_start_is_waited_for(self):
        # the state cannot be read: no first start is assumed, no slot made
        self.kafka.brokers_down()
        try:
            d = self.outboxd(slot_name="patient")
            d.wait_for_log(r"could not read the state topic[^\n]*reconnecting in", timeout=60)
            self.assertIsNone(self.pg.slot("patient"), "nothing created before the state is known")
            self.assertIsNone(d.proc.poll())
            # a stop while it waits for the state is served at once, not
            # after the 15 s the read may take
            other = self.outboxd(slot_name="impatient")
            other.wait_for_log(r"outboxd [0-9.]+ starting")
            time.sleep(1)
            self.assertEqual(other.stop(timeout=8), 0, other.output()[-2000:])
        finally:
            self.kafka.brokers_up()
        d.wait_for_log(r"streaming from replication slot", timeout=120)
        self.insert_events([("patient", "k-1", "AfterWait", '{"n": 1}')])
        self.assertEqual(self.types("patient", 1), ["AfterWait"])
        self.assertEqual(d.stop(), 0)

    def test_slot_drop_by_the_cli_is_recorded(self):
        d = self.stream_one("dropped", "dropped", "Before")
        self.assertEqual(self.types("dropped", 1), ["Before"])
        self.assertEqual(d.stop(), 0)
        r = run_cli("slot", "drop", "--yes", "-c", d.conf_path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        states = [v for k, v in self.state_records() if k.endswith("/shop/dropped")]
        self.assertEqual(states[-1]["event"], "dropped")
        d = self.outboxd(slot_name="dropped")
        self.assertEqual(d.wait(60), 3, d.output()[-3000:])
        self.assertIn("by `outboxd slot drop`", d.output())
        self.assertIsNone(self.pg.slot("dropped"))

    def test_zz_another_cluster_behind_the_same_url_is_refused(self):
        # zz: runs last in this class, since it replaces the cluster
        d = self.stream_one("moved", "moved", "OnFirst")
        self.assertEqual(self.types("moved", 1), ["OnFirst"])
        self.assertEqual(d.stop(), 0)
        first = self.pg.system_identifier()
        self.pg.replace_cluster()
        second = self.pg.system_identifier()
        self.assertNotEqual(first, second)

        d = self.outboxd(slot_name="moved")
        self.assertEqual(d.wait(60), 3, d.output()[-3000:])
        self.assertIn("system identifier %s" % first, d.output())
        self.assertIn("reaches system identifier %s" % second, d.output())
        self.assertIsNone(self.pg.slot("moved"), "no slot created on the other cluster")

        r = run_cli("slot", "create", "-c", d.conf_path)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("another PostgreSQL cluster", r.stdout)
        r = run_cli("slot", "create", "--yes", "-c", d.conf_path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        d = self.stream_one("moved", "moved", "OnSecond")
        self.assertEqual(self.types("moved", 2), ["OnFirst", "OnSecond"])
        self.assertEqual(d.stop(), 0)


class TimelineBody:
    """Failovers to promoted standbys (new timelines): the events both
    timelines share, which Kafka acknowledged, are skipped (the standby's
    slot copy lags behind them), the new timeline's arrive, each once, and
    nothing is confirmed on the new server beyond what it streamed; first
    within one process, then across a restart (from the state topic).  One
    body for each delivery guarantee (the classes below); values are the
    payloads, {"n": ..., "kind": ...}."""

    guarantee = None

    def payloads(self, topic, expected):
        """The payloads in `topic` as its consumers see them: read_committed
        for exactly-once (librdkafka-free kafka-python 2.0 reads uncommitted
        only), else kafka-python, waiting (briefly) for `expected`."""
        if self.guarantee == "exactly-once":
            return [value for _, value in self.kafka.read_committed([topic])[0]]
        return [r.value.decode() for r in self.consumer.read([topic], expected, timeout=5)]

    @staticmethod
    def insert(server, kind, first, n):
        server.sql("INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) "
                   "SELECT gen_random_uuid(), 'tl', 'k-' || (g %% 3), '%s', "
                   "json_build_object('n', g, 'kind', '%s')::jsonb "
                   "FROM generate_series(%d, %d) g" % (kind, kind, first, first + n - 1))

    @staticmethod
    def writable_of(*servers):
        """A database.url that reaches whichever of `servers` takes writes."""
        return ("host=%s port=%s dbname=shop user=postgres connect_timeout=2 "
                "target_session_attrs=read-write"
                % (",".join(s.root for s in servers), ",".join(str(s.port) for s in servers)))

    @staticmethod
    def cut_off(standby, primary):
        """The standby replays what the primary has, then stops following."""
        wait_until(lambda: lsn_int(standby.sql("SELECT pg_last_wal_replay_lsn()")[0][0])
                   >= primary.current_lsn(), 30, "the standby to replay")
        standby.sql("ALTER SYSTEM SET primary_conninfo = ''")
        standby.sql("SELECT pg_reload_conf()")
        wait_until(lambda: standby.sql("SELECT count(*) FROM pg_stat_wal_receiver")[0][0]
                   == "0", 30, "the standby's WAL receiver to stop")

    def each_once(self, last_kind, expected):
        """Reads until `last_kind`'s events are there; checks that the
        kinds in `expected` ({kind: {n, ...}}) arrived, none twice."""
        seen = collections.Counter()

        def arrived():
            seen.clear()
            for payload in self.payloads("outbox.event.tl", sum(map(len, expected.values()))):
                event = json.loads(payload)
                seen[event["kind"], event["n"]] += 1
            return {n for kind, n in seen if kind == last_kind} == expected[last_kind]
        try:
            wait_until(arrived, 90, "the %s events" % last_kind)
        except AssertionError:
            pass  # the assertions below say which events came
        kinds = {}
        for kind, n in seen:
            kinds.setdefault(kind, set()).add(n)
        self.assertEqual(kinds, expected)
        self.assertEqual([e for e, count in seen.items() if count > 1], [],
                         "events both timelines share came again")

    def test_promoted_standby_is_never_confirmed_beyond_what_it_streamed(self):
        settings = dict(slot_name="tl", value_format="payload",
                        delivery_guarantee=self.guarantee, status_interval_ms="500")
        d = self.outboxd(**settings)
        d.wait_streaming()
        self.insert(self.pg, "Before", 0, 5)
        wait_until(lambda: len(self.payloads("outbox.event.tl", 5)) == 5, 60, "5 events")
        self.assertEqual(d.stop(), 0)
        standby = self.pg.cold_standby()  # the slot copied with its WAL
        third = None
        try:
            url = self.writable_of(self.pg, standby)
            d = self.outboxd(database_url=url, **settings)
            d.wait_streaming()
            self.insert(self.pg, "Replicated", 5, 5)
            self.cut_off(standby, self.pg)
            # the old primary runs ahead of the standby
            self.insert(self.pg, "OnlyOnOld", 10, 5)
            self.pg.sql("INSERT INTO orders SELECT g, 'x' FROM generate_series(10000, 60000) g "
                        "ON CONFLICT (id) DO UPDATE SET status = 'y'")
            ahead = self.pg.current_lsn()
            wait_until(lambda: self.pg.confirmed_lsn("tl") >= ahead, 30,
                       "confirmed up to the old primary's WAL end")
            # the restart for the copy made this server resend from its
            # lazily saved slot position: resuming ahead of it is right
            skipped = d.metrics()["outboxd_resume_skipped_wal_bytes_total"]
            self.pg.stop("immediate")
            standby.promote()
            self.assertLess(standby.current_lsn(), ahead, "the new timeline forked behind")

            d.wait_for_log(r"the server is on timeline 2, this connector streamed on "
                           r"timeline 1, which ended at [0-9A-F]+/[0-9A-F]+ in its history",
                           timeout=90)
            self.insert(standby, "OnNew", 15, 3)
            expected = {"Before": set(range(5)), "Replicated": set(range(5, 10)),
                        "OnlyOnOld": set(range(10, 15)), "OnNew": {15, 16, 17}}
            self.each_once("OnNew", expected)
            time.sleep(2)  # several status intervals
            confirmed = standby.confirmed_lsn("tl")
            self.assertLessEqual(confirmed, standby.current_lsn(),
                                 "never confirmed beyond the new server's WAL")
            self.assertLess(confirmed, ahead)
            self.assertGreater(d.metrics()["outboxd_resume_skipped_wal_bytes_total"], skipped,
                               "the shared WAL Kafka has is skipped")
            self.assertEqual(d.stop(), 0)

            # a second failover while the connector is stopped: its restart
            # knows what Kafka has from the state topic alone
            standby.sql("ALTER SYSTEM RESET primary_conninfo")  # not for its copy
            third = standby.cold_standby()  # its slot copy: before "Second"
            url = self.writable_of(standby, third)
            d = self.outboxd(database_url=url, **settings)
            d.wait_streaming()
            self.insert(standby, "Second", 20, 5)
            acked = standby.current_lsn()
            wait_until(lambda: standby.confirmed_lsn("tl") >= acked, 30, "confirmed")
            self.cut_off(third, standby)
            self.assertEqual(d.stop(), 0)
            standby.stop("immediate")
            third.promote()
            d = self.outboxd(database_url=url, **settings)
            d.wait_for_log(r"the server is on timeline 3, this connector streamed on "
                           r"timeline 2, which ended at [0-9A-F]+/[0-9A-F]+ in its history",
                           timeout=90)
            d.wait_streaming()
            self.insert(third, "OnThird", 25, 3)
            expected.update({"Second": set(range(20, 25)), "OnThird": {25, 26, 27}})
            self.each_once("OnThird", expected)
            self.assertGreater(d.metrics()["outboxd_resume_skipped_wal_bytes_total"], 0,
                               "the slot copy's lag is skipped")
            self.assertEqual(d.stop(), 0)
        finally:
            if third:
                third.destroy()
            standby.destroy()


class TimelineTest(TimelineBody, IntegrationTest):
    guarantee = "at-least-once"


class TimelineExactlyOnceTest(TimelineBody, IntegrationTest):
    guarantee = "exactly-once"


if __name__ == "__main__":
    main()
