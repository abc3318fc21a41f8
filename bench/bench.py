#!/usr/bin/env python3
"""outboxd benchmark: measures, in one run on the same WAL, for each decoding
plugin (pgoutput and wal2json) the server's decoding limit (pg_recvlogical ->
/dev/null with outboxd's own options for that plugin) and outboxd itself, and
two naive pipes (wal2json), each into librdkafka's mock cluster and into a
real single-node Apache Kafka broker; then catch-up as a user sees it (topics
auto-created by their first event, timed from process start until the slot's
confirmed_flush_lsn passes the load, watched from the server); then live
commit -> Kafka-ack latency at a fixed offered load into each, and optionally
a soak.

The naive pipes (../shared/bench's naive peers, rebuilt here):
  keyed    pg_recvlogical | mawk (aggregateid as the key) | kcat -K, into one
           topic with as many partitions as outboxd's topics have together,
           same partitioner: per-aggregate order, as an outbox needs
  unkeyed  pg_recvlogical | kcat: no keys, so librdkafka's sticky
           partitioner sends ~1000-event batches to one partition at a time;
           loses per-aggregate order, a speed reference only

Settings (environment):
  BENCH_EVENTS   backlog sizes for catch-up runs   (default "100000 1000000")
  LIVE_RATE      offered events/s for the live run (default 10000)
  LIVE_SECONDS   length of the live run, 0 = skip  (default 30)
  SOAK_SECONDS   length of the soak run, 0 = skip  (default 0; 600 for 10 min)
  OUTBOXD_EXTRA  extra "key=value;key=value" settings for outboxd (tuning)
  BENCH_REPEAT   catch-up runs of each contender, interleaved; the table
                 shows medians                      (default 3)
  BENCH_BROKERS  the Kafka brokers to run against  (default "mock real")
  BENCH_JVM_GC   the garbage collector of the real broker and of Debezium's
                 Connect: "serial" (the least CPU) or "kafka" (the G1 settings
                 of Kafka's start scripts; on 2 cores its concurrent threads
                 cost both JVMs, Debezium fell seconds behind at 10,000/s)
                 (default serial)
  BENCH_BROKER_CONF  extra "key=value;..." server properties of the real
                 broker, e.g. "transaction.partition.verification.enable=false"
                 (default "": Kafka's defaults)
  BENCH_PLUGINS  decoding plugins to compare       (default "pgoutput wal2json")
  USER_EVENTS    backlog for the user's-view catch-up, 0 = skip (default 500000)
  LIVE_PLUGINS   plugins of the live runs          (default "pgoutput wal2json")
  BENCH_PEERS    "debezium" adds Debezium 3.6.1 (Connect standalone, pgoutput,
                 the outbox EventRouter) to the catch-up into the real broker,
                 on the same WAL, and to a commit -> topic latency run beside
                 outboxd's; "" leaves it out  (default "debezium")
  PEER_RATES     offered events/s of those latency runs (default "5000 10000")
  PEER_REPEAT    rounds of those latency runs, each listed (default 1)
  E2E_PEERS      who runs in those latency rounds: "outboxd", "debezium" (when
                 in BENCH_PEERS) and "outboxd-exactly-once" (its consumer
                 reads with isolation.level=read_committed, so arrival is
                 after the Kafka commit)   (default "outboxd debezium")
  LIVE_VARIANTS  the live runs, separated by "|", each "key=value;..." on top
                 of OUTBOXD_EXTRA, e.g. "|delivery.guarantee=exactly-once"
                 (default "": one run with the defaults)
  BENCH_PG_TCP   1: outboxd connects to PostgreSQL over loopback TCP (as
                 Debezium does, and as deployments do) instead of its unix
                 socket, whose 208 KiB send buffer (net.core.wmem_default)
                 stalls the walsender while an exactly-once commit blocks
                 the reading                      (default 0)
  VARIANTS       further outboxd catch-up runs on the same WAL, separated by
                 "|", each "key=value;key=value" on top of OUTBOXD_EXTRA,
                 e.g. VARIANTS="kafka.linger.ms=5|kafka.compression.type=lz4";
                 "{registry}" stands for a schema registry the bench starts
                 (tests/integration/schema_registry.py), e.g.
                 VARIANTS="value.format=avro-registry;schema.registry.url={registry}"
"""
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
sys.path.insert(0, os.path.join(root, "tests", "integration"))
os.environ.setdefault("OUTBOXD_BIN", os.path.join(root, "build-bench", "outboxd"))
os.environ.setdefault("MOCK_KAFKA_BIN", os.path.join(root, "build-bench", "tests", "outboxd-mock-kafka"))

import debezium  # noqa: E402
import harness  # noqa: E402
import real_kafka  # noqa: E402
import schema_registry  # noqa: E402

PG_BIN = harness.PG_BIN
JVM_GC = os.environ.get("BENCH_JVM_GC", "serial")
TYPES = ["order", "customer", "payment", "shipment", "invoice", "refund", "account", "cart"]
BATCH = 10  # outbox rows per transaction
PARTITIONS = 4  # per topic (the default for auto-created ones on both brokers)

# The keyed naive pipe's key extractor: wal2json's aggregateid value, a tab,
# the line; lines without one (BEGIN, COMMIT) are not events and are dropped.
AGGREGATE_ID = '"name":"aggregateid","value":"'
KEY_AWK = ('match($0, /%s[^"]*"/) { print substr($0, RSTART + %d, RLENGTH - %d) "\\t" $0 }'
           % (AGGREGATE_ID, len(AGGREGATE_ID), len(AGGREGATE_ID) + 1))

# A business-row update and BATCH outbox rows per transaction, ~300-byte
# jsonb payloads over 8 aggregate types (like ../shared/bench).
WORKLOAD = """
\\set key random(1, 100000)
BEGIN;
INSERT INTO orders VALUES (:key, 'NEW') ON CONFLICT (id) DO UPDATE SET status = 'PAID';
INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload)
SELECT gen_random_uuid(), (ARRAY['order','customer','payment','shipment','invoice','refund','account','cart'])[1 + (g %% 8)],
       'agg-' || ((:key * 16 + g) %% 50000), 'BenchEvent',
       jsonb_build_object('orderId', :key, 'line', g, 'sku', md5((:key + g)::text),
                          'note', repeat('x', 180), 'amount', (:key %% 1000) + 0.5)
FROM generate_series(1, %d) g;
COMMIT;
""" % BATCH


# The same, with the insert's clock_timestamp() in the payload: the latency
# runs beside Debezium measure commit -> topic from it, in one consumer.
WORKLOAD_TS = WORKLOAD.replace("'amount', (:key %% 1000) + 0.5)" % (),
                               "'amount', (:key %% 1000) + 0.5, "
                               "'ts', extract(epoch from clock_timestamp()))" % ())


# the workload's "ts" member in a payload as the server writes jsonb
TS_FIELD = re.compile(rb'"ts": ([0-9.]+)')


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def proc_stats(pid):
    """(cpu seconds, peak RSS MiB) of a running process."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) / 1024
    return cpu, rss


def cpu_seconds(pid, tid=None):
    """user+system CPU seconds of a process (or one of its threads)."""
    path = "/proc/%d/task/%d/stat" % (pid, tid) if tid else "/proc/%d/stat" % pid
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid):
    """{thread name: (CPU seconds, seconds runnable but waiting for a CPU)}
    of a running process."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                name = f.read().strip()
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                queued = int(f.read().split()[1]) / 1e9
            cpu, q = out.get(name, (0, 0))
            out[name] = (cpu + cpu_seconds(pid, int(tid)), q + queued)
        except OSError:
            pass
    return out


def broker_cpu(kafka):
    """CPU seconds of a Kafka broker's processes so far (0 without one)."""
    if kafka is None:
        return 0.0
    if kafka.kind == "mock":
        return cpu_seconds(kafka.proc.pid)
    return sum(cpu_seconds(n.proc.pid) for n in kafka.nodes if n.running)


class WalsenderWatch(threading.Thread):
    """Samples the CPU of the walsender serving one slot (it exits with its
    client, so the last sample is kept): shows whether the server's
    decoding was the bottleneck of a run."""

    def __init__(self, pg, slot):
        super().__init__(daemon=True)
        self.pg, self.slot = pg, slot
        self.pid, self.cpu, self.runqueue = None, 0.0, 0.0
        self.done = threading.Event()
        self.start()

    def run(self):
        while not self.done.is_set():
            if self.pid is None:
                rows = self.pg.sql("SELECT active_pid FROM pg_replication_slots "
                                   "WHERE slot_name = '%s'" % self.slot)
                if rows and rows[0][0]:
                    self.pid = int(rows[0][0])
            else:
                try:
                    self.cpu = cpu_seconds(self.pid)
                    with open("/proc/%d/schedstat" % self.pid) as f:
                        self.runqueue = int(f.read().split()[1]) / 1e9
                except OSError:
                    return
            time.sleep(0.05)

    def stop(self):
        self.done.set()
        self.join()
        return self.cpu


class SlotWatch:
    """Watches a slot's confirmed_flush_lsn from the server, through one
    psql session (a new connection per look would cost more than it
    measures)."""

    def __init__(self, pg, slot):
        self.slot = slot
        self.psql = subprocess.Popen(
            [PG_BIN + "/psql", "-X", "-q", "-A", "-t", "-h", pg.root, "-p", str(pg.port), "-U", "postgres",
             "-d", pg.dbname], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def confirmed(self):
        self.psql.stdin.write("SELECT COALESCE(confirmed_flush_lsn, '0/0') FROM "
                              "pg_replication_slots WHERE slot_name = '%s';\n" % self.slot)
        self.psql.stdin.flush()
        return harness.lsn_int(self.psql.stdout.readline().strip())

    def until(self, end, d, timeout=600):
        """The monotonic time at which the slot was first seen at or past end."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.confirmed() >= end:
                    return time.monotonic()
                if d.proc.poll() is not None:
                    raise RuntimeError("outboxd exited:\n" + d.output()[-3000:])
                time.sleep(0.01)
            raise RuntimeError("slot %s not confirmed past the load in %d s" % (
                self.slot, timeout))
        finally:
            self.psql.stdin.close()
            self.psql.wait()


class Bench:
    def __init__(self):
        # loopback TCP too: Debezium's pgjdbc has no unix sockets
        self.pg = harness.Postgres(extra_conf="fsync = on\nsynchronous_commit = on\n"
                                              "max_wal_size = 4GB\n"
                                              "listen_addresses = '127.0.0.1'\n")
        self.kafkas = []
        for kind in os.environ.get("BENCH_BROKERS", "mock real").split():
            # one request in flight is not needed here: nothing is injected
            self.kafkas.append(harness.MockKafka() if kind == "mock" else
                               real_kafka.RealKafka(heap="1g", gc=JVM_GC, broker_conf=self.settings(
                                   os.environ.get("BENCH_BROKER_CONF", ""))))
        self.workdir = tempfile.mkdtemp(prefix="outboxd-bench-")
        self.script = os.path.join(self.workdir, "workload.sql")
        with open(self.script, "w") as f:
            f.write(WORKLOAD)
        self.rows = []
        self.user_rows = []
        self.extra = self.settings(os.environ.get("OUTBOXD_EXTRA", ""))
        self.variants = [v for v in os.environ.get("VARIANTS", "").split("|") if v.strip()]
        # "{registry}" in a variant: the stand-in schema registry's URL
        self.registry = None
        if any("{registry}" in v for v in self.variants):
            self.registry = schema_registry.SchemaRegistry()
            self.variants = [v.replace("{registry}", self.registry.url) for v in self.variants]
        self.repeat = int(os.environ.get("BENCH_REPEAT", "3"))
        self.plugins = os.environ.get("BENCH_PLUGINS", "pgoutput wal2json").split()
        self.peers = os.environ.get("BENCH_PEERS", "debezium").split()

    @staticmethod
    def settings(text):
        return dict(kv.strip().split("=", 1) for kv in text.split(";") if "=" in kv)

    def outboxd(self, kafka, overrides=None, **settings):
        if os.environ.get("BENCH_PG_TCP") == "1":
            settings["database_url"] = "host=127.0.0.1 port=%d dbname=%s user=postgres" % (
                self.pg.port, self.pg.dbname)
        extra = dict(self.extra, **(overrides or {}))
        settings.update({k.replace(".", "_"): v for k, v in extra.items()})
        settings.setdefault("log_level", "info")
        return harness.Outboxd(self.workdir, self.pg, kafka, stats_interval_ms="0",
                               **settings)

    def close(self):
        if self.registry:
            self.registry.stop()
        for kafka in self.kafkas:
            kafka.destroy()
        self.pg.destroy()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def pgbench(self, *args):
        return sh([PG_BIN + "/pgbench", "-n", "-f", self.script, "-h", self.pg.root,
                   "-p", str(self.pg.port), "-U", "postgres"] + list(args) + [self.pg.dbname])

    @staticmethod
    def decoder_options(plugin):
        """outboxd's own START_REPLICATION options, as pg_recvlogical -o."""
        if plugin == "pgoutput":
            opts = ["proto_version=1", "publication_names=outboxd"]
        else:
            opts = ["format-version=2", "include-lsn=1", "include-xids=1",
                    "include-timestamp=1", "include-transaction=1", "include-types=0",
                    "add-tables=public.outbox", "actions=insert,update,truncate"]
        return sum((["-o", o] for o in opts), [])

    def template_slots(self):
        """One slot per plugin at the same position, before the load; the
        publication exists before pgoutput's slot, as outboxd makes it."""
        if not self.pg.sql("SELECT 1 FROM pg_publication WHERE pubname = 'outboxd'"):
            self.pg.sql("CREATE PUBLICATION outboxd FOR TABLE outbox WITH (publish = "
                        "'insert, update, truncate', publish_via_partition_root = true)")
        for plugin in self.plugins:
            self.pg.sql("SELECT pg_create_logical_replication_slot('tmpl_%s', '%s')"
                        % (plugin, plugin))

    def drop_template_slots(self):
        for plugin in self.plugins:
            self.pg.sql("SELECT pg_drop_replication_slot('tmpl_%s')" % plugin)

    def copy_slot(self, name, plugin):
        self.pg.sql("SELECT pg_copy_logical_replication_slot('tmpl_%s', '%s')" % (plugin, name))

    def recvlogical(self, slot, end, plugin):
        return [PG_BIN + "/pg_recvlogical", "-h", self.pg.root, "-p", str(self.pg.port),
                "-U", "postgres", "-d", self.pg.dbname, "--slot", slot, "--start",
                "-E", "%X/%X" % (end >> 32, end & 0xFFFFFFFF), "-F", "0", "--no-loop",
                "-f", "-"] + self.decoder_options(plugin)

    def load(self, n):
        """n events in transactions of BATCH; returns the WAL end after it."""
        self.pg.sql("CHECKPOINT")
        clients = 4
        t0 = time.monotonic()
        self.pgbench("-c", str(clients), "-j", "2", "-t", str(n // BATCH // clients))
        load_secs = time.monotonic() - t0
        end = self.pg.current_lsn()
        print("loaded %d events in %.1f s (%.0f/s), %.0f MB of WAL" % (
            n, load_secs, n / load_secs, (end - self.slot_start()) / 1e6), flush=True)
        # one untimed pass first, so that every timed run reads the WAL
        # from the page cache (the first reader would pay for the disk)
        plugin = self.plugins[0]
        self.copy_slot("warm", plugin)
        sh(["bash", "-c", " ".join("'%s'" % a for a in self.recvlogical("warm", end, plugin)) +
            " > /dev/null"])
        self.pg.sql("SELECT pg_drop_replication_slot('warm')")
        return end

    def decode_limit(self, n, end, plugin):
        self.copy_slot("base", plugin)
        argv = " ".join("'%s'" % a for a in self.recvlogical("base", end, plugin))
        secs = self.timed("decode limit [%s]: pg_recvlogical > /dev/null" % plugin, n, "base",
                          argv + " > /dev/null")
        self.pg.sql("SELECT pg_drop_replication_slot('base')")
        return secs

    def timed(self, label, n, slot, argv_shell, kafka=None):
        walsender = WalsenderWatch(self.pg, slot)
        broker0 = broker_cpu(kafka)
        start = time.monotonic()
        r = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "bash", "-c", argv_shell],
                           capture_output=True, text=True)
        secs = time.monotonic() - start
        if r.returncode != 0:
            raise RuntimeError("%s failed: %s" % (label, r.stderr[-2000:]))
        user, sys_, rss_kb = r.stderr.strip().splitlines()[-1].split()
        self.rows.append((label, n, secs, float(user) + float(sys_), int(rss_kb) / 1024,
                          walsender.stop(), broker_cpu(kafka) - broker0))
        return secs

    def rounds(self, n, end):
        """(round, plugin, its decode limit's seconds) for each round: rates
        on a shared 2-core machine wander by 10% from run to run, so every
        contender runs `repeat` times, interleaved, and the tables show
        medians."""
        for r in range(self.repeat):
            for plugin in self.plugins:
                yield r, plugin, self.decode_limit(n, end, plugin)

    def catch_up(self, n):
        self.template_slots()
        end = self.load(n)
        for r, plugin, decode_secs in self.rounds(n, end):
            for kafka in self.kafkas:
                if plugin == "wal2json":  # the naive pipes read its text
                    self.naive_pipe(kafka, n, end, r, keyed=True)
                    self.naive_pipe(kafka, n, end, r, keyed=False)
                for i, variant in enumerate([""] + self.variants):
                    self.catch_up_outboxd(kafka, n, end, decode_secs,
                                          "%d_%d" % (r, i), variant, plugin)
                if plugin == "pgoutput" and kafka.kind == "real" and "debezium" in self.peers:
                    self.catch_up_debezium(kafka, n, end, r)
        self.drop_template_slots()

    # Debezium's settings for a backlog, from its performance guidance:
    # batches and a queue well above the defaults (2048 / 8192), a producer
    # that lingers and batches like outboxd's librdkafka (linger 5 ms) but
    # with larger batches, and heap enough for the queue
    DEBEZIUM_CONNECTOR = {"max.batch.size": "20480", "max.queue.size": "81920",
                          "poll.interval.ms": "50", "extended.headers.enabled": "false",
                          "publication.autocreate.mode": "disabled"}
    DEBEZIUM_WORKER = {"producer.linger.ms": "5", "producer.batch.size": "262144",
                       "producer.acks": "all", "offset.flush.interval.ms": "10000"}

    def catch_up_debezium(self, kafka, n, end, r):
        """Times Debezium from its JVM's start (and from its task running)
        until all n events are in Kafka, on a copy of the pgoutput template
        slot and outboxd's publication."""
        prefix = "dbz%d_%d" % (n, r)
        slot = "dbz_" + prefix
        self.copy_slot(slot, "pgoutput")
        topics = ["%s.%s" % (prefix, t) for t in TYPES]
        for t in topics:
            kafka.create_topic(t, PARTITIONS)
        consumer = harness.Consumer(kafka.bootstrap)
        broker0 = broker_cpu(kafka)
        start = time.monotonic()
        d = debezium.Debezium(self.pg, kafka, slot=slot, publication="outboxd", heap="2g",
                              gc=JVM_GC,
                              connector=self.DEBEZIUM_CONNECTOR, worker=self.DEBEZIUM_WORKER,
                              route_topic_replacement=prefix + ".${routedByValue}")
        running = time.monotonic() - start
        while sum(consumer.high_watermarks(t) for t in topics) < n:
            if d.proc.poll() is not None:
                raise RuntimeError("Debezium exited:\n" + d.output()[-3000:])
            time.sleep(0.05)
        secs = time.monotonic() - start
        cpu, rss = proc_stats(d.proc.pid)
        broker_cpu_s = broker_cpu(kafka) - broker0
        d.stop()
        consumer.close()
        self.pg.sql("SELECT pg_drop_replication_slot('%s')" % slot)
        self.rows.append(("debezium [real] (all in Kafka, JVM start included)", n, secs, cpu,
                          rss, 0.0, broker_cpu_s))
        self.rows.append(("debezium [real] (all in Kafka, from its task running)", n,
                          secs - running, cpu, rss, 0.0, broker_cpu_s))
        print("catch-up %d, debezium [real]: %.2f s (%.0f/s), of it %.2f s to start; "
              "cpu %.1f s, peak RSS %.0f MiB" % (n, secs, n / secs, running, cpu, rss),
              flush=True)

    def user_view(self, n):
        """Catch-up as a user measures it: topics auto-created by their
        first event, outboxd timed from its start until the slot's
        confirmed_flush_lsn (as the server shows it) passes the load."""
        self.template_slots()
        end = self.load(n)
        for r, plugin, decode_secs in self.rounds(n, end):
            for kafka in self.kafkas:
                slot = "user_%s_%d_%s" % (plugin, r, kafka.kind)
                self.copy_slot(slot, plugin)
                watch = SlotWatch(self.pg, slot)
                start = time.monotonic()
                d = self.outboxd(kafka, plugin_name=plugin, slot_name=slot,
                                 slot_create="false",
                                 route_topic_replacement="u%s.${routedByValue}" % slot)
                walsender = WalsenderWatch(self.pg, slot)
                passed = watch.until(end, d)
                secs = passed - start
                cpu, rss = proc_stats(d.proc.pid)
                d.stop()
                walsender_cpu = walsender.stop()
                self.pg.sql("SELECT pg_drop_replication_slot('%s')" % slot)
                label = "user's view: outboxd %s [%s]" % (plugin, kafka.kind)
                self.user_rows.append((label, n, secs, cpu, rss, walsender_cpu, 0.0))
                print("%s: %.2f s, %.2fx of the decode limit" % (
                    label, secs, decode_secs / secs), flush=True)
        self.drop_template_slots()

    def naive_pipe(self, kafka, n, end, r, keyed):
        # topics exist in production: create them first, so that no run
        # waits for auto-creation
        topic = "naive%s%d_%d" % ("keyed" if keyed else "", n, r)
        kafka.create_topic(topic, PARTITIONS * len(TYPES))
        self.copy_slot("naive", "wal2json")
        argv = " ".join("'%s'" % a for a in self.recvlogical("naive", end, "wal2json"))
        kcat = "kcat -P -b %s -t %s -X acks=all" % (kafka.bootstrap, topic)
        if keyed:
            self.timed("naive pipe, keyed [%s]: pg_recvlogical | mawk | kcat" % kafka.kind,
                       n, "naive", "%s | mawk '%s' | %s -K '\t' -X partitioner=murmur2_random" % (
                           argv, KEY_AWK, kcat), kafka)
            consumer = harness.Consumer(kafka.bootstrap)
            in_kafka = consumer.high_watermarks(topic)
            consumer.close()
            if in_kafka != n:
                raise RuntimeError("keyed naive pipe: %d events in Kafka, expected %d" % (
                    in_kafka, n))
        else:
            self.timed("naive pipe, unkeyed [%s]: pg_recvlogical | kcat" % kafka.kind, n,
                       "naive", "%s | %s" % (argv, kcat), kafka)
        self.pg.sql("SELECT pg_drop_replication_slot('naive')")

    def catch_up_outboxd(self, kafka, n, end, decode_secs, index, variant, plugin):
        """Times outboxd from its start until all n events are acked and
        the slot confirmed past end, on a copy of the template slot."""
        prefix = "bench%d_%s_%s" % (n, index, plugin)
        # a slot name of its own per run: the state topic remembers what
        # a connector of the same slot name already streamed, and would
        # (rightly) resume after it
        slot = "obx_" + prefix
        self.copy_slot(slot, plugin)
        topics = ["%s.%s" % (prefix, t) for t in TYPES]
        for t in topics:
            kafka.create_topic(t, PARTITIONS)
        d = self.outboxd(kafka, self.settings(variant), slot_name=slot, slot_create="false",
                         plugin_name=plugin, route_topic_replacement=prefix + ".${routedByValue}")
        walsender = WalsenderWatch(self.pg, slot)
        broker0 = broker_cpu(kafka)
        own0 = time.process_time()
        start = time.monotonic()
        phases = {}
        while True:
            try:
                m = d.metrics()
            except Exception:
                m = {}
            acked = sum(v for k, v in m.items() if k.startswith("outboxd_events_acked_total"))
            now = time.monotonic() - start
            if m.get("outboxd_events_received_total", 0) >= n:
                phases.setdefault("all read", now)
            if acked >= n:
                phases.setdefault("all acked", now)
            if acked >= n and m.get("outboxd_confirmed_lsn", 0) >= end:
                phases.setdefault("confirmed", now)
                break
            if d.proc.poll() is not None:
                raise RuntimeError("outboxd exited:\n" + d.output()[-3000:])
            # the watcher's own CPU competes with the run: look rarely,
            # but often near the end, which a 100 ms step would round
            # up by 50 ms on average (5% of a 100,000-event run)
            time.sleep(0.1 if acked < 0.9 * n else 0.005)
        secs = time.monotonic() - start
        cpu, rss = proc_stats(d.proc.pid)
        threads = thread_cpu(d.proc.pid)
        walsender_cpu = walsender.stop()
        print("  walsender: cpu %.2f s, runnable but waiting for a CPU %.2f s; the bench's own "
              "watching: cpu %.2f s" % (walsender_cpu, walsender.runqueue,
                                        time.process_time() - own0))
        broker_cpu_s = broker_cpu(kafka) - broker0
        consumer = harness.Consumer(kafka.bootstrap)
        in_kafka = sum(consumer.high_watermarks(t) for t in topics)
        consumer.close()
        d.stop()
        self.pg.sql("SELECT pg_drop_replication_slot('%s')" % slot)
        # a committed Kafka transaction also takes one offset per partition
        # (its commit marker): exactly-once runs have more offsets than events
        if in_kafka != n and not (in_kafka > n and "exactly-once" in variant):
            raise RuntimeError("outboxd: %d events in Kafka, expected %d" % (in_kafka, n))
        label = "outboxd %s [%s] %s" % (plugin, kafka.kind,
                                        variant.strip() or "(acked + confirmed)")
        self.rows.append((label, n, secs, cpu, rss, walsender_cpu, broker_cpu_s))
        if plugin == "pgoutput" and kafka.kind == "real" and not variant and \
                "debezium" in self.peers:
            # measured as Debezium's runs are: until the last event is in Kafka
            self.rows.append(("outboxd pgoutput [real] (all in Kafka)", n, phases["all acked"],
                              cpu, rss, walsender_cpu, broker_cpu_s))
        print("catch-up %d, %s: decode limit %.0f/s, outboxd %.0f/s (%.2fx), %.0f MiB; %s" % (
            n, label, n / decode_secs, n / secs, decode_secs / secs, rss,
            ", ".join("%s at %.2f s" % kv for kv in phases.items())), flush=True)
        print("  outboxd CPU by thread (runnable, waiting for a CPU): " + ", ".join(
            "%s %.2f s (%.2f s)" % (k, v[0], v[1])
            for k, v in sorted(threads.items(), key=lambda kv: -kv[1][0]) if v[0] >= 0.01) +
            "; slept waiting for the server %.2f s, for Kafka %.2f s" % (
                m.get('outboxd_wait_seconds_total{for="server"}', 0),
                m.get('outboxd_wait_seconds_total{for="kafka"}', 0)), flush=True)

    def slot_start(self):
        return harness.lsn_int(self.pg.sql(
            "SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'tmpl_%s'"
            % self.plugins[0])[0][0])

    def live_e2e(self, kafka, rate, seconds, peer, r):
        """Commit -> topic latency as one independent consumer sees it, for
        outboxd (pgoutput, value.format=payload) or Debezium, each on a new
        slot while pgbench offers `rate` events/s: the payload carries the
        insert's clock_timestamp() (the transaction commits right after),
        the consumer notes when each record arrives."""
        prefix = "e2e_%s_%d_%s" % (peer.replace("-", "_"), rate, r)
        topics = ["%s.%s" % (prefix, t) for t in TYPES]
        # the broker stamps each record with the time it appended it: the
        # arrival in the topic, free of the consumer's own delays
        for t in topics:
            kafka.create_topic(t, PARTITIONS, config={"message.timestamp.type": "LogAppendTime"})
        slot = prefix
        eos = peer == "outboxd-exactly-once"
        if peer == "debezium":
            d = debezium.Debezium(self.pg, kafka, slot=slot, publication="outboxd",
                                  heap="2g", gc=JVM_GC, connector=self.DEBEZIUM_CONNECTOR,
                                  worker=self.DEBEZIUM_WORKER,
                                  route_topic_replacement=prefix + ".${routedByValue}")
        else:
            extra = {"delivery_guarantee": "exactly-once"} if eos else {}
            d = self.outboxd(kafka, slot_name=slot, plugin_name="pgoutput",
                             value_format="payload",
                             route_topic_replacement=prefix + ".${routedByValue}", **extra)
            d.wait_streaming()
        latencies, done = [], threading.Event()  # (to the topic, to the consumer)
        if eos:
            consumer, consume = self.read_committed_consumer(kafka, topics, latencies, done)
        else:
            consumer, consume = self.uncommitted_consumer(kafka, topics, latencies, done)
        reader = threading.Thread(target=consume, daemon=True)
        reader.start()
        script = os.path.join(self.workdir, "workload_ts.sql")
        with open(script, "w") as f:
            f.write(WORKLOAD_TS)
        sh([PG_BIN + "/pgbench", "-n", "-f", script, "-h", self.pg.root, "-p",
            str(self.pg.port), "-U", "postgres", "-c", "4", "-j", "2", "-R",
            str(rate // BATCH), "-T", str(seconds), self.pg.dbname])
        time.sleep(3)
        done.set()
        reader.join()
        consumer.close()
        cpu, rss = proc_stats(d.proc.pid)
        d.stop()
        self.pg.sql("SELECT pg_drop_replication_slot('%s')" % slot)
        # the first seconds wait for topic metadata and, for Debezium, JIT
        warm = latencies[int(len(latencies) * min(3, seconds / 4) / seconds):]

        def ms(values, q):
            values = sorted(values)
            return values[int(len(values) * q)] * 1e3 if values else float("nan")
        return {"peer": peer, "rate": rate, "events": len(latencies),
                "p50": ms([t for t, _ in warm], 0.5), "p99": ms([t for t, _ in warm], 0.99),
                "p50c": ms([c for _, c in warm], 0.5), "p99c": ms([c for _, c in warm], 0.99),
                "cpu": cpu, "rss": rss}

    @staticmethod
    def uncommitted_consumer(kafka, topics, latencies, done):
        """kafka-python from the end of `topics`; its loop appends
        (commit -> topic, commit -> consumer) per record to latencies."""
        # the consumer shares the two cores: no CRC check in Python, and
        # the timestamp found without parsing the whole JSON
        consumer = harness.KafkaConsumer(bootstrap_servers=kafka.bootstrap,
                                         enable_auto_commit=False, check_crcs=False)
        consumer.assign([harness.TopicPartition(t, p) for t in topics for p in range(PARTITIONS)])
        consumer.seek_to_end()

        def consume():
            while not done.is_set():
                for batch in consumer.poll(timeout_ms=100).values():
                    now = time.time()
                    for r in batch:
                        committed = float(TS_FIELD.search(r.value).group(1))
                        latencies.append((r.timestamp / 1e3 - committed, now - committed))
        return consumer, consume

    @staticmethod
    def read_committed_consumer(kafka, topics, latencies, done):
        """The same with isolation.level=read_committed, which Debian's
        kafka-python (2.0) lacks: confluent_kafka from PyPI (installed by
        scripts/install-deps.sh), whose own librdkafka is not outboxd's.
        A record arrives only once its Kafka transaction committed."""
        sys.path.append(os.path.join(os.path.dirname(real_kafka.KAFKA_LIBS), "python"))
        import confluent_kafka
        consumer = confluent_kafka.Consumer({
            "bootstrap.servers": kafka.bootstrap, "group.id": "bench-read-committed",
            "enable.auto.commit": False, "isolation.level": "read_committed",
            "check.crcs": False, "fetch.wait.max.ms": 10})
        consumer.assign([confluent_kafka.TopicPartition(t, p, confluent_kafka.OFFSET_END)
                         for t in topics for p in range(PARTITIONS)])

        def consume():
            while not done.is_set():
                for r in consumer.consume(1000, 0.1):
                    if r.error():
                        continue
                    now = time.time()
                    committed = float(TS_FIELD.search(r.value()).group(1))
                    latencies.append((r.timestamp()[1] / 1e3 - committed, now - committed))
        return consumer, consume

    def live(self, kafka, rate, seconds, label, plugin, variant=""):
        label = "%s_%s" % (label, plugin)
        for t in TYPES:
            kafka.create_topic("live_%s.%s" % (label, t), PARTITIONS)
        broker0 = broker_cpu(kafka)
        d = self.outboxd(kafka, self.settings(variant), slot_name="live_%s" % label,
                         plugin_name=plugin,
                         route_topic_replacement="live_%s.${routedByValue}" % label)
        d.wait_streaming()
        rss_samples = []
        proc = subprocess.Popen([PG_BIN + "/pgbench", "-n", "-f", self.script, "-h", self.pg.root,
                                 "-p", str(self.pg.port), "-U", "postgres", "-c", "4", "-j", "2",
                                 "-R", str(rate // BATCH), "-T", str(seconds), self.pg.dbname],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = time.monotonic()
        # the first events of each new topic wait for its metadata (and
        # the mock's auto-creation): measure latency after a warm-up, as the
        # difference of two snapshots of the cumulative histograms
        time.sleep(min(3, seconds / 4))
        warm = d.metrics()
        while proc.poll() is None:
            time.sleep(min(10, max(1, seconds / 20)))
            rss_samples.append((time.monotonic() - start, proc_stats(d.proc.pid)[1]))
        time.sleep(2)
        end = d.metrics()
        m = {k: v - warm.get(k, 0) if "_seconds_" in k or "transaction" in k
             else v for k, v in end.items()}
        cpu, rss = proc_stats(d.proc.pid)
        d.stop()
        self.pg.sql("SELECT pg_drop_replication_slot('live_%s')" % label)
        return m, cpu, rss, rss_samples, "%s %s%s" % (plugin, kafka.kind, (" " + variant) if
                                                      variant else ""), \
            broker_cpu(kafka) - broker0

    @staticmethod
    def percentile(m, q, name="outboxd_commit_to_ack_seconds"):
        buckets = sorted((float(k.split('le="')[1].rstrip('"}')), v) for k, v in m.items()
                         if k.startswith(name + "_bucket") and "+Inf" not in k)
        total = m[name + "_count"]
        target = q * total
        lo_bound, lo_count = 0.0, 0.0
        for bound, count in buckets:
            if count >= target:
                frac = (target - lo_count) / (count - lo_count) if count > lo_count else 1
                return lo_bound + frac * (bound - lo_bound)
            lo_bound, lo_count = bound, count
        return float("inf")


def main():
    sizes = [int(x) for x in os.environ.get("BENCH_EVENTS", "100000 1000000").split()]
    rate = int(os.environ.get("LIVE_RATE", "10000"))
    live_secs = int(os.environ.get("LIVE_SECONDS", "30"))
    soak_secs = int(os.environ.get("SOAK_SECONDS", "0"))
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                      if l.startswith("model name")), "?")
    print("machine: %d cores, %s, %s; PostgreSQL %s, librdkafka via %s" % (
        os.cpu_count(), cpu_model, platform.platform(),
        sh([PG_BIN + "/postgres", "--version"]).stdout.split()[-1],
        sh(["pkg-config", "--modversion", "rdkafka"]).stdout.strip()), flush=True)
    b = Bench()
    user_events = int(os.environ.get("USER_EVENTS", "500000"))
    live_plugins = os.environ.get("LIVE_PLUGINS", "pgoutput wal2json").split()
    try:
        for n in sizes:
            b.catch_up(n)
        if user_events:
            b.user_view(user_events)
        live_variants = os.environ.get("LIVE_VARIANTS", "").split("|")
        live = [b.live(k, rate, live_secs, "latency%d_%s" % (i, k.kind), plugin, variant)
                for i, variant in enumerate(live_variants) for k in b.kafkas
                for plugin in live_plugins if live_secs]
        e2e = []
        real = [k for k in b.kafkas if k.kind == "real"]
        e2e_peers = [p for p in os.environ.get("E2E_PEERS", "outboxd debezium").split()
                     if p != "debezium" or "debezium" in b.peers]
        if real and live_secs and e2e_peers and e2e_peers != ["outboxd"]:
            # a broker's first half minute is JIT compilation: its latency
            # tails would fall on whichever peer runs first
            b.live_e2e(real[0], 5000, 20, "outboxd", "warmup")
            for r in range(int(os.environ.get("PEER_REPEAT", "1"))):
                for rate_e2e in (int(x) for x in
                                 os.environ.get("PEER_RATES", "5000 10000").split()):
                    for peer in e2e_peers:
                        e2e.append(b.live_e2e(real[0], rate_e2e, live_secs, peer, r))
        soak = None
        if soak_secs:
            soak = b.live(b.kafkas[0], rate // 2, soak_secs, "soak", live_plugins[0])
    finally:
        b.close()

    report_catch_up(b.rows, b.repeat)
    if b.user_rows:
        report_catch_up(b.user_rows + [r for r in b.rows if r[1] == user_events and
                                       r[0].startswith("decode limit")], b.repeat,
                        "catch-up as a user sees it: topics auto-created, start -> the "
                        "slot's confirmed_flush_lsn past the load")
    for one in live:
        report_live(one, rate, live_secs)
    if e2e:
        print("\n== commit -> topic (the broker's LogAppendTime) and -> consumer, read by one "
              "consumer, %d s at each rate into the real broker (after a warm-up) ==" % live_secs)
        for r in e2e:
            print("%-9s %6d events/s offered: %7d received; commit->topic p50 %6.1f ms, "
                  "p99 %7.1f ms; commit->consumer p50 %6.1f ms, p99 %7.1f ms; "
                  "cpu %.1f s (%.0f us/event), peak RSS %.0f MiB" % (
                      r["peer"], r["rate"], r["events"], r["p50"], r["p99"], r["p50c"],
                      r["p99c"], r["cpu"], 1e6 * r["cpu"] / max(r["events"], 1), r["rss"]))
    if soak:
        report_soak(soak, rate // 2, soak_secs)


def plugin_of(label):
    return "pgoutput" if "pgoutput" in label or "debezium" in label else "wal2json"


def report_catch_up(rows, repeat, title="catch-up"):
    """One line per contender and size: medians over the repeated runs."""
    groups = {}
    for label, n, secs, cpu_s, rss_mb, wal_cpu, broker_cpu_s in rows:
        groups.setdefault((n, label), []).append((secs, cpu_s, rss_mb, wal_cpu, broker_cpu_s))
    # the decode limits first: every other row's ratio is to its plugin's
    groups = dict(sorted(groups.items(), key=lambda kv: (kv[0][0], not kv[0][1].startswith(
        "decode limit"))))
    print("\n== %s: median of %d runs each (same WAL for every row of one size) ==" % (
        title, repeat))
    print("%-52s %9s %8s %10s %7s %15s %8s %10s %9s %10s %9s" % (
        "run", "events", "secs", "events/s", "ratio", "range/s", "cpu s", "us/event",
        "RSS MiB", "walsender", "broker cpu"))
    limits = {}
    for (n, label), runs in groups.items():
        med = [statistics.median(column) for column in zip(*runs)]
        secs, cpu_s, _, wal_cpu, broker_cpu_s = med
        rss_mb = max(r[2] for r in runs)
        rates = [n / r[0] for r in runs]
        if label.startswith("decode limit"):
            limits[n, plugin_of(label)] = n / secs
        print("%-52s %9d %8.2f %10.0f %7.2f %7.0f-%-7.0f %8.2f %10.2f %9.1f %9.0f%% %8.2fs" % (
            label, n, secs, n / secs, (n / secs) / limits[n, plugin_of(label)], min(rates),
            max(rates), cpu_s,
            1e6 * cpu_s / n, rss_mb, 100 * wal_cpu / secs, broker_cpu_s))
    medians = {key: key[0] / statistics.median(r[0] for r in runs)
               for key, runs in groups.items()}
    for (n, label), rate in medians.items():
        other = (n, label.replace("pgoutput", "wal2json"))
        if "outboxd pgoutput" in label and other in medians:
            print("%d events, %s: %.2fx the events/s of outboxd wal2json" % (
                n, label, rate / medians[other]))
    print("(ratio: median rate over the same plugin's decode limit; cpu s and us/event: the "
          "client's own CPU, all threads; RSS: the highest peak; walsender: its CPU as a share "
          "of the run's wall time; broker cpu: the Kafka broker's CPU during the run, [mock] or "
          "[real] as the label says)")


def report_live(live, rate, live_secs):
    m, cpu, rss, _, kind, broker_cpu_s = live
    events = m["outboxd_commit_to_ack_seconds_count"]
    print("\n== live [%s]: %d events/s offered for %d s (latency after a warm-up) ==" % (
        kind, rate, live_secs))
    print("events acked %d, commit->ack p50 %.2f ms, p99 %.2f ms, outboxd cpu %.2f s "
          "(%.1f us/event), peak RSS %.1f MiB, broker cpu %.2f s" % (
              events, 1e3 * Bench.percentile(m, 0.5), 1e3 * Bench.percentile(m, 0.99),
              cpu, 1e6 * cpu / max(events, 1), rss, broker_cpu_s))
    print("outboxd's own share (its receipt of the transaction -> ack): p50 %.2f ms, p99 %.2f ms; "
          "the rest is the server (WAL flush, walsender decoding)" % (
              1e3 * Bench.percentile(m, 0.5, "outboxd_receive_to_ack_seconds"),
              1e3 * Bench.percentile(m, 0.99, "outboxd_receive_to_ack_seconds")))
    committed = m.get('outboxd_kafka_transactions_total{result="committed"}', 0)
    if committed:
        print("Kafka transactions: %d committed, %d aborted, %.0f events each on average; "
              "first event -> commit p50 %.2f ms, p99 %.2f ms" % (
                  committed, m.get('outboxd_kafka_transactions_total{result="aborted"}', 0),
                  m["outboxd_kafka_transaction_events_sum"] / committed,
                  1e3 * Bench.percentile(m, 0.5, "outboxd_kafka_transaction_seconds"),
                  1e3 * Bench.percentile(m, 0.99, "outboxd_kafka_transaction_seconds")))


def report_soak(soak, rate, soak_secs):
    sm, scpu, srss, samples, _, _ = soak
    print("\n== soak: %d events/s for %d s ==" % (rate, soak_secs))
    print("RSS MiB over time: " + ", ".join("%.0fs=%.1f" % s for s in samples))
    print("first %.1f MiB, last %.1f MiB, peak %.1f MiB; p99 %.2f ms" % (
        samples[0][1], samples[-1][1], srss, 1e3 * Bench.percentile(sm, 0.99)))


if __name__ == "__main__":
    main()
