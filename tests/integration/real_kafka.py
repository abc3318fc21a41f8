"""Apache Kafka as a test fixture: real brokers (KRaft) run from the Maven
Central jars that scripts/kafka-jars.sh puts in build-kafka/libs.

    RealKafka()                 one combined broker+controller node
    RealKafka(brokers=3)        a dedicated controller and three brokers,
                                replication factor 3, min.insync.replicas=2
    RealKafka(security=Tls(d))  adds TLS, mTLS and SASL_SSL (SCRAM-SHA-512 and
                                PLAIN) listeners and enforces ACLs; see
                                bootstrap_for()
    RealKafka(version=KAFKA_3_VERSION)  the 3.x broker (see KAFKA_3_VERSION)
    RealKafka(proxied=True)     adds a listener reached through a
                                kafka_proxy.KafkaProxy per broker
                                (bootstrap_for("PROXIED"), proxy(node_id))

Everything listens on loopback ports picked at start.  Brokers are stopped
by PID (SIGKILL: the data goes away with the fixture) and restarted on the
same ports and data.  A three-broker cluster keeps its controller out of
the brokers, as production KRaft clusters do, so that killing brokers never
takes the metadata quorum with it and the controller really shrinks the ISR
(NOT_ENOUGH_REPLICAS, not just timeouts).

Heaps are small (the machine has two cores); timeouts that decide how fast
a dead broker is fenced are shortened so failover tests take seconds, not
half a minute: broker.session.timeout.ms=4000, replica.lag.time.max.ms=6000.
Kafka's classes come from a class data sharing archive of the jars
(class_archive()): about a second less per broker start here.
"""
import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

from kafka_proxy import KafkaProxy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KAFKA_LIBS = os.environ.get("KAFKA_LIBS", os.path.join(ROOT, "build-kafka", "libs"))
# A 3.x broker beside the 4.x default (scripts/kafka-jars.sh fetches both):
# Debian 12's librdkafka 2.0.2 computes SCRAM proofs that Kafka 4.x rejects
# (fixed in librdkafka 2.6.1), so SCRAM is tested where it can work.
KAFKA_3_VERSION = "3.9.1"
# a read_committed reader, run from source (RealKafka.read_committed)
READ_COMMITTED = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "ReadCommitted.java")


def libs_for(version):
    """The classpath folder of a Kafka version; None is the default one."""
    if version is None:
        return KAFKA_LIBS
    return os.path.join(os.path.dirname(KAFKA_LIBS), "libs-" + version)
LOG4J_CONF = os.path.join(ROOT, "tests", "kafka", "log4j2.xml")
JAVA = os.environ.get("JAVA", "java")

# SASL users (SCRAM credentials created at format time, PLAIN from the
# listener's list): the fixture's admin (a super user) and an application
# user that gets the ACLs the runbook lists.
SASL_USERS = {"admin": "admin-secret", "app": "app-secret"}
SUPER_USERS = "User:ANONYMOUS;User:admin"


# "serial": the least CPU and memory, for tests; "kafka": the G1 settings of
# Kafka's own start script (kafka-run-class.sh), for measurements
GC_OPTIONS = {
    "serial": ["-XX:+UseSerialGC"],
    "kafka": ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
              "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent"],
}


def die_with_parent():
    """Popen preexec_fn: the broker gets SIGKILL when the test process dies
    (PR_SET_PDEATHSIG), so a killed or timed-out test leaves none behind."""
    import ctypes
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


_ports_given = set()


def free_port():
    """A loopback port nothing listens on, never one this process handed
    out before: the kernel may offer a just-closed port again, and two
    listeners of one broker on the same port stop it from starting."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port


def java_argv(main_class, *args, libs=KAFKA_LIBS, heap="128m", jvm=None):
    """The command line of a JVM running main_class from Kafka's jars; by
    default a short-lived tool (small heap, quick-start compiler)."""
    if jvm is None:
        jvm = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
    return ([JAVA, "-Xmx" + heap] + jvm +
            ["-Dlog4j2.configurationFile=" + LOG4J_CONF, "-cp", libs + "/*", main_class] +
            list(args))


def class_archive(version=None):
    """The JVM options that take Kafka's classes (those of `version`'s
    jars) from a class data sharing archive: build-kafka/libs.jsa (or
    libs-<version>.jsa), made by
    one broker that starts and stops cleanly (the JVM writes it as it exits,
    ~5 s) when it is missing or older than the jars or the JVM.  The JVM
    checks it too, and starts without it (a warning in the log) when it
    does not match.  No options when it cannot be made."""
    libs = libs_for(version).rstrip("/")
    path = libs + ".jsa"
    java_binary = os.path.realpath(shutil.which(JAVA) or JAVA)
    inputs = [os.path.join(libs, f) for f in os.listdir(libs)] + [java_binary]
    if not os.path.exists(path) or os.path.getmtime(path) < max(map(os.path.getmtime, inputs)):
        made = "%s.%d.tmp" % (path, os.getpid())
        try:
            kafka = RealKafka(version=version, jvm_extra=["-XX:ArchiveClassesAtExit=" + made])
            for node in kafka.nodes:
                node.kill(signal.SIGTERM)
            kafka.destroy()
            os.replace(made, path)
        except (AssertionError, OSError) as e:
            print("real_kafka: no class data sharing archive (%s)" % e, file=sys.stderr)
    return ["-XX:SharedArchiveFile=" + path] if os.path.exists(path) else []


def java(main_class, *args, **kw):
    """Runs one of Kafka's command-line tools from the jars."""
    return subprocess.run(java_argv(main_class, *args), check=True, capture_output=True,
                          text=True, **kw)


def cluster_id():
    """A random cluster id as Kafka's Uuid prints it (URL-safe base64)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if text[0] not in "-_":
            return text


class Tls:
    """A throwaway CA, a broker certificate for the name localhost, and
    a client certificate whose key is encrypted with `client_key_password`
    (for mTLS).  Also a second CA that signed nothing, for refusal tests."""

    client_key_password = "client-key-secret"

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.ca = self._path("ca.pem")
        self.other_ca = self._path("other-ca.pem")
        self._ca("ca", "outboxd test CA")
        self._ca("other-ca", "an unrelated CA")
        # localhost only: connecting to 127.0.0.1 must fail the hostname check
        self._leaf("broker", "localhost", "subjectAltName=DNS:localhost")
        self._leaf("client", "outboxd", "extendedKeyUsage=clientAuth")
        # the broker's PEM keystore: unencrypted PKCS#8 key, then the chain
        self.broker_keystore = self._path("broker-keystore.pem")
        with open(self.broker_keystore, "w") as out:
            for name in ("broker.key", "broker.pem"):
                with open(self._path(name)) as f:
                    out.write(f.read())
        self.client_cert = self._path("client.pem")
        self.client_key = self._path("client-encrypted.key")
        self._openssl("pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", self._path("client.key"),
                      "-out", self.client_key, "-passout", "pass:" + self.client_key_password)

    def _path(self, name):
        return os.path.join(self.dir, name)

    def _openssl(self, *args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True)

    def _ca(self, name, cn):
        self._openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                      "-subj", "/CN=" + cn, "-keyout", self._path(name + ".key"),
                      "-out", self._path(name + ".pem"))

    def _leaf(self, name, cn, extension):
        ext = self._path(name + ".ext")
        with open(ext, "w") as f:
            f.write(extension + "\n")
        self._openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + cn,
                      "-keyout", self._path(name + ".key"), "-out", self._path(name + ".csr"))
        self._openssl("x509", "-req", "-days", "2", "-in", self._path(name + ".csr"),
                      "-CA", self._path("ca.pem"), "-CAkey", self._path("ca.key"),
                      "-CAcreateserial", "-extfile", ext, "-out", self._path(name + ".pem"))


class Node:
    """One Kafka process: its ports, properties file and log."""

    def __init__(self, root, node_id, roles, libs):
        self.id = node_id
        self.libs = libs
        self.roles = roles
        self.dir = os.path.join(root, "node-%d" % node_id)
        os.makedirs(self.dir)
        self.properties = os.path.join(self.dir, "server.properties")
        self.log_path = os.path.join(self.dir, "kafka.log")
        self.ports = {}
        self.proc = None

    @property
    def is_broker(self):
        return "broker" in self.roles

    def start(self, heap, gc, jvm_extra=()):
        log = open(self.log_path, "a")
        self.log_offset = log.tell()
        self.proc = subprocess.Popen(
            java_argv("kafka.Kafka", self.properties, libs=self.libs, heap=heap,
                      jvm=["-Xms64m"] + GC_OPTIONS[gc] + list(jvm_extra)),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent)
        log.close()

    def wait_started(self, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path) as f:
                f.seek(self.log_offset)
                text = f.read()
            if "Kafka Server started" in text:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError("Kafka node %d did not start:\n%s" % (self.id, text[-3000:]))

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None


class RealKafka:
    """Apache Kafka brokers on loopback; see the module comment."""

    kind = "real"

    def __init__(self, brokers=1, security=None, broker_conf=None, heap="384m",
                 version=None, gc="serial", proxied=False, jvm_extra=None):
        self.root = tempfile.mkdtemp(prefix="outboxd-kafka-")
        self.gc = gc
        self.libs = libs_for(version)
        # JVM options of every node
        self.jvm_extra = class_archive(version) if jvm_extra is None else jvm_extra
        self.security = security
        self.heap = heap
        self.replication = min(brokers, 3)
        if brokers == 1:
            self.nodes = [Node(self.root, 1, "broker,controller", self.libs)]
        else:
            self.nodes = [Node(self.root, 0, "controller", self.libs)] + [
                Node(self.root, i, "broker", self.libs) for i in range(1, brokers + 1)]
        self.listeners = ["PLAINTEXT"]
        if security:
            self.listeners += ["SSL", "MTLS", "SASL_SSL"]
        if proxied:
            self.listeners.append("PROXIED")
        for node in self.nodes:
            if "controller" in node.roles:
                node.ports["CONTROLLER"] = free_port()
            if node.is_broker:
                for listener in self.listeners:
                    node.ports[listener] = free_port()
                # the port PROXIED advertises: its proxy's
                node.proxy_port = free_port() if proxied else None
        self.controllers = [n for n in self.nodes if "controller" in n.roles]
        for node in self.nodes:
            self._write_properties(node, broker_conf or {})
        self._format()
        # bound before the brokers start: they advertise the proxies' ports
        self.proxies = {n.id: KafkaProxy(n.proxy_port, n.ports["PROXIED"])
                        for n in self.brokers if proxied}
        for node in self.nodes:
            node.start(self.heap, self.gc, self.jvm_extra)
        for node in self.nodes:
            node.wait_started()
        self.bootstrap = self.bootstrap_for("PLAINTEXT")

    # ------------------------------------------------------------ set-up

    def _write_properties(self, node, extra):
        voters = ",".join("%d@127.0.0.1:%d" % (c.id, c.ports["CONTROLLER"])
                          for c in self.controllers)
        rf = self.replication
        conf = {
            "process.roles": node.roles,
            "node.id": node.id,
            "controller.quorum.voters": voters,
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map":
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SSL:SSL,MTLS:SSL,SASL_SSL:SASL_SSL,"
                "PROXIED:PLAINTEXT",
            "log.dirs": os.path.join(node.dir, "data"),
            # auto-created topics get 4 partitions, as on the mock cluster
            "num.partitions": 4,
            "default.replication.factor": rf,
            "min.insync.replicas": min(rf, 2),
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": 1,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": min(rf, 2),
            "transaction.state.log.num.partitions": 1,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": min(rf, 2),
            "group.initial.rebalance.delay.ms": 0,
            "broker.session.timeout.ms": 4000,
            "broker.heartbeat.interval.ms": 1000,
            "replica.lag.time.max.ms": 6000,
        }
        listeners = ["CONTROLLER://127.0.0.1:%d" % node.ports["CONTROLLER"]
                     for _ in [1] if "CONTROLLER" in node.ports]
        if node.is_broker:
            listeners += ["%s://127.0.0.1:%d" % (l, node.ports[l]) for l in self.listeners]
            conf["inter.broker.listener.name"] = "PLAINTEXT"
            # TLS listeners advertise the name in the broker's certificate
            conf["advertised.listeners"] = ",".join(
                "%s://%s:%d" % (l, "localhost" if l in ("SSL", "MTLS", "SASL_SSL")
                                else "127.0.0.1",
                                node.proxy_port if l == "PROXIED" else node.ports[l])
                for l in self.listeners)
        conf["listeners"] = ",".join(listeners)
        if self.security and node.is_broker:
            tls = self.security
            conf.update({
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": tls.broker_keystore,
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": tls.ca,
                "listener.name.mtls.ssl.client.auth": "required",
                "sasl.enabled.mechanisms": "SCRAM-SHA-512,PLAIN",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
                    'org.apache.kafka.common.security.scram.ScramLoginModule required '
                    'username="admin" password="%s";' % SASL_USERS["admin"],
                # PLAIN: the same users, checked against this list
                "listener.name.sasl_ssl.plain.sasl.jaas.config":
                    'org.apache.kafka.common.security.plain.PlainLoginModule required '
                    'username="admin" password="%s" %s;' % (
                        SASL_USERS["admin"],
                        " ".join('user_%s="%s"' % kv for kv in SASL_USERS.items())),
                # ACLs are enforced: the PLAINTEXT listener (the fixture's
                # own clients, ANONYMOUS) and admin may do anything
                "authorizer.class.name":
                    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "super.users": SUPER_USERS,
            })
        if self.security and not node.is_broker:
            conf["authorizer.class.name"] = \
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
            conf["super.users"] = SUPER_USERS
        conf.update(extra)
        with open(node.properties, "w") as f:
            for k, v in conf.items():
                f.write("%s=%s\n" % (k, v))

    def _format(self):
        cid = cluster_id()
        args = []
        if self.security:
            for name, password in SASL_USERS.items():
                args += ["--add-scram", "SCRAM-SHA-512=[name=\"%s\",password=\"%s\"]" % (name, password)]
        # formats run in parallel: each is a JVM start
        procs = [subprocess.Popen(
            java_argv("kafka.tools.StorageTool", "format", "-t", cid, "-c", n.properties,
                      *args, libs=self.libs),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for n in self.nodes]
        for p in procs:
            out = p.communicate()[0]
            assert p.returncode == 0, "kafka-storage format failed:\n" + out

    # ------------------------------------------------------------ access

    @property
    def brokers(self):
        return [n for n in self.nodes if n.is_broker]

    def broker(self, node_id):
        return next(n for n in self.brokers if n.id == node_id)

    def bootstrap_for(self, listener):
        if listener == "PROXIED":
            return ",".join("127.0.0.1:%d" % n.proxy_port for n in self.brokers)
        host = "127.0.0.1" if listener == "PLAINTEXT" else "localhost"
        return ",".join("%s:%d" % (host, n.ports[listener]) for n in self.brokers)

    def proxy(self, node_id):
        return self.proxies[node_id]

    def admin(self):
        import warnings
        warnings.simplefilter("ignore", ImportWarning)
        from kafka.admin import KafkaAdminClient
        return KafkaAdminClient(bootstrap_servers=self.bootstrap_for("PLAINTEXT"),
                                api_version_auto_timeout_ms=10000)

    def create_topic(self, name, partitions, config=None, replication=None):
        from kafka.admin import NewTopic
        admin = self.admin()
        try:
            admin.create_topics([NewTopic(name, partitions, replication or self.replication,
                                          topic_configs=config or {})])
        finally:
            admin.close()

    def topics(self):
        admin = self.admin()
        try:
            return set(admin.list_topics())
        finally:
            admin.close()

    def delete_topic(self, name):
        admin = self.admin()
        try:
            admin.delete_topics([name])
        finally:
            admin.close()

    def partitions(self, topic):
        """{partition: (leader node id, in-sync replica ids)} as the cluster
        reports it now."""
        from kafka import KafkaConsumer
        c = KafkaConsumer(bootstrap_servers=self.bootstrap, api_version_auto_timeout_ms=10000)
        try:
            c.topics()  # a metadata request
            meta = c._client.cluster._partitions.get(topic, {})
            return {p: (m.leader, tuple(m.isr)) for p, m in sorted(meta.items())}
        finally:
            c.close()

    def leaders(self, topic):
        """{partition: leader node id}"""
        return {p: leader for p, (leader, _) in self.partitions(topic).items()}

    def read_committed(self, topics, timeout_ms=120000):
        """Every record of each of `topics` as Kafka's own Java consumer
        reads it with isolation.level=read_committed, up to the end offsets
        it finds when it starts (ReadCommitted.java): a list per topic of
        (key, value) strings, each partition in its order."""
        with tempfile.TemporaryFile("w+") as out:
            proc = subprocess.run(
                java_argv(READ_COMMITTED, self.bootstrap, str(timeout_ms), *topics,
                          heap="256m"),
                stdout=out, stderr=subprocess.PIPE, text=True, timeout=timeout_ms / 1000 + 60)
            assert proc.returncode == 0, proc.stderr[-2000:]
            out.seek(0)
            each = {topic: [] for topic in topics}
            for line in out.read().splitlines():
                topic, _, record = line.partition("\t")
                key, _, value = record.partition("|")
                each[topic].append((key, value))
        return [each[topic] for topic in topics]

    def acl(self, *args):
        """kafka-acls against the PLAINTEXT listener (a super user)."""
        return java("org.apache.kafka.tools.AclCommand",
                    "--bootstrap-server", self.bootstrap_for("PLAINTEXT"), *args).stdout

    def log(self, node_id=None):
        nodes = self.nodes if node_id is None else [self.broker(node_id)]
        out = []
        for n in nodes:
            with open(n.log_path) as f:
                out.append(f.read())
        return "\n".join(out)

    # ------------------------------------------------------------ faults

    def kill(self, node_id):
        self.broker(node_id).kill()

    def start(self, node_id):
        node = self.broker(node_id)
        node.start(self.heap, self.gc, self.jvm_extra)
        node.wait_started()

    def brokers_down(self):
        for n in self.brokers:
            n.kill()

    def brokers_up(self):
        for n in self.brokers:
            if not n.running:
                n.start(self.heap, self.gc, self.jvm_extra)
        for n in self.brokers:
            n.wait_started()

    def destroy(self):
        for proxy in self.proxies.values():
            proxy.close()
        for n in self.nodes:
            n.kill()
        shutil.rmtree(self.root, ignore_errors=True)

