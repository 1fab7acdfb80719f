"""Listening: the upstream's listening (or bound-only) sockets, and the one accept loop of every
listener (the upstream's data ports and the admin API).

Invariants: running out of file descriptors or kernel memory never ends the loop and never prints:
it pauses and accepts again, since the connections already open will end and free what is missing
(every connection has a timeout); any other accept error ends the loop.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Awaitable, Callable

import trio

BACKLOG = 1024
"""Listen backlog: room for a burst of a thousand proxy connections (Linux caps it at somaxconn)."""

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


async def open_listeners(host: str, port: int, *, reuse_port: bool) -> list[trio.SocketListener]:
    """Bound, listening sockets for host:port; SO_REUSEPORT (set before bind) lets workers share a port."""
    if not reuse_port:
        return await trio.open_tcp_listeners(port, host=host, backlog=BACKLOG)
    sockets = await bound_sockets(host, port, reuse_port=True)
    for sock in sockets:
        sock.listen(BACKLOG)
    return [trio.SocketListener(sock) for sock in sockets]


async def bound_sockets(host: str, port: int, *, reuse_port: bool) -> list[trio.socket.SocketType]:
    """Sockets bound to every address of host:port, not listening yet; SO_REUSEADDR as trio's
    listeners have it (TIME_WAIT is no obstacle), SO_REUSEPORT too when asked (set before bind)."""
    sockets = []
    try:
        for family, kind, proto, _, address in await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            sockets.append(sock := trio.socket.socket(family, kind, proto))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            await sock.bind(address)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
