"""What only a socket can do, beside the byte stream a connection is served on.

The connection handler reads and writes a `trio.abc.Stream` and asks a Transport for the rest: the
peer's address, whether bytes wait unread, a wait for them that takes none, the two ways to end
(in order, or by halves) and a close that resets. So one handler serves a plain socket
(SocketTransport), a TLS session (tls.transport.TlsTransport) and, in the tests, a memory stream
under MockClock. Invariant: no Transport method reads a byte of the stream, and only the endings
and `send_now` write any.
"""

from __future__ import annotations

import os
import select
import socket
import struct
from typing import Protocol

import trio


class Transport(Protocol):
    """The socket-only side of one connection."""

    def peer(self) -> str:
        """The peer's address as host:port; OSError if the peer is gone already."""

    def pending(self) -> bool:
        """Whether bytes (or the peer's FIN) wait unread: a request that has arrived is served by a
        draining server, not cut."""

    async def wait_readable(self) -> None:
        """Wait until the stream can be read, taking nothing from it."""

    def arm_reset(self) -> None:
        """Make the stream's next close a reset (RST), not a FIN; OSError if it is closed already."""

    async def half_close(self) -> None:
        """FIN on our side only: the peer may still send (over TLS, with no close_notify before it:
        trio sends none without closing). Raises as the stream's send would."""

    async def close(self, close_notify: bool = True) -> None:
        """End the connection in order (over TLS, a close_notify first, unless `close_notify` is
        false), then FIN, then release it; a peer already gone is no reason to fail. FIN before the
        close: a socket closed with bytes unread would reset the connection instead."""

    def send_now(self, data: bytes) -> int:
        """Put what the connection takes of `data` at once on the wire, without waiting: the bytes
        taken, 0 when it would wait or fails (a send through the stream then waits, or says why).
        Only between the stream's own sends. Bytes written here skip the stream: a transport under
        a stream that transforms them (TLS) takes none, or writes them through that layer."""


class SocketTransport:
    """The Transport of a trio.SocketStream."""

    __slots__ = ("_stream", "_socket")

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._socket = stream.socket

    def peer(self) -> str:
        return "%s:%d" % self._socket.getpeername()[:2]

    def pending(self) -> bool:
        """poll, not select: select fails on fds past 1023."""
        poller = select.poll()
        try:
            poller.register(self._socket.fileno(), select.POLLIN)
        except (OSError, ValueError):  # closed meanwhile
            return False
        return bool(poller.poll(0))  # readable, or hung up, or failed: there is something to read

    async def wait_readable(self) -> None:
        await trio.lowlevel.wait_readable(self._socket)

    def arm_reset(self) -> None:
        """SO_LINGER with a zero timeout: closing the socket then resets the connection."""
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    async def half_close(self) -> None:
        await self._stream.send_eof()

    async def close(self, close_notify: bool = True) -> None:
        try:
            await self._stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        await self._stream.aclose()

    def send_now(self, data: bytes) -> int:
        """A write on the non-blocking descriptor (trio's socket has no synchronous send)."""
        try:
            return os.write(self._socket.fileno(), data)
        except OSError:  # would block, reset, closed: the stream's send says which
            return 0

