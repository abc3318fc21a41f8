"""A TCP proxy in front of one Kafka broker listener that reads the Kafka
protocol's frames, so that a test can decide the outcome of one transaction
commit as the client sees it: the next EndTxn(commit) is answered with an
error, after the broker committed it (a commit in doubt: reported failed,
gone through) or without the broker ever seeing it (it failed).  Everything
else passes through unchanged.

The broker advertises the proxy's port on its own listener
(real_kafka.RealKafka(proxied=True)), so every connection a client makes
after the bootstrap goes through the proxy too.  Threads: one accepting,
two per connection (one each way); frames to the client are written under
the connection's lock."""
import socket
import struct
import threading

END_TXN = 26  # the EndTxn request's API key
UNKNOWN_SERVER_ERROR = -1  # librdkafka: a permanent failure, to be aborted


def read_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def read_frame(sock):
    """One size-prefixed Kafka frame, the size included."""
    size = read_exactly(sock, 4)
    return size + read_exactly(sock, struct.unpack(">i", size)[0])


class KafkaProxy:
    def __init__(self, listen_port, broker_port):
        self.broker_port = broker_port
        self.server = socket.create_server(("127.0.0.1", listen_port))
        self.lock = threading.Lock()
        self.armed = None  # "forward" or "drop" while a commit is to fail
        self.tampered = threading.Event()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def fail_next_commit(self, forward):
        """The next EndTxn(commit) a client sends fails with
        UNKNOWN_SERVER_ERROR; forward: the broker commits it first."""
        with self.lock:
            self.tampered.clear()
            self.armed = "forward" if forward else "drop"

    def close(self):
        self.closed = True
        self.server.close()

    # ------------------------------------------------------------ inside

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                broker = socket.create_connection(("127.0.0.1", self.broker_port))
            except OSError:
                client.close()  # the broker is down: so is its proxy
                continue
            conn = {"client": client, "broker": broker, "lock": threading.Lock(),
                    "failing": set()}
            threading.Thread(target=self._to_broker, args=(conn,), daemon=True).start()
            threading.Thread(target=self._to_client, args=(conn,), daemon=True).start()

    def _take_commit(self, frame):
        """What to do with this request: None (pass it), "forward" or
        "drop" (the armed commit failure, now disarmed)."""
        api_key, api_version = struct.unpack(">hh", frame[4:8])
        # versions 0-2 are not flexible: "committed" is the last byte
        if api_key != END_TXN or api_version > 2 or frame[-1] != 1:
            return None
        with self.lock:
            action, self.armed = self.armed, None
        return action

    @staticmethod
    def _error_response(correlation_id):
        """EndTxn response v0-v2: correlation id, throttle time, error."""
        body = struct.pack(">iih", correlation_id, 0, UNKNOWN_SERVER_ERROR)
        return struct.pack(">i", len(body)) + body

    def _to_broker(self, conn):
        try:
            while True:
                frame = read_frame(conn["client"])
                action = self._take_commit(frame)
                correlation_id = struct.unpack(">i", frame[8:12])[0]
                if action == "drop":
                    with conn["lock"]:
                        conn["client"].sendall(self._error_response(correlation_id))
                    self.tampered.set()
                    continue
                if action == "forward":
                    conn["failing"].add(correlation_id)
                conn["broker"].sendall(frame)
        except (EOFError, OSError):
            self._close(conn)

    def _to_client(self, conn):
        try:
            while True:
                frame = read_frame(conn["broker"])
                correlation_id = struct.unpack(">i", frame[4:8])[0]
                if correlation_id in conn["failing"]:
                    conn["failing"].discard(correlation_id)
                    frame = self._error_response(correlation_id)
                    self.tampered.set()
                with conn["lock"]:
                    conn["client"].sendall(frame)
        except (EOFError, OSError):
            self._close(conn)

    @staticmethod
    def _close(conn):
        for sock in (conn["client"], conn["broker"]):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
