"""A raw client on trio that records exactly what came back: the I/O backend of an `Exchange`.

It only moves bytes and reports to the exchange (see `exchange.py`, which decides the Capture and
translates OS errors into endings); classification is a pure function of a Capture, elsewhere.
Invariant: a capture always ends, by the peer's FIN, the peer's RST, the caller's time limit or its
`done`, and its stream is closed whatever happens.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from chaos_upstream.verifier.exchange import RECEIVE_SIZE, Capture, Exchange

__all__ = ["capture", "capture_on"]


async def capture(
    host: str, port: int, request: bytes, *, limit: float, done: Callable[[bytes], bool] | None = None
) -> Capture:
    """Connect, send `request`, and record what comes back until FIN, RST, `limit` seconds, or until
    `done(piece)`, called with each piece as it arrives, says there is nothing more to wait for."""
    stream = await trio.open_tcp_stream(host, port)
    return await capture_on(stream, request, limit=limit, done=done)


async def capture_on(
    stream: trio.SocketStream, request: bytes, *, limit: float, done: Callable[[bytes], bool] | None = None
) -> Capture:
    """`capture` on a stream already connected, which it closes."""
    async with stream:
        exchange = Exchange(done)
        start = trio.current_time()
        with trio.move_on_after(limit) as scope:
            try:
                await stream.send_all(request)
                while not exchange.over:
                    data = await stream.receive_some(RECEIVE_SIZE)
                    exchange.received(trio.current_time() - start, data)
            except trio.BrokenResourceError as exc:
                exchange.failed(_os_error(exc))
        if scope.cancelled_caught:
            exchange.timed_out()
        return exchange.capture(trio.current_time() - start)


def _os_error(exc: trio.BrokenResourceError) -> OSError:
    """The OS error trio wrapped into `exc`; `exc` itself is raised when it wraps none."""
    if isinstance(exc.__cause__, OSError):
        return exc.__cause__
    raise exc
