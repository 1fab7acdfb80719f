"""A raw client that records exactly what came back: every byte, when it came, and how it ended.

No parsing happens here: classification is a pure function of a Capture, elsewhere. Invariant: a
capture always ends, by the peer's FIN, the peer's RST, or the caller's time limit, and its socket
is closed whatever happens.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import trio

RECEIVE_SIZE = 65536
"""Bytes per read: a full socket buffer's worth."""

Ending = Literal["fin", "rst", "timeout", "open"]


@dataclass(frozen=True)
class Capture:
    """What one connection delivered."""

    pieces: tuple[tuple[float, bytes], ...]
    """(seconds since the request was sent, bytes) for every read, in order."""
    ending: Ending
    """fin: the peer closed; rst: it reset; timeout: still open when the limit came; open: still open
    when the caller's `done` said there was nothing more to wait for."""
    elapsed: float
    """Seconds from sending the request to the ending."""

    @property
    def data(self) -> bytes:
        return b"".join(piece for _, piece in self.pieces)

    @property
    def first_byte(self) -> float | None:
        return self.pieces[0][0] if self.pieces else None


async def capture(
    host: str, port: int, request: bytes, *, limit: float, done: Callable[[bytes], bool] | None = None
) -> Capture:
    """Connect, send `request`, and record what comes back until FIN, RST, `limit` seconds, or until
    `done(piece)`, called with each piece as it arrives, says there is nothing more to wait for."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        start = trio.current_time()
        pieces: list[tuple[float, bytes]] = []
        ending: Ending = "timeout"
        with trio.move_on_after(limit):
            try:
                await stream.send_all(request)
                while data := await stream.receive_some(RECEIVE_SIZE):
                    pieces.append((trio.current_time() - start, data))
                    if done is not None and done(data):
                        ending = "open"
                        break
                else:
                    ending = "fin"
            except trio.BrokenResourceError as exc:
                if not _is_reset(exc):
                    raise
                ending = "rst"
        return Capture(tuple(pieces), ending, trio.current_time() - start)


def _is_reset(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc.__context__
    return isinstance(cause, OSError) and cause.errno in (errno.ECONNRESET, errno.EPIPE)
