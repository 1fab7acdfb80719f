"""The one writer of an HTTP/2 connection: every frame whole, in the order queued, many at once.

Invariants: bytes go out in the order `write` queued them, each queue entry whole (a writer task
sends them, so a stream's task cancelled meanwhile, by its peer's RST_STREAM, never cuts a frame in
two); once a send has failed, every write raises PeerGone; `close()` lets what is queued go out,
then ends `run()`.
"""

from __future__ import annotations

import trio

from chaos_upstream.errors import PeerGone
from chaos_upstream.server.wire import Wire

HIGH_WATER = 64 * 1024
"""Bytes queued past which a write waits for the writer (a peer that reads slowly slows its streams)."""


class FrameWriter:
    """Start `run()` in a nursery that outlives the streams; `write()` from any task; `close()` at the end."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.failed: PeerGone | None = None
        """Why a send failed, once one has."""
        self._outbox, self._outgoing = trio.open_memory_channel[tuple[bytes, trio.Event]](float("inf"))
        self._queued = 0
        """Bytes queued and not yet sent."""
        self._sent_some = trio.Event()

    async def write(self, data: bytes, *, flush: bool = False) -> None:
        """Queue `data`; wait until it is sent when asked to `flush` (everything queued before it
        too), or when more than HIGH_WATER bytes wait. PeerGone once a send has failed.

        Strategy: the writer sends what has queued meanwhile in one write, so the frames of many
        streams answered at once cost one system call, not two each."""
        if self.failed is not None:
            raise PeerGone(self.failed.how)
        if not (data or flush):
            return
        sent = trio.Event()
        try:
            self._outbox.send_nowait((data, sent))
        except trio.ClosedResourceError:  # the connection has ended
            raise PeerGone("closed") from None
        self._queued += len(data)
        if flush or self._queued > HIGH_WATER:
            await sent.wait()
            if self.failed is not None:
                raise PeerGone(self.failed.how)

    async def room(self) -> None:
        """Wait until no more than HIGH_WATER bytes are queued (or a send has failed): what a stream
        waits for before it makes its next DATA frame, so the queue holds at most one past it."""
        while self._queued > HIGH_WATER and self.failed is None:
            await self._sent_some.wait()

    def close(self) -> None:
        self._outbox.close()

    async def run(self) -> None:
        async for data, sent in self._outgoing:
            batch, done = [data], [sent]
            while True:
                try:
                    data, sent = self._outgoing.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                batch.append(data)
                done.append(sent)
            chunk = b"".join(batch)
            try:
                if self.failed is None and chunk:
                    await self.wire.send(chunk)
            except PeerGone as gone:
                self.failed = gone
            finally:
                self._queued -= len(chunk)
                for sent in done:
                    sent.set()
                self._sent_some.set()
                self._sent_some = trio.Event()
