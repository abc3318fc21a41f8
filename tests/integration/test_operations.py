"""Operating outboxd: the preflight check, the slot subcommands, /metrics,
/healthz and /readyz, JSON logs without secrets, TLS to PostgreSQL and the
heartbeat query."""
import json
import os
import pwd
import subprocess
import tempfile

from harness import (OUTBOXD, PLUGIN, IntegrationTest, Postgres, free_port, main, run_cli,
                     wait_until, write_properties)


class OperationsTest(IntegrationTest):

    def conf(self, **settings):
        values = {"database.url": self.pg.url,
                  "kafka.bootstrap.servers": self.kafka.bootstrap,
                  "http.listen": ""}
        values.update(settings)
        fd, path = tempfile.mkstemp(suffix=".properties", dir=self.workdir)
        os.close(fd)
        return write_properties(path, values)

    # ------------------------------------------------------------ check

    def check_lines(self, path):
        r = run_cli("check", "-c", path)
        lines = [l for l in r.stdout.splitlines() if l.startswith(("PASS", "FAIL"))]
        return r.returncode, lines, r.stdout + r.stderr

    def test_check_passes_on_a_good_setup(self):
        # the dead letter topic does not exist: the brokers create it on
        # first use (auto.create.topics.enable), so that is a PASS
        code, lines, out = self.check_lines(self.conf(slot_name="checked"))
        self.assertEqual(code, 0, out)
        self.assertTrue(all(l.startswith("PASS") for l in lines), out)
        for item in ("config", "server", "wal_level", "replication role",
                     "replication slot", "wal senders", "outbox table",
                     "mapped columns", "output plugin", "kafka", "dead letter topic"):
            self.assertTrue(any(l.split(None, 1)[1].startswith(item) for l in lines),
                            "no line for %s in\n%s" % (item, out))
        self.assertIn('"outbox.dlq" does not exist yet; the brokers create it on first use', out)
        self.kafka.create_topic("outbox.dlq", 1)
        code, lines, out = self.check_lines(self.conf(slot_name="checked"))
        self.assertEqual(code, 0, out)
        self.assertIn('dead letter topic    "outbox.dlq" exists and this principal may write to it',
                      out)
        self.assertEqual(self.consumer.high_watermarks("outbox.dlq"), 0, "the probe wrote nothing")

    def assert_fails(self, path, item, text):
        code, lines, out = self.check_lines(path)
        self.assertEqual(code, 1, out)
        hits = [l for l in lines if l.startswith("FAIL") and item in l]
        self.assertTrue(hits, "no FAIL %s in\n%s" % (item, out))
        self.assertTrue(any(text in l for l in hits), "no %r in %s" % (text, hits))

    def test_check_names_each_failure_and_its_fix(self):
        self.assert_fails(self.conf(table_include_list="public.nope"),
                          "outbox table", "create it or fix table.include.list")
        self.assert_fails(self.conf(table_field_event_type="kind"),
                          "mapped column", 'has no column "kind" (table.field.event.type)')
        self.assert_fails(self.conf(kafka_bootstrap_servers="127.0.0.1:%d" % free_port()),
                          "kafka", "check kafka.bootstrap.servers")
        self.assert_fails(self.conf(database_url="host=/nonexistent dbname=x"),
                          "server", "check database.url")
        self.pg.sql("DROP ROLE IF EXISTS plain; CREATE ROLE plain LOGIN")
        url = self.pg.url.replace("user=postgres", "user=plain")
        self.assert_fails(self.conf(database_url=url), "replication role",
                          "ALTER ROLE ... REPLICATION")
        self.assert_fails(self.conf(database_url=url), "outbox table",
                          "GRANT SELECT ON public.outbox")

    def test_check_on_a_server_not_set_up_for_logical_decoding(self):
        pg = Postgres(extra_conf="wal_level = replica\nmax_replication_slots = 0\n"
                                 "max_wal_senders = 0\n")
        try:
            path = self.conf(database_url=pg.url)
            self.assert_fails(path, "wal_level", "set wal_level = logical")
            self.assert_fails(path, "replication slot", "raise it")
            self.assert_fails(path, "wal senders", "raise max_wal_senders")
            self.assert_fails(path, "output plugin", "does not load")
        finally:
            pg.destroy()

    # ------------------------------------------------------------ slot

    def test_slot_subcommands(self):
        path = self.conf(slot_name="adm")
        r = run_cli("slot", "create", "-c", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r'created replication slot "adm" \(plugin %s\) at' % PLUGIN)
        r = run_cli("slot", "status", "-c", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        for field in ("plugin              " + PLUGIN, "active              no",
                      "confirmed_flush_lsn", "restart_lsn", "retained_wal",
                      "wal_status          reserved"):
            self.assertIn(field, r.stdout)

        # some WAL to skip, then reset without --yes: says what, changes nothing
        self.insert_events([("adm", "a-1", "Skipped", "{}")])
        before = self.pg.confirmed_lsn("adm")
        r = run_cli("slot", "reset", "--to-current", "-c", path)
        self.assertEqual(r.returncode, 2)
        self.assertRegex(r.stdout, r"will advance slot \"adm\" from [0-9A-F]+/[0-9A-F]{8} to")
        self.assertRegex(r.stdout, r"events committed in those \d+ bytes")
        self.assertIn("nothing changed", r.stdout)
        self.assertEqual(self.pg.confirmed_lsn("adm"), before)
        r = run_cli("slot", "reset", "--to-current", "--yes", "-c", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreater(self.pg.confirmed_lsn("adm"), before)

        # never backwards
        r = run_cli("slot", "reset", "--to-lsn", "0/10", "--yes", "-c", path)
        self.assertEqual(r.returncode, 2)
        self.assertIn("never goes backwards", r.stderr)

        # refusals while a connector holds the slot
        d = self.outboxd(slot_name="adm")
        d.wait_streaming()
        for args in (["drop", "--yes"], ["reset", "--to-current", "--yes"]):
            r = run_cli("slot", *args, "-c", path)
            self.assertEqual(r.returncode, 1)
            self.assertIn("it is active (pid", r.stderr)
        self.assertEqual(d.stop(), 0)

        r = run_cli("slot", "drop", "-c", path)
        self.assertEqual(r.returncode, 2)
        self.assertIn('will drop replication slot "adm"', r.stdout)
        self.assertIsNotNone(self.pg.slot("adm"), "not dropped without --yes")
        r = run_cli("slot", "drop", "--yes", "-c", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIsNone(self.pg.slot("adm"))
        r = run_cli("slot", "status", "-c", path)
        self.assertEqual(r.returncode, 1)
        self.assertIn("does not exist", r.stdout)

    def test_slot_reset_recreates_a_lost_slot(self):
        path = self.conf(slot_name="lostreset")
        self.assertEqual(run_cli("slot", "create", "-c", path).returncode, 0)
        self.pg.invalidate_slot("lostreset")
        r = run_cli("slot", "reset", "--to-current", "--yes", "-c", path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("is lost: will drop it and create it again", r.stdout)
        self.assertEqual(self.pg.slot("lostreset")[2], "reserved")
        run_cli("slot", "drop", "--yes", "-c", path)

    def test_unsafe_slot_name_is_rejected(self):
        r = run_cli("slot", "status", "-c", self.conf(slot_name="x'; DROP TABLE outbox; --"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("invalid slot.name", r.stderr)

    # ------------------------------------------------------------ http

    def test_metrics_match_what_was_produced(self):
        d = self.outboxd(slot_name="metrics")
        d.wait_streaming()
        for i in range(5):
            self.insert_events([("m1", "k-%d" % i, "E", "{}"), ("m2", "k", "E", "{}"),
                                ("m2", "k", "E", "{}")])
        self.insert_events([("bad topic", "k", "E", "{}")])  # one dead letter
        self.consumer.read(["outbox.event.m1", "outbox.event.m2"], 15)
        self.consumer.read(["outbox.dlq"], 1)
        end = self.pg.current_lsn()
        wait_until(lambda: self.pg.confirmed_lsn("metrics") >= end, 30, "confirmation")

        def settled():
            m = d.metrics()
            return m if m.get("outboxd_confirmed_lsn", 0) >= end else None
        m = wait_until(settled, 30, "metrics to catch up")
        self.assertEqual(m['outboxd_events_acked_total{topic="outbox.event.m1"}'], 5)
        self.assertEqual(m['outboxd_events_acked_total{topic="outbox.event.m2"}'], 10)
        self.assertEqual(m['outboxd_events_produced_total{topic="outbox.event.m2"}'], 10)
        self.assertEqual(m['outboxd_events_acked_total{topic="outbox.dlq"}'], 1)
        self.assertEqual(m["outboxd_events_received_total"], 16)
        self.assertEqual(m['outboxd_bad_events_total{reason="invalid_topic"}'], 1)
        self.assertEqual(m["outboxd_inflight_events"], 0)
        self.assertEqual(m["outboxd_confirmed_lsn"], self.pg.confirmed_lsn("metrics"))
        self.assertEqual(m["outboxd_commit_to_ack_seconds_count"], 16)
        self.assertEqual(m['outboxd_commit_to_ack_seconds_bucket{le="+Inf"}'], 16)
        self.assertGreater(m["outboxd_commit_to_ack_seconds_sum"], 0)
        self.assertGreaterEqual(m["outboxd_slot_retained_wal_bytes"], 0)
        self.assertEqual(m["outboxd_streaming"], 1)
        self.assertEqual(d.stop(), 0)

    def test_wait_metrics_name_the_side_outboxd_waits_for(self):
        d = self.outboxd(slot_name="waits", max_inflight_events="5")
        d.wait_streaming()
        server = 'outboxd_wait_seconds_total{for="server"}'
        kafka = 'outboxd_wait_seconds_total{for="kafka"}'
        # nothing to read: the time goes to waiting for the server
        wait_until(lambda: d.metrics()[server] > 0.5, 10, "waiting for the server to show")
        before = d.metrics()[kafka]
        self.kafka.brokers_down()
        try:
            self.insert_events([("w", "k-%d" % i, "E", "{}") for i in range(20)])
            # 5 in flight and no acks: held back by Kafka
            wait_until(lambda: d.metrics()[kafka] > before + 1, 30, "waiting for Kafka to show")
            self.assertEqual(d.metrics()["outboxd_inflight_events"], 5)
        finally:
            self.kafka.brokers_up()
        self.assertEqual(len(self.consumer.read(["outbox.event.w"], 20)), 20)
        self.assertEqual(d.stop(), 0)

    def test_health_and_readiness_follow_postgres_and_kafka(self):
        d = self.outboxd(slot_name="ready", replication_timeout_ms="3000")
        d.wait_streaming()
        wait_until(lambda: d.http("/readyz")[0] == 200, 30, "ready")
        self.assertEqual(d.http("/healthz"), (200, "ok\n"))
        self.pg.stop()
        try:
            wait_until(lambda: d.http("/readyz")[0] == 503, 30, "not ready without PostgreSQL")
            self.assertIn("not streaming", d.http("/readyz")[1])
            self.assertEqual(d.http("/healthz")[0], 200, "alive while retrying")
        finally:
            self.pg.start()
        wait_until(lambda: d.http("/readyz")[0] == 200, 60, "ready again")
        self.kafka.brokers_down()
        try:
            wait_until(lambda: d.http("/readyz")[0] == 503, 30, "not ready without Kafka")
            self.assertIn("kafka", d.http("/readyz")[1])
        finally:
            self.kafka.brokers_up()
        wait_until(lambda: d.http("/readyz")[0] == 200, 60, "ready after Kafka returns")
        self.assertEqual(d.http("/nope")[0], 404)
        self.assertEqual(d.stop(), 0)

    # ------------------------------------------------------------ logs

    def test_json_logs_parse_and_hold_no_password(self):
        secrets = ("Sup3r-S3cret", "Ss1-K3y-Secret")
        # key/value form here; test_cli covers the URI form
        d = self.outboxd(slot_name="jsonlog", log_format="json",
                         database_url=self.pg.url + " password=%s sslpassword=%s" % secrets,
                         kafka_debug="broker")  # librdkafka's own lines too
        d.wait_streaming()
        self.insert_events([("jl", "k", "E", "{}")])
        self.consumer.read(["outbox.event.jl"], 1)
        status, metrics = d.http("/metrics")
        check = run_cli("check", "-c", d.conf_path)
        self.assertEqual(d.stop(), 0)
        for secret in secrets:
            self.assertNotIn(secret, metrics)
            self.assertNotIn(secret, check.stdout + check.stderr)
        self.assertIn("sslpassword=********", check.stdout)
        lines = [l for l in d.output().splitlines() if l.strip()]
        self.assertGreater(len(lines), 5)
        kafka_lines = 0
        for line in lines:
            for secret in secrets:
                self.assertNotIn(secret, line)
            doc = json.loads(line)
            self.assertEqual(set(doc), {"ts", "level", "msg"})
            kafka_lines += doc["msg"].startswith("kafka: ")
        self.assertGreater(kafka_lines, 0, "librdkafka's logs go through ours")
        self.assertTrue(any("password=********" in l for l in lines))
        self.assertTrue(any("sslpassword=********" in l for l in lines))

    # ------------------------------------------------------------ heartbeat

    def test_heartbeat_query_runs(self):
        self.pg.sql("CREATE TABLE IF NOT EXISTS heartbeat (at timestamptz)")
        d = self.outboxd(slot_name="beat", heartbeat_interval_ms="300",
                         heartbeat_action_query="INSERT INTO heartbeat VALUES (now())")
        d.wait_streaming()
        wait_until(lambda: int(self.pg.sql("SELECT count(*) FROM heartbeat")[0][0]) >= 3,
                   30, "three heartbeats")
        self.assertEqual(d.stop(), 0)


class CheckWithoutAutoCreateTest(IntegrationTest):
    """Brokers that do not create topics on first use."""

    kafka_options = {"broker_conf": {"auto.create.topics.enable": "false"}}
    conf = OperationsTest.conf
    check_lines = OperationsTest.check_lines
    assert_fails = OperationsTest.assert_fails

    def test_missing_dead_letter_topic_fails(self):
        self.assert_fails(self.conf(errors_dlq_topic="never.created"), "dead letter topic",
                          '"never.created" does not exist and the brokers will not create it '
                          '(auto.create.topics.enable=false): create it')


class TlsTest(IntegrationTest):
    """PostgreSQL over TLS with a self-signed certificate, verified."""

    @classmethod
    def setUpClass(cls):
        cls.certdir = tempfile.mkdtemp(prefix="outboxd-tls-")
        cls.cert = os.path.join(cls.certdir, "server.crt")
        key = os.path.join(cls.certdir, "server.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                        "-keyout", key, "-out", cls.cert],
                       check=True, capture_output=True)
        os.chmod(key, 0o600)
        os.chmod(cls.certdir, 0o755)
        os.chmod(cls.cert, 0o644)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(key, pw.pw_uid, pw.pw_gid)
        cls.port_hint = None
        cls.pg_conf = ("ssl = on\nssl_cert_file = '%s'\nssl_key_file = '%s'\n"
                       "listen_addresses = '127.0.0.1'\n" % (cls.cert, key))
        super().setUpClass()

    def test_streams_over_verified_tls(self):
        url = ("host=127.0.0.1 port=%d dbname=shop user=postgres sslmode=verify-full "
               "sslrootcert=%s" % (self.pg.port, self.cert))
        d = self.outboxd(slot_name="tls", database_url=url)
        d.wait_streaming()
        pid = self.pg.slot("tls")[1]
        ssl = self.pg.sql("SELECT ssl, version FROM pg_stat_ssl WHERE pid = %s" % pid)
        self.assertEqual(ssl[0][0], "t", "the walsender's connection uses TLS")
        self.insert_events([("tls", "k", "E", "{}")])
        self.assertEqual(len(self.consumer.read(["outbox.event.tls"], 1)), 1)
        self.assertEqual(d.stop(), 0)

    def test_wrong_root_certificate_is_refused(self):
        other = os.path.join(self.certdir, "other.crt")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-days", "2", "-subj", "/CN=other", "-keyout",
                        os.path.join(self.certdir, "other.key"), "-out", other],
                       check=True, capture_output=True)
        url = ("host=127.0.0.1 port=%d dbname=shop user=postgres sslmode=verify-full "
               "sslrootcert=%s" % (self.pg.port, other))
        d = self.outboxd(slot_name="tlsbad", database_url=url)
        d.wait_for_log(r"certificate verify failed")
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    main()
