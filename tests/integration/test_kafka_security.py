"""Kafka security end to end on real brokers: TLS with CA and hostname
verification, SASL over SASL_SSL (the runbook's worked examples, run
verbatim), mTLS with an encrypted client key, and ACLs enforced by the
broker's StandardAuthorizer.  Wrong credentials and untrusted certificates
are clear errors naming the broker and the reason, /readyz says 503, the
connector keeps retrying, and no secret reaches a log, `check` or /metrics.

The same tests run on Kafka 4.3 with SASL/PLAIN and on Kafka 3.9 with
SASL/SCRAM-SHA-512: Debian 12's librdkafka 2.0.2 cannot do SCRAM against
4.x brokers (confluentinc/librdkafka#4895), which the last test shows along
with the warning outboxd gives for it."""
import os
import re
import tempfile
import time

from harness import IntegrationTest, main, run_cli, wait_until, write_properties
from real_kafka import KAFKA_3_VERSION, SASL_USERS, Tls

RUNBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                       "docs", "runbook.md")
APP_PRINCIPALS = ("User:app", "User:CN=outboxd")


def runbook_example(mechanism):
    """The runbook's SASL_SSL properties block for `mechanism`, as a dict."""
    with open(RUNBOOK) as f:
        text = f.read()
    block = re.search(r"<!-- kafka-sasl-ssl-%s -->\s*```properties\n(.*?)```" % mechanism,
                      text, re.S).group(1)
    return dict(line.split(" = ", 1) for line in block.splitlines() if line.strip())


class KafkaSecurityTest(IntegrationTest):
    """Kafka 4.3 with SASL/PLAIN."""

    kafka_version = None
    sasl_mechanism = "PLAIN"

    @classmethod
    def setUpClass(cls):
        cls.tls = Tls(tempfile.mkdtemp(prefix="outboxd-tls-"))
        cls.kafka_options = {"security": cls.tls, "version": cls.kafka_version}
        super().setUpClass()
        principals = [a for p in APP_PRINCIPALS for a in ("--allow-principal", p)]
        cls.kafka.acl("--add", *principals, "--operation", "Write", "--operation", "Describe",
                      "--operation", "Create", "--operation", "DescribeConfigs",
                      "--topic", "outbox.", "--resource-pattern-type", "prefixed")
        cls.kafka.acl("--add", *principals, "--operation", "Read", "--operation", "Write",
                      "--operation", "Describe", "--operation", "Create",
                      "--topic", "outboxd.state")
        cls.kafka.acl("--add", *principals, "--operation", "IdempotentWrite",
                      "--operation", "DescribeConfigs", "--cluster")

    def secrets(self):
        return [SASL_USERS["app"], SASL_USERS["admin"], "wrong-secret",
                Tls.client_key_password]

    def settings(self, **kafka):
        """Outboxd settings: `kafka` keys without the prefix; v4 because the
        broker listens on 127.0.0.1 while `localhost` may resolve to ::1."""
        conf = {"kafka." + k: v for k, v in kafka.items()}
        conf.setdefault("kafka.broker.address.family", "v4")
        return conf

    def tls_settings(self, listener="SSL", ca=None, host="localhost"):
        """TLS without a client certificate to `listener`, by `host`."""
        return self.settings(**{
            "bootstrap.servers": self.kafka.bootstrap_for(listener).replace("localhost", host),
            "security.protocol": "SSL", "ssl.ca.location": ca or self.tls.ca})

    def sasl(self, password=SASL_USERS["app"], mechanism=None):
        return self.settings(**{"bootstrap.servers": self.kafka.bootstrap_for("SASL_SSL"),
                                "security.protocol": "SASL_SSL",
                                "sasl.mechanism": mechanism or self.sasl_mechanism,
                                "sasl.username": "app", "sasl.password": password,
                                "ssl.ca.location": self.tls.ca})

    def check(self, d=None, **settings):
        """`outboxd check` with a running daemon's configuration, or with
        `settings` on top of the test's database."""
        path = d.conf_path if d else write_properties(
            os.path.join(self.workdir, "check.properties"),
            dict({"database.url": self.pg.url, "http.listen": ""}, **settings))
        r = run_cli("check", "-c", path, timeout=120)
        return r.returncode, r.stdout + r.stderr

    def assert_no_secret(self, *texts):
        for text in texts:
            for secret in self.secrets():
                self.assertNotIn(secret, text)

    def streams(self, slot, settings):
        """Starts outboxd with `settings`, checks one event end to end, the
        `check` command and that no secret leaked; returns the daemon."""
        d = self.outboxd(slot_name=slot, **settings)
        d.wait_streaming()
        self.insert_events([(slot, "k-1", "Secured", '{"ok": true}')])
        records = self.consumer.read(["outbox.event." + slot], 1)
        self.assertEqual(len(records), 1)
        self.assertEqual(self.envelopes.decode(records[0].value)["aggregate_id"], "k-1")
        wait_until(lambda: d.http("/readyz")[0] == 200, 30, "ready")
        code, out = self.check(d)
        self.assertEqual(code, 0, out)
        self.assert_no_secret(d.output(), d.http("/metrics")[1], out)
        return d

    def refused(self, slot, settings, reason):
        """outboxd keeps running, not ready, and logs the broker and why."""
        d = self.outboxd(slot_name=slot, **settings)
        d.wait_for_log(reason, timeout=60)
        time.sleep(2)
        self.assertIsNone(d.proc.poll(), "keeps retrying:\n" + d.output()[-2000:])
        self.assertEqual(d.http("/readyz")[0], 503)
        self.assertRegex(d.output(), r"localhost:\d+|127\.0\.0\.1:\d+")
        code, out = self.check(d)
        self.assertEqual(code, 1, out)
        self.assertRegex(out, r"FAIL kafka .*" + reason)
        self.assert_no_secret(d.output(), d.http("/metrics")[1], out)
        self.assertEqual(d.stop(), 0)

    def test_runbook_sasl_ssl_example_streams_verbatim(self):
        example = runbook_example(self.sasl_mechanism)
        example["kafka.bootstrap.servers"] = self.kafka.bootstrap_for("SASL_SSL")
        example["kafka.ssl.ca.location"] = self.tls.ca
        settings = self.settings()
        settings.update(example)
        self.assertEqual(self.streams("sasl", settings).stop(), 0)

    def test_mtls_with_an_encrypted_client_key(self):
        d = self.streams("mtls", self.settings(**{
            "bootstrap.servers": self.kafka.bootstrap_for("MTLS"),
            "security.protocol": "SSL", "ssl.ca.location": self.tls.ca,
            "ssl.certificate.location": self.tls.client_cert,
            "ssl.key.location": self.tls.client_key,
            "ssl.key.password": Tls.client_key_password}))
        self.assertEqual(d.stop(), 0)

    def test_wrong_password(self):
        self.refused("badpass", self.sasl(password="wrong-secret"),
                     "SASL authentication error: Authentication failed")

    def test_untrusted_broker_certificate(self):
        self.refused("untrusted", self.tls_settings(ca=self.tls.other_ca),
                     "certificate verify failed")

    def test_name_not_in_the_broker_certificate(self):
        # the certificate names localhost, not 127.0.0.1
        self.refused("mismatch", self.tls_settings(host="127.0.0.1"),
                     "certificate verify failed")

    def test_mtls_listener_refuses_a_client_without_certificate(self):
        self.refused("nocert", self.tls_settings(listener="MTLS"), "bad certificate")

    def test_check_names_a_missing_acl(self):
        # visible (Describe) but not writable: the probe request is refused
        # at the Write ACL check
        self.kafka.create_topic("denied.dlq", 1)
        self.kafka.acl("--add", "--allow-principal", "User:app", "--operation", "Describe",
                       "--topic", "denied.dlq")
        code, out = self.check(**dict(self.sasl(), **{"errors.dlq.topic": "denied.dlq"}))
        self.assertEqual(code, 1, out)
        self.assertRegex(out, r'FAIL dead letter topic +"denied.dlq": this principal may not '
                              r'write to it .*grant it the Write ACL on topic "denied.dlq"')
        # neither visible nor creatable
        self.kafka.create_topic("hidden.dlq", 1)
        code, out = self.check(**dict(self.sasl(), **{"errors.dlq.topic": "hidden.dlq"}))
        self.assertEqual(code, 1, out)
        self.assertRegex(out, r'FAIL dead letter topic +"hidden.dlq" is not visible to this '
                              r'principal and it may not create it')
        # the same principal, a topic it may write to: nothing is written
        self.kafka.create_topic("outbox.allowed.dlq", 1)
        code, out = self.check(**dict(self.sasl(), **{"errors.dlq.topic": "outbox.allowed.dlq"}))
        self.assertEqual(code, 0, out)
        self.assertIn('"outbox.allowed.dlq" exists and this principal may write to it', out)
        self.assertEqual(self.consumer.high_watermarks("outbox.allowed.dlq"), 0)
        self.assert_no_secret(out)

    def test_scram_with_this_librdkafka_works_on_kafka_3_only(self):
        if self.kafka_version == KAFKA_3_VERSION:
            self.assertEqual(self.streams("scram", self.sasl(mechanism="SCRAM-SHA-512")).stop(), 0)
        else:
            self.refused("scram", self.sasl(mechanism="SCRAM-SHA-512"),
                         "invalid credentials with SASL mechanism SCRAM-SHA-512")
            self.assertIn("fixed in librdkafka 2.6.1", self.daemons[-1].output())


class KafkaSecurityOnKafka3Test(KafkaSecurityTest):
    """The same on Kafka 3.9 with SASL/SCRAM-SHA-512."""

    kafka_version = KAFKA_3_VERSION
    sasl_mechanism = "SCRAM-SHA-512"


if __name__ == "__main__":
    main()
