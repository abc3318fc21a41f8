"""Test helpers: a throwaway PostgreSQL 15 (pgoutput and wal2json), Kafka (a real
Apache Kafka broker, or librdkafka's mock cluster where a test injects
protocol error codes), the real outboxd binary, and an independent consumer
(kafka-python + python3-avro) that checks what reached Kafka.

Which Kafka a run uses is the fixture parameter OUTBOXD_TEST_KAFKA: `real`
(default) or `mock`.  A test class lists the kinds it runs on in
`kafka_kinds`; main() runs the classes that fit the run's kind, so one test
body serves both where it makes sense.

Which logical decoding plugin outboxd uses is the fixture parameter
OUTBOXD_TEST_PLUGIN: `wal2json` (default) or `pgoutput`; every Outboxd the
tests start, and every slot they create themselves (create_slot), uses it.

Everything is started fresh per test class and stopped at the end.  When run
as root (CI), PostgreSQL runs as the `postgres` user, since it refuses root.
"""
import io
import json
import os
import pwd
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import unittest

import warnings

warnings.simplefilter("ignore", ImportWarning)  # kafka-python's vendored six

import avro.io
import avro.schema
from kafka import KafkaConsumer, TopicPartition

from real_kafka import free_port  # noqa: E402,F401 (one allocator for every port)

OUTBOXD = os.environ.get("OUTBOXD_BIN", "build/outboxd")
MOCK_KAFKA = os.environ.get("MOCK_KAFKA_BIN", "build/tests/outboxd-mock-kafka")
SCHEMA_FILE = os.environ.get("SCHEMA_FILE", "schemas/envelope.avsc")
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")

KAFKA_KIND = os.environ.get("OUTBOXD_TEST_KAFKA", "real")
PLUGIN = os.environ.get("OUTBOXD_TEST_PLUGIN", "wal2json")

SKIP = 77  # meson's "skipped", for a missing precondition when run by hand


def require(condition, why):
    if not condition:
        if os.environ.get("CI"):
            raise RuntimeError("precondition missing in CI: " + why)
        print("SKIP: " + why)
        sys.exit(SKIP)


def write_properties(path, settings):
    """An outboxd properties file at `path` ("key = value" lines); keys may
    use underscores for dots (database_url).  A connector's file (one with
    database.url) gets the run's plugin unless it names one.  Returns the
    path."""
    settings = {k.replace("_", "."): v for k, v in settings.items()}
    if "database.url" in settings:
        settings.setdefault("plugin.name", PLUGIN)
    with open(path, "w") as f:
        for k, v in settings.items():
            f.write("%s = %s\n" % (k.replace("_", "."), v))
    return path


def record_headers(record):
    """A Kafka record's headers as {name: text or None}."""
    return {k: (v.decode() if v is not None else None) for k, v in record.headers}


def run_cli(*args, env=None, timeout=60):
    """Runs an outboxd subcommand without the caller's OUTBOXD_* variables
    and without a terminal on stdin (no confirmation prompt)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOXD_")}
    full_env.update(env or {})
    return subprocess.run([OUTBOXD] + list(args), capture_output=True, text=True,
                          env=full_env, timeout=timeout, stdin=subprocess.DEVNULL)


def wait_until(predicate, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


def lsn_int(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


# ---------------------------------------------------------------- PostgreSQL

OUTBOX_DDL = """
CREATE TABLE outbox (
    id            uuid         PRIMARY KEY,
    aggregatetype varchar(255) NOT NULL,
    aggregateid   varchar(255) NOT NULL,
    type          varchar(255) NOT NULL,
    payload       jsonb,
    created_at    timestamptz  NOT NULL DEFAULT now(),
    tenant        text
);
CREATE TABLE orders (id bigint PRIMARY KEY, status text NOT NULL);
"""


class Postgres:
    """A PostgreSQL 15 cluster on a unix socket in a temporary directory."""

    def __init__(self, dbname="shop", extra_conf=""):
        require(os.path.exists(PG_BIN + "/postgres"), "PostgreSQL 15 server")
        require(os.path.exists("/usr/lib/postgresql/15/lib/wal2json.so"),
                "postgresql-15-wal2json")
        self.dbname = dbname
        self.root = tempfile.mkdtemp(prefix="outboxd-pg-")
        self.data = os.path.join(self.root, "data")
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            self.user = "postgres"
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        os.chmod(self.root, 0o755)
        self.extra_conf = extra_conf
        self._init_cluster()

    def _init_cluster(self):
        self._run([PG_BIN + "/initdb", "-D", self.data, "-U", "postgres",
                   "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
        conf = [
            "port = %d" % self.port,
            "listen_addresses = ''",
            "unix_socket_directories = '%s'" % self.root,
            "wal_level = logical",
            "max_replication_slots = 10",
            "max_wal_senders = 10",
            "fsync = off",
            "log_min_messages = warning",
        ]
        # PostgreSQL 15.20 allows only listed output plugins
        if self._has_setting("output_plugin_libraries"):
            conf.append("output_plugin_libraries = 'pgoutput,wal2json'")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n".join(conf) + "\n" + self.extra_conf + "\n")
        self.start()
        self.sql("CREATE DATABASE %s" % self.dbname, db="postgres")
        self.sql(OUTBOX_DDL)

    def replace_cluster(self):
        """A new cluster (another system identifier) behind the same URL:
        same socket directory, port and database, as after a restore."""
        self.stop()
        shutil.rmtree(self.data)
        self._init_cluster()

    def cold_standby(self):
        """A physical standby streaming from this server, made from a cold
        copy of its data directory: pg_basebackup would leave out the
        logical slots, and the WAL before its start that they need."""
        self.sql("CHECKPOINT")
        self.stop()
        sb = Postgres.__new__(Postgres)
        sb.dbname, sb.user, sb.extra_conf = self.dbname, self.user, self.extra_conf
        sb.root = tempfile.mkdtemp(prefix="outboxd-pg-standby-")
        sb.data = os.path.join(sb.root, "data")
        sb.port = free_port()
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(sb.root, pw.pw_uid, pw.pw_gid)
        os.chmod(sb.root, 0o755)
        subprocess.run(["cp", "-a", self.data, sb.data], check=True)
        with open(os.path.join(sb.data, "postgresql.conf"), "a") as f:
            f.write("port = %d\nunix_socket_directories = '%s'\n"
                    "primary_conninfo = 'host=%s port=%d user=postgres'\n"
                    % (sb.port, sb.root, self.root, self.port))
        open(os.path.join(sb.data, "standby.signal"), "w").close()
        if self.user:
            os.chown(os.path.join(sb.data, "standby.signal"), pw.pw_uid, pw.pw_gid)
        self.start()
        sb.start()
        return sb

    def promote(self):
        self._run([PG_BIN + "/pg_ctl", "-D", self.data, "-w", "promote"])

    def system_identifier(self):
        return self.sql("SELECT system_identifier FROM pg_control_system()")[0][0]

    def _run(self, argv, **kw):
        if self.user:
            argv = ["runuser", "-u", self.user, "--"] + argv
        return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)

    def _has_setting(self, name):
        out = self._run([PG_BIN + "/postgres", "--describe-config"]).stdout
        return any(line.split("\t")[0] == name for line in out.splitlines())

    def start(self):
        self._run([PG_BIN + "/pg_ctl", "-D", self.data, "-l",
                   os.path.join(self.root, "server.log"), "-w", "-t", "60", "start"])

    def stop(self, mode="fast"):
        self._run([PG_BIN + "/pg_ctl", "-D", self.data, "-m", mode, "-w", "stop"])

    def restart(self):
        self._run([PG_BIN + "/pg_ctl", "-D", self.data, "-l",
                   os.path.join(self.root, "server.log"), "-m", "fast", "-w",
                   "restart"])

    def destroy(self):
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def url(self):
        return "host=%s port=%d dbname=%s user=postgres" % (
            self.root, self.port, self.dbname)

    def sql(self, query, db=None):
        """Runs SQL through psql; returns rows as lists of strings."""
        out = subprocess.run(
            [PG_BIN + "/psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
             "-h", self.root, "-p", str(self.port), "-U", "postgres",
             "-d", db or self.dbname],
            input=query, check=True, capture_output=True, text=True).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def jsonb_text(self, documents):
        """How the server prints each document as jsonb (None stays None)."""
        out = []
        for doc in documents:
            if doc is None:
                out.append(None)
            else:
                out.append(self.sql("SELECT %s::jsonb::text" % quote(doc))[0][0])
        return out

    def slot(self, name):
        rows = self.sql("SELECT confirmed_flush_lsn, active_pid, wal_status "
                        "FROM pg_replication_slots WHERE slot_name = '%s'" % name)
        return rows[0] if rows else None

    def confirmed_lsn(self, slot):
        row = self.slot(slot)
        return lsn_int(row[0]) if row and row[0] else 0

    def invalidate_slot(self, slot):
        """Makes the server invalidate an inactive slot (wal_status = lost)
        with a 1 MB max_slot_wal_keep_size, WAL and checkpoints."""
        self.sql("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
        self.sql("SELECT pg_reload_conf()")
        try:
            def lost():
                self.sql("INSERT INTO orders SELECT g, 'x' FROM generate_series(1000000, 1020000) g "
                         "ON CONFLICT (id) DO UPDATE SET status = 'y'")
                self.sql("SELECT pg_switch_wal()")
                self.sql("CHECKPOINT")
                return self.slot(slot)[2] == "lost"
            wait_until(lost, 120, "slot %s to be invalidated" % slot, interval=0.5)
        finally:
            self.sql("ALTER SYSTEM RESET max_slot_wal_keep_size")
            self.sql("SELECT pg_reload_conf()")

    def create_slot(self, name, publication="outboxd", tables="outbox"):
        """A slot for the run's plugin, as outboxd would create it: for
        pgoutput its publication first (the slot reads it as of each change)."""
        if PLUGIN == "pgoutput" and not self.sql(
                "SELECT 1 FROM pg_publication WHERE pubname = '%s'" % publication):
            self.sql("CREATE PUBLICATION %s FOR TABLE %s WITH (publish = 'insert, update, truncate', "
                     "publish_via_partition_root = true)" % (publication, tables))
        return lsn_int(self.sql("SELECT lsn FROM pg_create_logical_replication_slot('%s', '%s')"
                                % (name, PLUGIN))[0][0])

    def current_lsn(self):
        return lsn_int(self.sql("SELECT pg_current_wal_lsn()")[0][0])

    def commit_start(self, since, table, where):
        """Where the commit record of the newest transaction that wrote a
        row of `table` matching `where` starts, searched in the WAL from
        LSN `since` (pg_walinspect): the bound of what a connector that
        does not have that transaction may confirm (PostgreSQL sends a
        transaction again unless its commit starts before the confirmed
        LSN; an idle connector confirms the WAL end, which background
        records and the transaction's own first records move on)."""
        rows = self.sql(
            "CREATE EXTENSION IF NOT EXISTS pg_walinspect;"
            "SELECT w.start_lsn FROM pg_get_wal_records_info('%X/%X', "
            "pg_current_wal_flush_lsn()) w WHERE w.resource_manager = 'Transaction' "
            "AND w.record_type LIKE 'COMMIT%%' AND w.xid = (SELECT xmin FROM %s WHERE %s "
            "ORDER BY xmin::text::bigint DESC LIMIT 1)"
            % (since >> 32, since & 0xFFFFFFFF, table, where))
        assert rows, "no commit of a row of %s where %s since %X" % (table, where, since)
        return lsn_int(rows[0][0])


# --------------------------------------------------------------------- Kafka

class MockKafka:
    """librdkafka's mock cluster in a process, driven over its stdin.  Same
    interface as real_kafka.RealKafka, plus error injection."""

    kind = "mock"

    def __init__(self, brokers=1):
        self.nbrokers = brokers
        self.proc = subprocess.Popen([MOCK_KAFKA, "-b", str(brokers)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.bootstrap = self.proc.stdout.readline().strip()
        assert self.bootstrap, "mock Kafka did not start"

    def command(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        assert answer == "ok", "%s: %s" % (line, answer)

    def brokers_down(self):
        for b in range(1, self.nbrokers + 1):
            self.command("down %d" % b)

    def brokers_up(self):
        for b in range(1, self.nbrokers + 1):
            self.command("up %d" % b)

    def create_topic(self, name, partitions):
        self.command("create %s %d" % (name, partitions))

    def inject_produce_errors(self, count, code):
        """The next `count` Produce requests (ApiKey 0) fail with `code`."""
        self.command("errors 0 %d %d" % (count, code))

    def destroy(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Consumer:
    """An independent reader of what reached Kafka (kafka-python)."""

    def __init__(self, bootstrap):
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap,
                                      enable_auto_commit=False,
                                      api_version_auto_timeout_ms=10000)

    def partitions(self, topic):
        return [TopicPartition(topic, p)
                for p in sorted(self.consumer.partitions_for_topic(topic) or [])]

    def high_watermarks(self, topic):
        self.consumer.topics()  # refresh metadata
        tps = self.partitions(topic)
        return sum(self.consumer.end_offsets(tps).values()) if tps else 0

    def read(self, topics, expected, timeout=60):
        """Waits until `topics` hold at least `expected` records (by high
        watermarks, so duplicates count), then reads all of them."""
        def ends():
            self.consumer.topics()  # refresh metadata
            tps = [tp for t in topics for tp in self.partitions(t)]
            if not tps or not all(self.partitions(t) for t in topics):
                return None
            offsets = self.consumer.end_offsets(tps)
            return offsets if sum(offsets.values()) >= expected else None
        try:
            end = wait_until(ends, timeout, "%d records in %s" % (expected, topics),
                             interval=0.3)
        except AssertionError:
            end = ends() or {}
            tps = [tp for t in topics for tp in self.partitions(t)]
            end = self.consumer.end_offsets(tps) if tps else {}
        self.consumer.assign(list(end))
        self.consumer.seek_to_beginning()
        records = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
                self.consumer.position(tp) < off for tp, off in end.items()):
            for batch in self.consumer.poll(timeout_ms=300).values():
                records.extend(batch)
        return records

    def close(self):
        self.consumer.close()


# ---------------------------------------------------------------------- Avro

def canonical_form(schema, namespace=""):
    """Parsing Canonical Form, written from the Avro specification (an
    independent implementation: python3-avro 1.11.1 keeps logicalType)."""
    primitives = {"null", "boolean", "int", "long", "float", "double",
                  "bytes", "string"}

    def fullname(name, ns):
        return name if "." in name or not ns else ns + "." + name

    if isinstance(schema, str):
        return json.dumps(schema if schema in primitives else fullname(schema, namespace))
    if isinstance(schema, list):
        return "[" + ",".join(canonical_form(s, namespace) for s in schema) + "]"
    t = schema["type"]
    if not isinstance(t, str):
        return canonical_form(t, namespace)
    if t in primitives:
        return json.dumps(t)
    if t == "array":
        return '{"type":"array","items":%s}' % canonical_form(schema["items"], namespace)
    if t == "map":
        return '{"type":"map","values":%s}' % canonical_form(schema["values"], namespace)
    name = fullname(schema["name"], schema.get("namespace", namespace))
    inner = name.rpartition(".")[0]
    head = '{"name":%s,"type":%s' % (json.dumps(name), json.dumps(t))
    if t in ("record", "error"):
        fields = ",".join('{"name":%s,"type":%s}' % (
            json.dumps(f["name"]), canonical_form(f["type"], inner))
            for f in schema["fields"])
        return head + ',"fields":[' + fields + "]}"
    if t == "enum":
        return head + ',"symbols":' + json.dumps(schema["symbols"], separators=(",", ":")) + "}"
    return head + ',"size":%d}' % schema["size"]


def crc64_avro(data):
    empty = 0xC15D213AA4D7A795
    fp = empty
    for byte in data:
        fp ^= byte
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
    return fp


class EnvelopeReader:
    """Decodes single-object encoded envelopes with python3-avro."""

    def __init__(self, schema_file=SCHEMA_FILE):
        with open(schema_file) as f:
            text = f.read()
        self.schema = avro.schema.parse(text)
        self.fingerprint = crc64_avro(canonical_form(json.loads(text)).encode())
        self.reader = avro.io.DatumReader(self.schema)

    def decode(self, value):
        assert value[:2] == b"\xc3\x01", "not single-object encoded: %r" % value[:10]
        (fp,) = struct.unpack("<Q", value[2:10])
        assert fp == self.fingerprint, "fingerprint %x != %x" % (fp, self.fingerprint)
        return self.reader.read(avro.io.BinaryDecoder(io.BytesIO(value[10:])))


# ------------------------------------------------------------------- outboxd

class Outboxd:
    """The real outboxd binary with a properties file."""

    def __init__(self, workdir, pg, kafka, **settings):
        self.conf_path = os.path.join(workdir, "outboxd-%d.properties" % time.monotonic_ns())
        self.log_path = self.conf_path + ".log"
        self.http_port = free_port()
        conf = {
            "database.url": pg.url,
            "kafka.bootstrap.servers": kafka.bootstrap,
            "http.listen": "127.0.0.1:%d" % self.http_port,
            "status.interval.ms": "1000",
            "stats.interval.ms": "0",
            "log.level": "debug",
        }
        conf.update(settings)
        write_properties(self.conf_path, conf)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([OUTBOXD, "run", "-c", self.conf_path],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def http(self, path, timeout=10):
        """GET a path of the operations endpoint: (status, body)."""
        import urllib.error
        import urllib.request
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.http_port, path),
                                        timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metrics(self):
        """The /metrics samples as {"name{labels}": value}."""
        status, body = self.http("/metrics")
        assert status == 200, body
        samples = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples

    def output(self):
        with open(self.log_path) as f:
            return f.read()

    def wait_for_log(self, pattern, timeout=30):
        try:
            return wait_until(lambda: re.search(pattern, self.output()), timeout,
                              "log line /%s/" % pattern)
        except AssertionError as e:  # the log as it is now, not as it was
            raise AssertionError("%s in:\n%s" % (e, self.output()[-3000:])) from None

    def wait_streaming(self):
        self.wait_for_log(r"streaming from replication slot")

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout=60):
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("outboxd did not exit:\n" + self.output()[-3000:])
        self.log.close()
        return code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def start_kafka(**real_options):
    """The run's Kafka: see KAFKA_KIND."""
    if KAFKA_KIND == "mock":
        return MockKafka()
    import real_kafka
    require(os.path.isdir(real_kafka.KAFKA_LIBS),
            "Kafka jars in %s (scripts/kafka-jars.sh)" % real_kafka.KAFKA_LIBS)
    return real_kafka.RealKafka(**real_options)


class IntegrationTest(unittest.TestCase):
    """Starts PostgreSQL and Kafka once per test class."""

    pg_conf = ""
    kafka_kinds = ("real",)  # where protocol error injection is not needed
    kafka_options = {}  # for real_kafka.RealKafka: brokers, broker_conf, ...

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="outboxd-it-")
        cls.pg = Postgres(extra_conf=cls.pg_conf)
        cls.kafka = start_kafka(**cls.kafka_options)
        cls.envelopes = EnvelopeReader()

    @classmethod
    def tearDownClass(cls):
        cls.kafka.destroy()
        cls.pg.destroy()
        shutil.rmtree(cls.workdir, ignore_errors=True)

    def setUp(self):
        self.daemons = []
        self.consumer = Consumer(self.kafka.bootstrap)

    def tearDown(self):
        for d in self.daemons:
            d.kill()
        self.consumer.close()

    def outboxd(self, **settings):
        d = Outboxd(self.workdir, self.pg, self.kafka, **settings)
        self.daemons.append(d)
        return d

    def insert_events(self, rows, noise=True):
        """rows: (aggregatetype, aggregateid, type, payload-or-None) tuples,
        inserted in one transaction with an `orders` update as noise."""
        values = ",".join(
            "(gen_random_uuid(), %s, %s, %s, %s)" % (
                quote(a), quote(k), quote(t), "NULL" if p is None else quote(p) + "::jsonb")
            for a, k, t, p in rows)
        sql = "BEGIN;\n"
        if noise:
            sql += "INSERT INTO orders VALUES (%d, 'NEW') ON CONFLICT (id) DO UPDATE SET status = 'PAID';\n" % (
                time.monotonic_ns() % 1000)
        sql += "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) VALUES %s;\n" % values
        sql += "COMMIT;\n"
        self.pg.sql(sql)


class Workload:
    """Writes outbox events in the background, surviving server restarts.

    Event i has a deterministic id, so a retried transaction whose commit
    did in fact happen is not written twice.  `expected` lists every event
    that committed, in commit order per key.

    `seconds` spreads the transactions evenly over that long (never
    faster): a test that disturbs the pipeline while the workload runs
    keeps writing through every fault on a fast machine too."""

    def __init__(self, pg, aggregate="load", events=2000, per_txn=10, keys=20, seconds=None):
        import threading
        self.pg, self.aggregate, self.events = pg, aggregate, events
        self.per_txn, self.keys, self.seconds = per_txn, keys, seconds
        self.committed = 0
        self.failures = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def event_id(aggregate, i):
        import uuid
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "%s/%d" % (aggregate, i)))

    def _run(self):
        i = 0
        started = time.monotonic()
        while i < self.events:
            if self.seconds:
                due = started + self.seconds * i / self.events
                time.sleep(max(0.0, due - time.monotonic()))
            batch = range(i, min(i + self.per_txn, self.events))
            values = ",".join("('%s', %s, 'k-%d', 'Seq', '{\"seq\": %d}')" % (
                self.event_id(self.aggregate, j), quote(self.aggregate), j % self.keys, j)
                for j in batch)
            try:
                self.pg.sql("BEGIN; UPDATE orders SET status = 'X' WHERE id = 1;"
                            "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) "
                            "VALUES %s ON CONFLICT (id) DO NOTHING; COMMIT;" % values)
                i = batch[-1] + 1
                self.committed = i
            except subprocess.CalledProcessError:
                self.failures += 1
                time.sleep(0.2)  # the server is restarting: try again

    def start(self):
        self.thread.start()
        return self

    def hurry(self):
        """Ends the pacing: the rest is written as fast as it can be."""
        self.seconds = None

    def wait(self, timeout=300):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "workload did not finish"


def check_delivery(test, envelopes, records, aggregate, events):
    """Every event at least once, and per key the first deliveries in
    commit order.  Returns the number of duplicates."""
    import json as _json
    first_seen = {}
    duplicates = 0
    order = {}
    for r in records:
        env = envelopes.decode(r.value)
        seq = _json.loads(env["payload"])["seq"]
        if seq in first_seen:
            duplicates += 1
            continue
        first_seen[seq] = True
        order.setdefault(env["aggregate_id"], []).append(seq)
    missing = sorted(set(range(events)) - set(first_seen))
    test.assertEqual(missing, [], "events missing in Kafka")
    for key, seqs in order.items():
        test.assertEqual(seqs, sorted(seqs), "first deliveries of %s out of order" % key)
    return duplicates


def quote(text):
    return "'" + text.replace("'", "''") + "'"


class TimedResult(unittest.TextTestResult):
    """Prints how long each test took: the suite's time budget is tight."""

    def startTest(self, test):
        self._started = time.monotonic()
        super().startTest(test)

    def addSuccess(self, test):
        self.stream.write("(%.1f s) " % (time.monotonic() - self._started))
        super().addSuccess(test)


def main():
    """Runs the module's test classes that fit this run's Kafka kind and
    plugin (a class's `plugins`, default both); a module with none for the
    run is a registration mistake, not a pass.  Arguments, when given, keep
    only the tests whose id contains one of them (for a developer's rerun)."""
    module = sys.modules["__main__"]
    loader = unittest.defaultTestLoader
    suite = unittest.TestSuite()
    for name in dir(module):
        cls = getattr(module, name)
        if (isinstance(cls, type) and issubclass(cls, unittest.TestCase)
                and cls.__module__ == "__main__"
                and KAFKA_KIND in getattr(cls, "kafka_kinds", (KAFKA_KIND,))
                and PLUGIN in getattr(cls, "plugins", (PLUGIN,))):
            suite.addTests(test for test in loader.loadTestsFromTestCase(cls)
                           if not sys.argv[1:] or any(a in test.id() for a in sys.argv[1:]))
    if suite.countTestCases() == 0:
        sys.exit("no test in %s runs on Kafka kind %r" % (module.__file__, KAFKA_KIND))
    result = unittest.TextTestRunner(verbosity=2, resultclass=TimedResult).run(suite)
    sys.exit(0 if result.wasSuccessful() else 1)
