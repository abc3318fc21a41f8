"""Debezium's PostgreSQL connector with its outbox EventRouter, under Kafka
Connect standalone: the peer outboxd is compared with (test_debezium.py,
bench/bench.py).  Connect comes from Kafka's own jars (build-kafka/libs),
the connector from build-kafka/debezium (scripts/kafka-jars.sh,
tests/debezium/pom.xml).

    Debezium(pg, kafka, slot="dbz", **router)   started and RUNNING
      heap, gc="serial" (tests) or "kafka" (connect-standalone.sh's G1 settings)
    .stop()                                      stops Connect (SIGTERM)

`router` holds EventRouter settings without their `transforms.outbox.`
prefix (underscores for dots, as Outboxd's settings), on top of the
defaults below; `connector` settings likewise for the connector itself.
Values go out with StringConverter: the record value is the payload
column's text, the key the aggregate id.
"""
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request

import real_kafka

DEBEZIUM_PLUGINS = os.environ.get(
    "DEBEZIUM_PLUGINS", os.path.join(os.path.dirname(real_kafka.KAFKA_LIBS), "debezium"))


def properties(path, values):
    with open(path, "w") as f:
        for k, v in values.items():
            f.write("%s=%s\n" % (k, v))
    return path


class Debezium:
    """Connect standalone with one Debezium PostgreSQL connector (`outbox`)."""

    def __init__(self, pg, kafka, slot="dbz", publication="dbz", heap="512m", gc="serial",
                 connector=None, worker=None, **router):
        self.pg = pg
        self.dir = tempfile.mkdtemp(prefix="outboxd-debezium-")
        self.port = real_kafka.free_port()
        self.slot = slot
        worker_conf = {
            "bootstrap.servers": kafka.bootstrap,
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.storage.StringConverter",
            "offset.storage.file.filename": os.path.join(self.dir, "offsets"),
            "offset.flush.interval.ms": "1000",
            "plugin.path": DEBEZIUM_PLUGINS,
            "listeners": "http://127.0.0.1:%d" % self.port,
        }
        worker_conf.update(worker or {})
        conf = {
            "name": "outbox",
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "plugin.name": "pgoutput",
            # pgjdbc speaks TCP only: the PostgreSQL fixture must listen on
            # loopback (Postgres(extra_conf="listen_addresses = '127.0.0.1'"))
            "database.hostname": "127.0.0.1",
            "database.port": pg.port,
            "database.user": "postgres",
            "database.password": "unused",
            "database.dbname": pg.dbname,
            "slot.name": slot,
            "publication.name": publication,
            "publication.autocreate.mode": "filtered",
            "table.include.list": "public.outbox",
            "snapshot.mode": "no_data",
            "tombstones.on.delete": "false",
            "topic.prefix": "dbz",
            "transforms": "outbox",
            "transforms.outbox.type": "io.debezium.transforms.outbox.EventRouter",
        }
        conf.update(connector or {})
        for k, v in router.items():
            conf["transforms.outbox." + k.replace("_", ".")] = v
        self.worker_path = properties(os.path.join(self.dir, "worker.properties"), worker_conf)
        self.connector_path = properties(os.path.join(self.dir, "outbox.properties"), conf)
        self.log_path = os.path.join(self.dir, "connect.log")
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            real_kafka.java_argv("org.apache.kafka.connect.cli.ConnectStandalone",
                                 self.worker_path, self.connector_path, heap=heap,
                                 jvm=real_kafka.GC_OPTIONS[gc]),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=real_kafka.die_with_parent)
        log.close()
        self.wait_running()

    def output(self):
        with open(self.log_path) as f:
            return f.read()

    def status(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/connectors/outbox/status"
                                    % self.port, timeout=5) as r:
            return json.loads(r.read())

    def wait_running(self, timeout=180):
        """Until the connector's task runs and streams from its slot (the
        slot is active: Connect logs at WARN here, see tests/kafka)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                s = self.status()
                tasks = s.get("tasks", [])
                if tasks and tasks[0]["state"] == "FAILED":
                    raise AssertionError("Debezium failed: %s" % tasks[0].get("trace", "")[-3000:])
                slot = self.pg.slot(self.slot)
                if (s["connector"]["state"] == "RUNNING" and tasks
                        and tasks[0]["state"] == "RUNNING" and slot and slot[1]):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("Debezium did not start:\n" + self.output()[-5000:])

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
