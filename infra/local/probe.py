#!/usr/bin/env python3
"""Asks a local server a real question and exits 0 only if it answered.

    probe.py kafka HOST PORT [N]  a Metadata request; needs at least N brokers (1)
    probe.py cassandra HOST PORT [N]
                                  STARTUP, then SELECT release_version FROM
                                  system.local; with N, the node must also
                                  know N - 1 peers (a cluster of N)
    probe.py kafka-secure HOST PORT      the same over TLS, after SASL PLAIN
    probe.py cassandra-secure HOST PORT [CQL]
                                  the same over TLS, after a password login;
                                  runs CQL instead of the SELECT when given

The secured kinds take the CA file, user and password from PROBE_CA,
PROBE_USER and PROBE_PASSWORD. Speaks the wire protocols directly so `up`
needs nothing but Python.
"""
import os
import socket
import ssl
import struct
import sys


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


CLIENT = b"parley-probe"


def connect(host, port, secure):
    s = socket.create_connection((host, port), timeout=5)
    if not secure:
        return s
    ctx = ssl.create_default_context(cafile=os.environ["PROBE_CA"])
    return ctx.wrap_socket(s, server_hostname=host)


def kafka_call(s, api_key, version, correlation, body):
    """One request with a v1 header; the response body after its correlation id."""
    req = struct.pack(">hhih", api_key, version, correlation, len(CLIENT)) + CLIENT + body
    s.sendall(struct.pack(">i", len(req)) + req)
    size = struct.unpack(">i", recv_exact(s, 4))[0]
    resp = recv_exact(s, size)
    if struct.unpack(">i", resp[:4])[0] != correlation:
        raise RuntimeError("answer to another request")
    return resp[4:]


def kafka_sasl_plain(s):
    mechanism = b"PLAIN"
    # SaslHandshake v1, then SaslAuthenticate v0 with the PLAIN token.
    resp = kafka_call(s, 17, 1, 1, struct.pack(">h", len(mechanism)) + mechanism)
    if struct.unpack(">h", resp[:2])[0] != 0:
        raise RuntimeError("the broker does not offer SASL PLAIN")
    token = b"\0" + os.environ["PROBE_USER"].encode() + b"\0" + os.environ["PROBE_PASSWORD"].encode()
    resp = kafka_call(s, 36, 0, 2, struct.pack(">i", len(token)) + token)
    if struct.unpack(">h", resp[:2])[0] != 0:
        raise RuntimeError("SASL authentication failed")


def kafka(host, port, secure=False, want=1):
    with connect(host, port, secure) as s:
        if secure:
            kafka_sasl_plain(s)
        # Metadata v4: topics = null (all topics), allow_auto_topic_creation = false.
        resp = kafka_call(s, 3, 4, 7, struct.pack(">ib", -1, 0))
    _throttle, brokers = struct.unpack(">ii", resp[:8])
    if brokers < want:
        raise RuntimeError(f"metadata answer with {brokers} broker(s), {want} wanted")
    return f"{brokers} broker(s)"


def cql_frame(opcode, body, stream=1):
    return struct.pack(">BBhBi", 0x04, 0, stream, opcode, len(body)) + body


def cql_read(s):
    _v, _f, _stream, opcode, length = struct.unpack(">BBhBi", recv_exact(s, 9))
    return opcode, recv_exact(s, length)


def cql_string(text):
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def cassandra(host, port, secure=False, statement=None):
    startup = struct.pack(">h", 1) + cql_string("CQL_VERSION") + cql_string("3.0.0")
    query = (statement or "SELECT release_version FROM system.local").encode()
    # QUERY: long string, consistency ONE, no flags.
    q = struct.pack(">i", len(query)) + query + struct.pack(">hB", 0x0001, 0)
    with connect(host, port, secure) as s:
        s.sendall(cql_frame(0x01, startup))
        opcode, body = cql_read(s)
        if opcode == 0x03 and secure:
            # AUTHENTICATE: answer with a PLAIN token.
            token = b"\0" + os.environ["PROBE_USER"].encode() + b"\0" + os.environ["PROBE_PASSWORD"].encode()
            s.sendall(cql_frame(0x0F, struct.pack(">i", len(token)) + token, stream=3))
            opcode, body = cql_read(s)
            if opcode != 0x10:
                raise RuntimeError(f"login answered opcode {opcode}: {body[6:].decode(errors='replace')}")
        elif opcode != 0x02:
            raise RuntimeError(f"STARTUP answered opcode {opcode}: {body[6:].decode(errors='replace')}")
        s.sendall(cql_frame(0x07, q, stream=2))
        opcode, body = cql_read(s)
    if opcode != 0x08:
        raise RuntimeError(f"query answered opcode {opcode}: {body[6:].decode(errors='replace')}")
    if statement:
        return "done"
    return f"release {first_text_cell(body)}"


def cassandra_cluster(host, port, nodes):
    release = cassandra(host, port)
    peers = rows(cassandra_rows(host, port, "SELECT peer FROM system.peers_v2"))[0]
    if peers < nodes - 1:
        raise RuntimeError(f"{peers} peer(s) known, {nodes - 1} wanted")
    return f"{release}, {peers} peer(s)"


def cassandra_rows(host, port, statement):
    """The RESULT body of one statement run at consistency ONE."""
    startup = struct.pack(">h", 1) + cql_string("CQL_VERSION") + cql_string("3.0.0")
    query = statement.encode()
    q = struct.pack(">i", len(query)) + query + struct.pack(">hB", 0x0001, 0)
    with connect(host, port, False) as s:
        s.sendall(cql_frame(0x01, startup))
        opcode, body = cql_read(s)
        if opcode != 0x02:
            raise RuntimeError(f"STARTUP answered opcode {opcode}")
        s.sendall(cql_frame(0x07, q, stream=2))
        opcode, body = cql_read(s)
    if opcode != 0x08:
        raise RuntimeError(f"query answered opcode {opcode}: {body[6:].decode(errors='replace')}")
    return body


def first_text_cell(body):
    """The first cell of a RESULT Rows body."""
    count, pos = rows(body)
    if count < 1:
        raise RuntimeError("system.local has no row")
    n = struct.unpack_from(">i", body, pos)[0]
    return body[pos + 4:pos + 4 + n].decode(errors="replace")


def rows(body):
    """The row count of a RESULT Rows body of simple-typed columns, and where
    its first row starts (protocol v4, section 4.2.5.2)."""
    pos = 4  # kind

    def take(fmt):
        nonlocal pos
        value = struct.unpack_from(fmt, body, pos)
        pos += struct.calcsize(fmt)
        return value[0]

    def skip_string():
        nonlocal pos
        n = take(">h")
        pos += n

    flags, columns = take(">i"), take(">i")
    if flags & 0x0002:
        pos += take(">i")
    if flags & 0x0001:
        skip_string()
        skip_string()
    for _ in range(columns):
        if not flags & 0x0001:
            skip_string()
            skip_string()
        skip_string()
        take(">h")  # a simple type: no parameters
    count = take(">i")
    return count, pos


PROBES = {
    "kafka": lambda host, port, want="1": kafka(host, port, want=int(want)),
    "cassandra": lambda host, port, nodes=None: (
        cassandra_cluster(host, port, int(nodes)) if nodes else cassandra(host, port)
    ),
    "kafka-secure": lambda host, port: kafka(host, port, secure=True),
    "cassandra-secure": lambda host, port, statement=None: cassandra(host, port, True, statement),
}


def main():
    kind = sys.argv[1] if len(sys.argv) > 1 else None
    extra = 0 if kind == "kafka-secure" else 1
    if kind not in PROBES or not 4 <= len(sys.argv) <= 4 + extra:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        answer = PROBES[kind](sys.argv[2], int(sys.argv[3]), *sys.argv[4:])
    except Exception as e:  # noqa: BLE001 - any failure means "not ready"
        print(f"{sys.argv[1]} on {sys.argv[2]}:{sys.argv[3]} not answering: {e}", file=sys.stderr)
        return 1
    print(f"{sys.argv[1]} on {sys.argv[2]}:{sys.argv[3]} answered: {answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
