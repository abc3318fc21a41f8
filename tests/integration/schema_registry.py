"""A stand-in for a Confluent-compatible schema registry, for the tests of
value.format=avro-registry, strict where outboxd could go wrong:

  POST /subjects/{s}/versions      register; the same schema keeps its id
  POST /subjects/{s}               look up: 40401 no subject, 40403 no schema
  GET  /schemas/ids/{id}           what deserializers fetch
  GET  /subjects                   the subject list
  POST /compatibility/subjects/{s}/versions/latest
  PUT  /config/{s}                 a subject's compatibility level

Requests must carry a registry content type and, when `users` is given,
HTTP basic credentials (401 otherwise, as Confluent's server answers).
Schemas are parsed with the Avro library (422, error 42201, when invalid);
registering under a subject checks BACKWARD compatibility with its latest
version, the registry's default (409 when the new schema cannot read data
written with the old one).  `stop()` closes the port (a registry that is
down), `start()` opens it again on the same port, keeping its schemas.

Not Confluent's server, nor Karapace or Apicurio: neither runs here (see
docs/schema-registry.md); this follows Confluent's documented REST API.
"""
import base64
import json
import re
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import avro.schema

import real_kafka

CONTENT_TYPES = ("application/vnd.schemaregistry.v1+json", "application/vnd.schemaregistry+json",
                 "application/json", "application/octet-stream")

PROMOTIONS = {"int": {"long", "float", "double"}, "long": {"float", "double"},
              "float": {"double"}, "string": {"bytes"}, "bytes": {"string"}}


def _type_name(t):
    if isinstance(t, dict):
        return t.get("type") if t.get("type") not in ("record", "enum", "fixed") else t["name"]
    return t


def reads(reader, writer):
    """Whether data written with `writer` (parsed JSON) can be read with
    `reader`, by Avro's schema resolution rules (the parts a record of
    primitives, unions, maps and records needs)."""
    if isinstance(reader, list):
        writers = writer if isinstance(writer, list) else [writer]
        return all(any(reads(r, w) for r in reader) for w in writers)
    if isinstance(writer, list):
        return all(reads(reader, w) for w in writer)
    if isinstance(reader, dict) and reader.get("type") == "record":
        if not (isinstance(writer, dict) and writer.get("type") == "record"):
            return False
        written = {f["name"]: f for f in writer["fields"]}
        for field in reader["fields"]:
            if field["name"] in written:
                if not reads(field["type"], written[field["name"]]["type"]):
                    return False
            elif "default" not in field:
                return False
        return True
    if isinstance(reader, dict) and reader.get("type") == "map":
        return (isinstance(writer, dict) and writer.get("type") == "map"
                and reads(reader["values"], writer["values"]))
    if isinstance(reader, dict) and reader.get("type") == "array":
        return (isinstance(writer, dict) and writer.get("type") == "array"
                and reads(reader["items"], writer["items"]))
    r, w = _type_name(reader), _type_name(writer)
    return r == w or r in PROMOTIONS.get(w, ())


class SchemaRegistry:
    def __init__(self, users=None, tls=None, port=None):
        self.users = users or {}
        self.tls = tls
        self.port = port or real_kafka.free_port()
        self.schemas = []  # id - 1 -> schema text
        self.subjects = {}  # subject -> [schema id, ...] (its versions)
        self.compatibility = {}  # subject -> level
        self.requests = []  # (method, path), every request that came
        self.lock = threading.Lock()
        self.server = None
        self.connections = set()  # open client connections (keep-alive)
        self.start()

    @property
    def url(self):
        return "%s://%s:%d" % ("https" if self.tls else "http",
                               "localhost" if self.tls else "127.0.0.1", self.port)

    def start(self):
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                registry.connections.add(self.connection)

            def do_GET(self):
                registry.handle(self, "GET", None)

            def do_POST(self):
                registry.handle(self, "POST", self.body())

            def do_PUT(self):
                registry.handle(self, "PUT", self.body())

            def body(self):
                return self.rfile.read(int(self.headers.get("Content-Length", "0")))

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.tls.broker_keystore)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        """The registry goes down: its port refuses connections, and the
        kept-alive ones are cut."""
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        for connection in list(self.connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.connections.clear()

    # the API

    def handle(self, request, method, body):
        with self.lock:
            self.requests.append((method, request.path))
            status, answer = self.answer(request, method, body)
        data = json.dumps(answer).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    @staticmethod
    def error(status, code, message):
        return status, {"error_code": code, "message": message}

    def answer(self, request, method, body):
        if self.users:
            auth = request.headers.get("Authorization", "")
            try:
                user, password = base64.b64decode(auth[6:]).decode().split(":", 1)
            except Exception:
                user, password = None, None
            if not auth.startswith("Basic ") or self.users.get(user) != password:
                return self.error(401, 401, "Unauthorized")
        if body is not None and request.headers.get("Content-Type", "").split(";")[0] \
                not in CONTENT_TYPES:
            return self.error(415, 415, "HTTP 415 Unsupported Media Type")
        path = request.path.split("?")[0]
        routes = [
            ("GET", r"/subjects", lambda: (200, sorted(self.subjects))),
            ("GET", r"/schemas/ids/(\d+)", self.schema_by_id),
            ("POST", r"/subjects/([^/]+)/versions", lambda s: self.register(s, body)),
            ("POST", r"/subjects/([^/]+)", lambda s: self.lookup(s, body)),
            ("POST", r"/compatibility/subjects/([^/]+)/versions/latest",
             lambda s: self.check(s, body)),
            ("PUT", r"/config/([^/]+)", lambda s: self.configure(s, body)),
        ]
        for m, pattern, action in routes:
            match = re.fullmatch(pattern, path)
            if m == method and match:
                return action(*[_unquote(g) for g in match.groups()])
        return self.error(404, 404, "HTTP 404 Not Found")

    def parse(self, body):
        """(schema text, its parsed JSON) or an error answer."""
        try:
            request = json.loads(body)
            text = request["schema"]
            if request.get("schemaType", "AVRO") != "AVRO" or request.get("references"):
                return None, self.error(422, 42201, "only plain AVRO schemas here")
            avro.schema.parse(text)
            return (text, json.loads(text)), None
        except Exception as e:
            return None, self.error(422, 42201, "Invalid schema: %s" % e)

    def same(self, a, b):
        return json.loads(a) == json.loads(b)

    def register(self, subject, body):
        parsed, err = self.parse(body)
        if err:
            return err
        text, schema = parsed
        versions = self.subjects.get(subject, [])
        for schema_id in versions:
            if self.same(self.schemas[schema_id - 1], text):
                return 200, {"id": schema_id}
        if versions and self.compatibility.get(subject, "BACKWARD") == "BACKWARD" and \
                not reads(schema, json.loads(self.schemas[versions[-1] - 1])):
            return self.error(409, 409, "Schema being registered is incompatible with an "
                                        "earlier schema for subject \"%s\"" % subject)
        schema_id = next((i + 1 for i, s in enumerate(self.schemas) if self.same(s, text)), None)
        if schema_id is None:
            self.schemas.append(text)
            schema_id = len(self.schemas)
        self.subjects.setdefault(subject, []).append(schema_id)
        return 200, {"id": schema_id}

    def lookup(self, subject, body):
        parsed, err = self.parse(body)
        if err:
            return err
        if subject not in self.subjects:
            return self.error(404, 40401, "Subject '%s' not found." % subject)
        for version, schema_id in enumerate(self.subjects[subject], 1):
            if self.same(self.schemas[schema_id - 1], parsed[0]):
                return 200, {"subject": subject, "id": schema_id, "version": version,
                             "schema": self.schemas[schema_id - 1]}
        return self.error(404, 40403, "Schema not found")

    def schema_by_id(self, schema_id):
        schema_id = int(schema_id)
        if not 0 < schema_id <= len(self.schemas):
            return self.error(404, 40403, "Schema %d not found" % schema_id)
        return 200, {"schema": self.schemas[schema_id - 1]}

    def check(self, subject, body):
        parsed, err = self.parse(body)
        if err:
            return err
        if subject not in self.subjects:
            return self.error(404, 40401, "Subject '%s' not found." % subject)
        latest = json.loads(self.schemas[self.subjects[subject][-1] - 1])
        return 200, {"is_compatible": reads(parsed[1], latest)}

    def configure(self, subject, body):
        level = json.loads(body)["compatibility"]
        self.compatibility[subject] = level
        return 200, {"compatibility": level}

    # for the tests

    def put(self, subject, schema):
        """Registers `schema` (a dict) under subject as a client would."""
        with self.lock:
            status, answer = self.register(subject, json.dumps({"schema": json.dumps(schema)}))
        assert status == 200, answer
        return answer["id"]


def _unquote(text):
    from urllib.parse import unquote
    return unquote(text)
