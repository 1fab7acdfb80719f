"""The stream under a connection's SSLStream: the raw socket, read ahead into a buffer that the
server can see, handed on one TLS record at a time.

Why: trio's SSLStream reads from its transport stream itself, so a ClientHello read before the
handshake (to choose a scenario by SNI) must be handed on to it, and bytes it has read but not yet
decrypted sit where no public API shows them (a second record waits in its memory BIO while
SSLObject.pending() is 0 and the socket is not readable). Handing on one record per receive leaves
nothing in the BIO once a record is decrypted: whatever has arrived and is not decrypted is in
`buffered`. Invariant: every byte read from the socket is handed on once, in order.
"""

from __future__ import annotations

import contextlib

import trio

from chaos_upstream.server.transport import SocketTransport
from chaos_upstream.tls.handshake import ClientHello, client_hello, next_record_end

RECEIVE_SIZE = 65536
"""Bytes per socket read: a full socket buffer's worth, as the plain server reads."""


class RecordStream(trio.abc.HalfCloseableStream):
    """A trio.SocketStream whose reads are buffered and handed on a TLS record at a time."""

    def __init__(self, raw: trio.SocketStream) -> None:
        self.raw = raw
        self._buffer = bytearray()
        self.resetting = False
        """Set by a reset: nothing more is sent (the SSLStream's close_notify fails, as trio lets
        it), and the close is the RST alone, no FIN before it."""
        self.closed = False
        """Closed under the SSLStream (a FIN with no close_notify): nothing more is sent either."""

    @property
    def buffered(self) -> int:
        """Bytes read from the socket and not handed on yet."""
        return len(self._buffer)

    async def client_hello(self) -> ClientHello | None:
        """Read until the buffer holds a whole ClientHello (handed on later all the same); None if
        the peer closes first. NotClientHello when it sends something else; a reset (OSError via
        trio.BrokenResourceError) as trio raises it."""
        while (hello := client_hello(self._buffer)) is None:
            if not await self._fill():
                return None
        return hello

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if not self._buffer and not await self._fill():
            return b""
        size = next_record_end(self._buffer)
        if max_bytes is not None:
            size = min(size, max_bytes)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def _fill(self) -> bool:
        """Read what the socket has into the buffer; False at the peer's FIN."""
        data = await self.raw.receive_some(RECEIVE_SIZE)
        self._buffer += data
        return bool(data)

    def arm_reset(self) -> None:
        """Make the close a reset (RST, no FIN before it) and refuse every send from now on."""
        SocketTransport(self.raw).arm_reset()
        self.resetting = True

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.resetting or self.closed:
            raise trio.BrokenResourceError("the connection is reset or closed")
        await self.raw.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.raw.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.raw.send_eof()

    async def aclose(self) -> None:
        """FIN, then close (a socket closed with bytes unread resets instead); a reset's RST alone."""
        if not self.resetting and not self.closed:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self.raw.send_eof()
        self.closed = True
        await self.raw.aclose()
