#!/usr/bin/env python3
"""Runs outboxd against a throwaway PostgreSQL and a local Kafka with a
pgbench workload writing business rows and outbox rows in one transaction.
Kafka is librdkafka's in-process mock cluster (starts at once), or with
DEMO_KAFKA=real a real Apache Kafka 4.3 broker from the Maven Central jars.
The decoding plugin is pgoutput (DEMO_PLUGIN=wal2json for the other).
Shares its PostgreSQL and Kafka set-up with the integration tests."""
import os
import signal
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
sys.path.insert(0, os.path.join(root, "tests", "integration"))
os.environ.setdefault("OUTBOXD_BIN", os.path.join(root, "build", "outboxd"))
os.environ.setdefault("MOCK_KAFKA_BIN", os.path.join(root, "build", "tests", "outboxd-mock-kafka"))

import harness  # noqa: E402

DURATION = int(os.environ.get("DURATION", "30"))
RATE = int(os.environ.get("RATE", "2000"))
PLUGIN = os.environ.get("DEMO_PLUGIN", "pgoutput")
TYPES = ["order", "customer", "payment", "shipment"]

WORKLOAD = """
\\set key random(1, 10000)
\\set agg random(1, 4)
BEGIN;
INSERT INTO orders VALUES (:key, 'NEW') ON CONFLICT (id) DO UPDATE SET status = 'PAID';
INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload)
  VALUES (gen_random_uuid(), (ARRAY['order','customer','payment','shipment'])[:agg],
          'agg-' || :key, 'DemoEvent', jsonb_build_object('key', :key, 'at', now()));
COMMIT;
"""


def main():
    print("== starting a throwaway PostgreSQL 15 (wal_level=logical; plugin %s)" % PLUGIN)
    pg = harness.Postgres()
    if os.environ.get("DEMO_KAFKA") == "real":
        import real_kafka
        print("== starting a real Apache Kafka broker (KRaft, from build-kafka/libs)")
        kafka = real_kafka.RealKafka()
    else:
        print("== starting a local mock Kafka cluster (DEMO_KAFKA=real for a real broker)")
        kafka = harness.MockKafka()
    workdir = tempfile.mkdtemp(prefix="outboxd-demo-")
    conf = os.path.join(workdir, "outboxd.properties")
    with open(conf, "w") as f:
        f.write("database.url = %s\n" % pg.url)
        f.write("kafka.bootstrap.servers = %s\n" % kafka.bootstrap)
        f.write("slot.name = demo\n")
        f.write("plugin.name = %s\n" % PLUGIN)
        f.write("stats.interval.ms = 1000\n")
        f.write("http.listen = 127.0.0.1:%d\n" % harness.free_port())
    print("== outboxd run -c %s" % conf)
    daemon = subprocess.Popen([harness.OUTBOXD, "run", "-c", conf])
    try:
        harness.wait_until(lambda: pg.slot("demo") and pg.slot("demo")[1], 30,
                           "outboxd to start streaming")
        script = os.path.join(workdir, "workload.sql")
        with open(script, "w") as f:
            f.write(WORKLOAD)
        print("== demo workload: %d events/s for %d s (pgbench; progress lines "
              "come from outboxd)" % (RATE, DURATION))
        subprocess.run(["/usr/lib/postgresql/15/bin/pgbench", "-n", "-c", "2",
                        "-R", str(RATE), "-T", str(DURATION), "-f", script,
                        "-h", pg.root, "-p", str(pg.port), "-U", "postgres", pg.dbname],
                       check=True, stdout=subprocess.DEVNULL)
        written = int(pg.sql("SELECT count(*) FROM outbox")[0][0])
        end = pg.current_lsn()
        consumer = harness.Consumer(kafka.bootstrap)
        harness.wait_until(
            lambda: sum(consumer.high_watermarks("outbox.event." + t) for t in TYPES) >= written,
            60, "Kafka to hold every event")
        harness.wait_until(lambda: pg.confirmed_lsn("demo") >= end, 30, "the slot to confirm")
        in_kafka = sum(consumer.high_watermarks("outbox.event." + t) for t in TYPES)
        consumer.close()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
        print("== done: %d outbox rows written, %d events in Kafka, slot confirmed at %s, "
              "outboxd exited with %d" % (written, in_kafka, pg.slot("demo")[0], code))
    finally:
        if daemon.poll() is None:
            daemon.kill()
        kafka.destroy()
        pg.destroy()


if __name__ == "__main__":
    main()
