#!/usr/bin/env python3
"""Asks a local server a real question and exits 0 only if it answered.

    probe.py kafka HOST PORT      a Metadata request; needs at least one broker
    probe.py cassandra HOST PORT  STARTUP, then SELECT release_version FROM system.local

Speaks the wire protocols directly so `up` needs nothing but Python.
"""
import socket
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


def kafka(host, port):
    client = b"parley-probe"
    # Metadata v4: header (api_key 3, version 4, correlation id, client id),
    # then topics = null (all topics), allow_auto_topic_creation = false.
    body = struct.pack(">hhih", 3, 4, 7, len(client)) + client + struct.pack(">ib", -1, 0)
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", recv_exact(s, 4))[0]
        resp = recv_exact(s, size)
    correlation, _throttle, brokers = struct.unpack(">iii", resp[:12])
    if correlation != 7 or brokers < 1:
        raise RuntimeError(f"metadata answer without brokers ({brokers})")
    return f"{brokers} broker(s)"


def cql_frame(opcode, body, stream=1):
    return struct.pack(">BBhBi", 0x04, 0, stream, opcode, len(body)) + body


def cql_read(s):
    _v, _f, _stream, opcode, length = struct.unpack(">BBhBi", recv_exact(s, 9))
    return opcode, recv_exact(s, length)


def cql_string(text):
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def cassandra(host, port):
    startup = struct.pack(">h", 1) + cql_string("CQL_VERSION") + cql_string("3.0.0")
    query = "SELECT release_version FROM system.local".encode()
    # QUERY: long string, consistency ONE, no flags.
    q = struct.pack(">i", len(query)) + query + struct.pack(">hB", 0x0001, 0)
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(cql_frame(0x01, startup))
        opcode, body = cql_read(s)
        if opcode != 0x02:
            raise RuntimeError(f"STARTUP answered opcode {opcode}: {body[6:].decode(errors='replace')}")
        s.sendall(cql_frame(0x07, q, stream=2))
        opcode, body = cql_read(s)
    if opcode != 0x08:
        raise RuntimeError(f"query answered opcode {opcode}: {body[6:].decode(errors='replace')}")
    return f"release {first_text_cell(body)}"


def first_text_cell(body):
    """The first cell of a RESULT Rows body (protocol v4, section 4.2.5.2)."""
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
    if take(">i") < 1:
        raise RuntimeError("system.local has no row")
    n = take(">i")
    return body[pos:pos + n].decode(errors="replace")


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("kafka", "cassandra"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        answer = {"kafka": kafka, "cassandra": cassandra}[sys.argv[1]](sys.argv[2], int(sys.argv[3]))
    except Exception as e:  # noqa: BLE001 - any failure means "not ready"
        print(f"{sys.argv[1]} on {sys.argv[2]}:{sys.argv[3]} not answering: {e}", file=sys.stderr)
        return 1
    print(f"{sys.argv[1]} on {sys.argv[2]}:{sys.argv[3]} answered: {answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
