"""The command line: subcommands, exit codes, configuration errors, and that
secrets stay out of the logs."""
import json
import os
import signal
import subprocess
import tempfile
import time
import unittest

from harness import OUTBOXD, SCHEMA_FILE, free_port, run_cli as run, wait_until


class CliTest(unittest.TestCase):

    def config(self, text):
        f = tempfile.NamedTemporaryFile("w", suffix=".properties", delete=False)
        f.write(text)
        f.close()
        self.addCleanup(os.unlink, f.name)
        return f.name

    def test_schema_prints_the_schema_file(self):
        r = run("schema")
        self.assertEqual(r.returncode, 0)
        with open(SCHEMA_FILE) as f:
            self.assertEqual(json.loads(r.stdout), json.load(f))

    def test_version(self):
        r = run("version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^outboxd \d+\.\d+\.\d+")

    def test_usage_errors_exit_2(self):
        self.assertEqual(run().returncode, 2)
        r = run("frobnicate")
        self.assertEqual(r.returncode, 2)
        self.assertIn('unknown command "frobnicate"', r.stderr)
        self.assertEqual(run("run", "extra").returncode, 2)

    def test_unknown_key_names_the_nearest_one(self):
        path = self.config("database.url = dbname=x\nkafka.bootstrap.servers = k:1\n"
                           "table.include.lst = public.outbox\n")
        r = run("run", "-c", path)
        self.assertEqual(r.returncode, 2)
        self.assertIn('%s:3: unknown configuration key "table.include.lst"' % path, r.stderr)
        self.assertIn('did you mean "table.include.list"', r.stderr)

    def test_missing_required_key_and_env_override(self):
        path = self.config("kafka.bootstrap.servers = k:1\n")
        r = run("run", "-c", path)
        self.assertEqual(r.returncode, 2)
        self.assertIn('"database.url" is required', r.stderr)
        r = run("run", "-c", path, env={"OUTBOXD_DATABASE_URL": "dbname=x",
                                        "OUTBOXD_MAX_INFLIGHT_EVENTS": "-1"})
        self.assertEqual(r.returncode, 2)
        self.assertIn("$OUTBOXD_MAX_INFLIGHT_EVENTS", r.stderr)

    def test_bad_kafka_setting_is_a_runtime_error_naming_it(self):
        path = self.config("database.url = dbname=x\nkafka.bootstrap.servers = k:1\n"
                           "kafka.no.such.setting = 1\n")
        r = run("run", "-c", path)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("kafka.no.such.setting", r.stderr)

    def test_settings_that_break_durability_are_refused(self):
        for setting, reason in [("kafka.acks = 1", "kafka.acks=1 is refused"),
                                ("kafka.enable.idempotence = false",
                                 "kafka.enable.idempotence=false is refused"),
                                ("kafka.delivery.report.only.error = true",
                                 "kafka.delivery.report.only.error=true is refused")]:
            path = self.config("database.url = dbname=x\nkafka.bootstrap.servers = k:1\n"
                               + setting + "\n")
            for command in ("run", "check"):
                r = run(command, "-c", path)
                self.assertNotEqual(r.returncode, 0, setting)
                self.assertIn(reason, r.stdout + r.stderr, setting)
                if command == "run":
                    self.assertEqual(r.returncode, 2, setting)

    def test_password_never_logged_and_sigterm_while_retrying(self):
        secret, key_secret = "s3cr3t-Pa55", "k3y-Pa55"
        port = free_port()  # nothing listens: the connector keeps retrying
        path = self.config(
            "database.url = postgresql://app:%s@127.0.0.1:%d/shop?connect_timeout=2"
            "&sslpassword=%s\n"
            "kafka.bootstrap.servers = 127.0.0.1:%d\nlog.format = json\nhttp.listen =\n"
            % (secret, port, key_secret, port))
        log = tempfile.TemporaryFile("w+")
        proc = subprocess.Popen([OUTBOXD, "run", "-c", path], stdout=log, stderr=log)
        try:
            def retried():
                log.seek(0)
                return log.read().count("reconnecting in") >= 2
            wait_until(retried, 30, "two reconnect attempts")
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(30), 0, "a stop while disconnected is clean")
        finally:
            if proc.poll() is None:
                proc.kill()
        log.seek(0)
        lines = [l for l in log.read().splitlines() if l.strip()]
        self.assertTrue(lines)
        for line in lines:
            self.assertNotIn(secret, line)
            self.assertNotIn(key_secret, line)
            if line.startswith("{"):
                doc = json.loads(line)  # every JSON line parses
                self.assertIn(doc["level"], ("debug", "info", "warn", "error"))
        self.assertTrue(any("password=********" in l for l in lines))
        self.assertTrue(any("sslpassword=********" in l for l in lines))


if __name__ == "__main__":
    unittest.main(verbosity=2)
