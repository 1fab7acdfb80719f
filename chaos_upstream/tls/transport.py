"""The Transport of a connection served over trio's SSLStream (see server/transport.py), with the
two endings only TLS has: a close with close_notify, and one without.

Invariants: `pending` and `wait_readable` count bytes wherever they wait: decrypted in the SSL
object (SSLObject.pending()), arrived and not yet decrypted (the RecordStream's buffer: trio's
memory BIO holds none once a record is decrypted, see recordstream.py), or in the socket; no method
reads or writes a byte of the stream; `send_now` takes nothing (bytes must go through TLS).
"""

from __future__ import annotations

import trio

from chaos_upstream.server.transport import SocketTransport
from chaos_upstream.tls.recordstream import RecordStream


class TlsTransport:
    """The Transport of an SSLStream over a RecordStream."""

    __slots__ = ("_records", "_tls", "_socket")

    def __init__(self, records: RecordStream, tls: trio.SSLStream[RecordStream]) -> None:
        self._records = records
        self._tls = tls
        self._socket = SocketTransport(records.raw)

    def peer(self) -> str:
        return self._socket.peer()

    def pending(self) -> bool:
        return self._buffered() or self._socket.pending()

    async def wait_readable(self) -> None:
        if self._buffered():
            await trio.lowlevel.checkpoint()
        else:
            await self._socket.wait_readable()

    def arm_reset(self) -> None:
        """SO_LINGER zero on the raw socket: closing it resets the connection, no close_notify."""
        self._records.arm_reset()

    async def half_close(self) -> None:
        """A TCP FIN on the raw socket, no close_notify: trio's SSLStream sends none without closing."""
        await self._records.raw.send_eof()

    async def close(self, close_notify: bool = True) -> None:
        """close_notify, then FIN (the RecordStream's close), then release; without close_notify,
        the FIN and the release alone (the SSLStream's own close later sends nothing)."""
        if close_notify:
            await self._tls.aclose()
        else:
            await self._records.aclose()

    def send_now(self, data: bytes) -> int:
        """Nothing: bytes written past the SSLStream would corrupt the TLS session."""
        return 0

    def _buffered(self) -> bool:
        """Whether bytes wait above the socket: decrypted, or read and not decrypted yet."""
        return self._tls.pending() > 0 or self._records.buffered > 0

