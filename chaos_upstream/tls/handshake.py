"""The TLS record layer's bytes before a handshake: a whole ClientHello found in what a client
sent, its server name (SNI), where the next record ends, and the fatal alert a server sends instead
of a ServerHello. Pure: bytes in, values out (RFC 8446 §5.1, §4.1.2, §6; RFC 6066 §3).

Invariants: `client_hello` never reads past the records that carry the ClientHello; it answers None
while more bytes are needed, whatever way they are cut, and raises NotClientHello as soon as the
bytes cannot begin one.
"""

from __future__ import annotations

from dataclasses import dataclass

from chaos_upstream.errors import NotClientHello

RECORD_HEADER = 5
"""A record's header: content type (1), legacy version (2), length (2)."""

HANDSHAKE, ALERT = 22, 21
"""Record content types (RFC 8446 §5.1)."""

CLIENT_HELLO = 1
"""Handshake message type of a ClientHello (RFC 8446 §4)."""

SERVER_NAME = 0
"""Extension type of server_name, and its name type host_name (RFC 6066 §3)."""

MAX_RECORD = 2**14
"""The longest record a client may send before encryption (RFC 8446 §5.1): a longer one is refused
at its header, before its bytes are waited for."""

MAX_HELLO = 65536
"""The largest ClientHello accepted: a hybrid post-quantum key share takes a ClientHello past one
record (~1.8 KB with X25519MLKEM768), none comes near 64 KiB; past it the client is no TLS client."""

HANDSHAKE_FAILURE_ALERT = bytes([ALERT, 3, 3, 0, 2, 2, 40])
"""An alert record, legacy version TLS 1.2 (0x0303, as TLS 1.3 servers write it), length 2: level
fatal (2), description handshake_failure (40): what a server sends when it can agree on nothing."""


@dataclass(frozen=True, slots=True)
class ClientHello:
    """A whole ClientHello: the server name it asked for, the bytes of the records it took."""

    sni: str | None
    """The host_name of the server_name extension, lower-cased; None without one."""
    size: int


def next_record_end(data: bytes | bytearray) -> int:
    """How many bytes of `data` reach the end of its first record, or all of it when that record
    is not whole yet (or its header is not)."""
    if len(data) < RECORD_HEADER:
        return len(data)
    return min(len(data), RECORD_HEADER + int.from_bytes(data[3:5], "big"))


def client_hello(data: bytes | bytearray) -> ClientHello | None:
    """The ClientHello that `data` begins with, once the records carrying it are whole; None while
    more bytes are needed. NotClientHello when the bytes cannot begin one."""
    message, offset = bytearray(), 0
    while True:
        if len(data) - offset < RECORD_HEADER:
            return _not_yet(data, offset)
        kind, length = data[offset], int.from_bytes(data[offset + 3:offset + 5], "big")
        if kind != HANDSHAKE or data[offset + 1] != 3 or not 0 < length <= MAX_RECORD:
            raise NotClientHello(f"a record of type {kind}, version {data[offset + 1]}.{data[offset + 2]}, length {length}")
        if len(data) - offset - RECORD_HEADER < length:
            return None
        message += data[offset + RECORD_HEADER:offset + RECORD_HEADER + length]
        offset += RECORD_HEADER + length
        if len(message) >= 4:
            if message[0] != CLIENT_HELLO:
                raise NotClientHello(f"a handshake message of type {message[0]} first")
            needed = 4 + int.from_bytes(message[1:4], "big")
            if needed > MAX_HELLO:
                raise NotClientHello(f"a ClientHello of {needed} bytes")
            if len(message) >= needed:
                return ClientHello(sni=_server_name(bytes(message[4:needed])), size=offset)


def _not_yet(data: bytes | bytearray, offset: int) -> None:
    """None (more is needed), after checking the part of a header there is."""
    if offset < len(data) and data[offset] != HANDSHAKE:
        raise NotClientHello(f"a record of type {data[offset]}")
    return None


def _server_name(body: bytes) -> str | None:
    """The host_name in a ClientHello's body, None without one (RFC 8446 §4.1.2 lays the body out)."""
    try:
        at = 2 + 32  # legacy_version, random
        at += 1 + body[at]  # legacy_session_id
        at += 2 + int.from_bytes(body[at:at + 2], "big")  # cipher_suites
        at += 1 + body[at]  # legacy_compression_methods
        if at == len(body):
            return None  # no extensions at all (an SSL 3.0 style hello)
        end = at + 2 + int.from_bytes(body[at:at + 2], "big")
        at += 2
        while at + 4 <= end:
            kind, length = int.from_bytes(body[at:at + 2], "big"), int.from_bytes(body[at + 2:at + 4], "big")
            if kind == SERVER_NAME:
                return _host_name(body[at + 4:at + 4 + length])
            at += 4 + length
    except IndexError:
        raise NotClientHello("a ClientHello cut short inside") from None
    return None


def _host_name(extension: bytes) -> str | None:
    """The first host_name of a server_name extension's list (RFC 6066 §3: at most one of a type)."""
    at, end = 2, 2 + int.from_bytes(extension[:2], "big")
    while at + 3 <= end:
        kind, length = extension[at], int.from_bytes(extension[at + 1:at + 3], "big")
        if kind == SERVER_NAME:
            return extension[at + 3:at + 3 + length].decode("ascii", "replace").lower()
        at += 3 + length
    return None
