"""The one accept loop of every listener (the upstream's data ports and the admin API).

Invariants: running out of file descriptors or kernel memory never ends the loop and never prints:
it pauses and accepts again, since the connections already open will end and free what is missing
(every connection has a timeout); any other accept error ends the loop.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable

import trio

ACCEPT_RETRY = 0.1
"""Pause after accept fails for lack of file descriptors or memory: trio's serve_listeners waits as
long, but prints a traceback each time, which fills a sidecar's log at ten lines a second."""

EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
"""Accept errors that say a resource is exhausted for now, not that the listener is broken."""

Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def accept_forever(listener: trio.SocketListener, handlers: trio.Nursery, handler: Handler) -> None:
    """Accept connections on `listener` until cancelled, starting `handler(stream)` in `handlers` for each."""
    while True:
        handlers.start_soon(handler, await _accept(listener))


async def _accept(listener: trio.SocketListener) -> trio.SocketStream:
    """The next connection, waiting quietly while descriptors or memory run out."""
    while True:
        try:
            return await listener.accept()
        except OSError as exc:
            if exc.errno not in EXHAUSTED:
                raise
            await trio.sleep(ACCEPT_RETRY)
