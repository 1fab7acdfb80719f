"""The one accept loop of every listener (the upstream's data ports and the admin API).

Invariants: running out of file descriptors or kernel memory never ends the loop and never prints:
it pauses and accepts again, since the connections already open will end and free what is missing
(every connection has a timeout); any other accept error ends the loop. With a `limit`, no more than
that many handlers run at once: the loop stops accepting while the limit is reached, and the kernel's
backlog holds the connections waiting.
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


async def accept_forever(
    listener: trio.SocketListener, handlers: trio.Nursery, handler: Handler, limit: trio.Semaphore | None = None
) -> None:
    """Accept connections on `listener` until cancelled, starting `handler(stream)` in `handlers` for each."""
    while True:
        if limit is not None:
            await limit.acquire()
        try:
            stream = await _accept(listener)
        except BaseException:
            if limit is not None:
                limit.release()
            raise
        handlers.start_soon(_handle, handler, stream, limit)


async def _accept(listener: trio.SocketListener) -> trio.SocketStream:
    """The next connection, waiting quietly while descriptors or memory run out."""
    while True:
        try:
            return await listener.accept()
        except OSError as exc:
            if exc.errno not in EXHAUSTED:
                raise
            await trio.sleep(ACCEPT_RETRY)


async def _handle(handler: Handler, stream: trio.SocketStream, limit: trio.Semaphore | None) -> None:
    try:
        await handler(stream)
    finally:
        if limit is not None:
            limit.release()
