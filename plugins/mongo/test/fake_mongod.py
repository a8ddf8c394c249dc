#!/usr/bin/env python3
"""A stand-in for a MongoDB server, for the plugin's tests on machines that have none.

It speaks the wire protocol (OP_QUERY handshakes, OP_MSG commands) for the handful of commands
the plugin and its tests send through the MongoDB C driver: hello, listCollections, aggregate
($match/$skip/$limit and the $group that countDocuments adds), find (filter, sort by _id, skip,
limit, inclusion projection), insert, drop, and acknowledges the rest. Collections live in
memory. It checks how the plugin drives the C driver and what travels on the wire, not
MongoDB's own behaviour: the live tests against a real server (PYMAR_TEST_MONGODB_URI) do that.

Usage: fake_mongod.py   prints "listening on 127.0.0.1:PORT" on stdout, serves until killed.
"""
import socket
import socketserver
import struct
import sys
import threading
import time

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013
DOUBLE, STRING, DOCUMENT, ARRAY, BINARY, OBJECT_ID, BOOL, DATE, NULL, INT32, TIMESTAMP, INT64 = (
    0x01, 0x02, 0x03, 0x04, 0x05, 0x07, 0x08, 0x09, 0x0A, 0x10, 0x11, 0x12)

# A document is a list of (key, (type, value)) pairs, so that types survive a round trip.


def decode(data, i=0):
    size = struct.unpack_from("<i", data, i)[0]
    end, j, out = i + size, i + 4, []
    while data[j] != 0:
        kind = data[j]
        key_end = data.index(b"\0", j + 1)
        key = data[j + 1:key_end].decode()
        j = key_end + 1
        if kind == DOUBLE:
            value = struct.unpack_from("<d", data, j)[0]
            j += 8
        elif kind == STRING:
            n = struct.unpack_from("<i", data, j)[0]
            value = data[j + 4:j + 4 + n - 1].decode()
            j += 4 + n
        elif kind in (DOCUMENT, ARRAY):
            value, j = decode(data, j)
        elif kind == BINARY:
            n = struct.unpack_from("<i", data, j)[0]
            value = (data[j + 4], bytes(data[j + 5:j + 5 + n]))
            j += 5 + n
        elif kind == OBJECT_ID:
            value = bytes(data[j:j + 12])
            j += 12
        elif kind == BOOL:
            value = data[j] == 1
            j += 1
        elif kind in (DATE, INT64):
            value = struct.unpack_from("<q", data, j)[0]
            j += 8
        elif kind == TIMESTAMP:
            value = struct.unpack_from("<Q", data, j)[0]
            j += 8
        elif kind == NULL:
            value = None
        elif kind == INT32:
            value = struct.unpack_from("<i", data, j)[0]
            j += 4
        else:
            raise ValueError(f"BSON type {kind:#x} is not supported by the fake server")
        out.append((key, (kind, value)))
    return out, end


def encode(document):
    body = b""
    for key, (kind, value) in document:
        body += bytes([kind]) + key.encode() + b"\0"
        if kind == DOUBLE:
            body += struct.pack("<d", value)
        elif kind == STRING:
            raw = value.encode()
            body += struct.pack("<i", len(raw) + 1) + raw + b"\0"
        elif kind in (DOCUMENT, ARRAY):
            body += encode(value)
        elif kind == BINARY:
            body += struct.pack("<i", len(value[1])) + bytes([value[0]]) + value[1]
        elif kind == OBJECT_ID:
            body += value
        elif kind == BOOL:
            body += b"\1" if value else b"\0"
        elif kind in (DATE, INT64):
            body += struct.pack("<q", value)
        elif kind == TIMESTAMP:
            body += struct.pack("<Q", value)
        elif kind == INT32:
            body += struct.pack("<i", value)
    return struct.pack("<i", len(body) + 5) + body + b"\0"


def get(document, key, default=None):
    for k, value in document:
        if k == key:
            return value
    return default


def array(values):
    return (ARRAY, [(str(i), v) for i, v in enumerate(values)])


def ok(*pairs):
    return list(pairs) + [("ok", (DOUBLE, 1.0))]


def failure(code, message):
    return [("ok", (DOUBLE, 0.0)), ("errmsg", (STRING, message)), ("code", (INT32, code))]


NUMBERS = (DOUBLE, INT32, INT64)


def compare(a, b):
    """-1, 0, 1 for values of comparable kinds; None otherwise."""
    (ka, va), (kb, vb) = a, b
    if ka in NUMBERS and kb in NUMBERS or ka == kb and ka in (STRING, OBJECT_ID, DATE, BOOL):
        return (va > vb) - (va < vb)
    return None


def matches(document, query):
    for key, condition in query:
        value = get(document, key)
        operators = condition[0] == DOCUMENT and condition[1] and condition[1][0][0].startswith("$")
        for op, operand in (condition[1] if operators else [("$eq", condition)]):
            c = compare(value, operand) if value is not None else None
            wanted = {"$eq": (0,), "$gt": (1,), "$gte": (0, 1), "$lt": (-1,), "$lte": (-1, 0)}.get(op)
            if wanted is None:
                raise ValueError(f"operator {op} is not supported by the fake server")
            if c not in wanted:
                return False
    return True


def project(document, projection):
    if not projection:
        return document
    keep = {k for k, (kind, v) in projection if v}
    return [(k, v) for k, v in document if k == "_id" or k in keep]


class Store:
    def __init__(self):
        self.lock = threading.Lock()
        self.collections = {}  # (database, collection) -> list of documents

    def find(self, db, name, query):
        with self.lock:
            return [d for d in self.collections.get((db, name), []) if matches(d, query)]


STORE = Store()


def hello():
    return ok(("helloOk", (BOOL, True)), ("ismaster", (BOOL, True)),
              ("isWritablePrimary", (BOOL, True)), ("maxBsonObjectSize", (INT32, 16777216)),
              ("maxMessageSizeBytes", (INT32, 48000000)), ("maxWriteBatchSize", (INT32, 100000)),
              ("localTime", (DATE, int(time.time() * 1000))), ("connectionId", (INT32, 1)),
              ("minWireVersion", (INT32, 0)), ("maxWireVersion", (INT32, 13)),
              ("readOnly", (BOOL, False)))


def cursor(db, name, batch):
    return ok(("cursor", (DOCUMENT, [("firstBatch", array([(DOCUMENT, d) for d in batch])),
                                     ("id", (INT64, 0)), ("ns", (STRING, f"{db}.{name}"))])))


def run_command(command, sequences):
    name = command[0][0]
    db = get(command, "$db", (STRING, "admin"))[1]
    target = command[0][1][1]
    if name.lower() in ("hello", "ismaster"):
        return hello()
    if name == "listCollections":
        wanted = get(get(command, "filter", (DOCUMENT, []))[1], "name")
        with STORE.lock:
            names = sorted(c for (d, c) in STORE.collections if d == db)
        if wanted is not None:
            names = [c for c in names if c == wanted[1]]
        return cursor(db, "$cmd.listCollections",
                      [[("name", (STRING, c)), ("type", (STRING, "collection"))] for c in names])
    if name == "aggregate":
        documents = STORE.find(db, target, [])
        groups = None
        for _, (_, stage) in get(command, "pipeline")[1]:
            op, (_, argument) = stage[0]
            if op == "$match":
                documents = [d for d in documents if matches(d, argument)]
            elif op == "$skip":
                documents = documents[argument:]
            elif op == "$limit":
                documents = documents[:argument]
            elif op == "$group":  # countDocuments' {_id: 1, n: {$sum: 1}}
                groups = [[("_id", (INT32, 1)), ("n", (INT32, len(documents)))]] if documents else []
            else:
                return failure(2, f"stage {op} is not supported by the fake server")
        return cursor(db, target, groups if groups is not None else documents)
    if name == "find":
        documents = STORE.find(db, target, get(command, "filter", (DOCUMENT, []))[1])
        sort = get(command, "sort", (DOCUMENT, []))[1]
        if sort:
            if [k for k, _ in sort] != ["_id"]:
                return failure(2, "the fake server sorts by _id only")
            documents.sort(key=lambda d: get(d, "_id")[1], reverse=sort[0][1][1] < 0)
        skip = get(command, "skip", (INT64, 0))[1]
        limit = get(command, "limit", (INT64, 0))[1]
        documents = documents[skip:skip + limit if limit else None]
        projection = get(command, "projection", (DOCUMENT, []))[1]
        return cursor(db, target, [project(d, projection) for d in documents])
    if name == "insert":
        documents = [d for _, (_, d) in get(command, "documents", (ARRAY, []))[1]]
        documents += sequences.get("documents", [])
        with STORE.lock:
            STORE.collections.setdefault((db, target), []).extend(documents)
        return ok(("n", (INT32, len(documents))))
    if name == "drop":
        with STORE.lock:
            if STORE.collections.pop((db, target), None) is None:
                return failure(26, "ns not found")
        return ok()
    return ok()  # ping, endSessions, killCursors, ...


class Connection(socketserver.BaseRequestHandler):
    def read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.request.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def handle(self):
        try:
            while True:
                length, request_id, _, opcode = struct.unpack("<iiii", self.read(16))
                body = self.read(length - 16)
                if opcode == OP_QUERY:  # the legacy handshake: {isMaster: 1, ...} on admin.$cmd
                    name_end = body.index(b"\0", 4)
                    query, _ = decode(body, name_end + 1 + 8)
                    if query and query[0][0] == "$query":
                        query = query[0][1][1]
                    reply = struct.pack("<iqii", 0, 0, 0, 1) + encode(run_command(query, {}))
                    self.send(request_id, OP_REPLY, reply)
                elif opcode == OP_MSG:
                    command, sequences, i = None, {}, 4
                    while i < len(body):
                        kind = body[i]
                        if kind == 0:
                            command, i = decode(body, i + 1)
                        else:
                            size = struct.unpack_from("<i", body, i + 1)[0]
                            end = i + 1 + size
                            name_end = body.index(b"\0", i + 5)
                            identifier, j, docs = body[i + 5:name_end].decode(), name_end + 1, []
                            while j < end:
                                doc, j = decode(body, j)
                                docs.append(doc)
                            sequences[identifier] = docs
                            i = end
                    try:
                        reply = run_command(command, sequences)
                    except Exception as e:  # a request the fake does not know: say so, loudly
                        print(f"fake_mongod: cannot serve {command}: {e}", file=sys.stderr)
                        reply = failure(2, f"fake server: {e}")
                    self.send(request_id, OP_MSG, struct.pack("<IB", 0, 0) + encode(reply))
                else:
                    print(f"fake_mongod: opcode {opcode} is not supported", file=sys.stderr)
                    return
        except (EOFError, ConnectionError):
            return

    def send(self, request_id, opcode, body):
        self.request.sendall(struct.pack("<iiii", 16 + len(body), 0, request_id, opcode) + body)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    with Server(("127.0.0.1", 0), Connection) as server:
        server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
        server.serve_forever()
