"""The admin API of a running upstream: health, readiness, metrics, scenarios, the active switch, the journal.

An honest little HTTP/1.1 server: h11 both parses and writes (keep-alive included, see `admin_http`),
and `dispatch`, which turns one parsed request into a Reply, touches no socket: it checks who calls
(`admin_guard`), then routes, validates and handles the call (`admin_routes`). Invariants:
- no admin call can end the process: every body and query is validated by a model before any
  handler sees it, `dispatch` turns any exception into a 500, and a connection's handler lets
  nothing escape;
- no web page can drive it, and with a token configured every call without it gets a 401 and
  changes nothing (see `admin_guard`);
- nothing waits without end: reading a request has a deadline, every send a timeout (see
  `admin_http`), and at most MAX_CONNECTIONS connections are served at once (a new one cuts the oldest);
- the journal is served in pages, streamed in batches (see `admin_routes`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import h11
import trio

from chaos_upstream.server.accepting import accept_forever
from chaos_upstream.server.admin_guard import LOOPBACK_HOSTS, WILDCARDS, allowed_name, header_values, refusal, split_target
from chaos_upstream.server.admin_http import Reply, read_request, refuse, send_reply
from chaos_upstream.server.admin_routes import ROUTES, validated
from chaos_upstream.server.control import Control

MAX_CONNECTIONS = 64
"""Admin connections served at once: a few scrapers and scripts need a handful. A new connection
past it cuts the oldest, so clients that never read or never finish a request (slowloris) hold at
most 64 sockets and their pending batches, and cannot keep a liveness probe out."""


class Admin:
    """The admin API of an upstream or a fleet of workers. Start it with `await nursery.start(admin.run, host, port)`."""

    def __init__(self, control: Control, token: str | None = None, *, allow_hosts: Sequence[str] = ()) -> None:
        self.control = control
        self.token = token
        self.hosts = {allowed_name(name) for name in [*LOOPBACK_HOSTS, *allow_hosts]}
        """Host names (with any port) and name:port values accepted; `run` adds the bound address."""
        self._open: dict[int, trio.CancelScope] = {}
        """The connections being served, oldest first, by their stream's id."""

    async def run(self, host: str, port: int, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        addresses = [listener.socket.getsockname()[:2] for listener in listeners]
        self.hosts |= {allowed_name(name) for name in [host, *(a[0] for a in addresses)] if name not in WILDCARDS}
        try:
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(accept_forever, listener, nursery, self._connection)
                task_status.started(addresses)
        finally:
            for listener in listeners:
                listener.socket.close()

    async def _connection(self, stream: trio.SocketStream) -> None:
        """Serve one connection; nothing escapes (a failure is one line on stderr), the stream is
        closed. Past MAX_CONNECTIONS, the oldest connection is cut to make room for this one."""
        scope = self._open[id(stream)] = trio.CancelScope()
        if len(self._open) > MAX_CONNECTIONS:
            self._open.pop(next(iter(self._open))).cancel()
        try:
            with scope:
                async with stream:
                    await self._converse(stream, h11.Connection(h11.SERVER))
        except (h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass
        except Exception as exc:  # a bug of ours: this connection ends, the API goes on
            _complain("admin connection", exc)
        finally:
            self._open.pop(id(stream), None)

    async def _converse(self, stream: trio.SocketStream, connection: h11.Connection) -> None:
        try:
            while await self._exchange(stream, connection):
                connection.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            await refuse(stream, connection, exc)

    async def _exchange(self, stream: trio.SocketStream, connection: h11.Connection) -> bool:
        """One request and its reply; False when the connection is done."""
        request, body = await read_request(stream, connection)
        if request is None:
            return False
        await send_reply(stream, connection, await self.dispatch(request, body))
        return connection.our_state is h11.DONE and connection.their_state is h11.DONE

    async def dispatch(self, request: h11.Request, body: bytes) -> Reply:
        """The reply to one request, never an exception: a failure is a 500 and one line on stderr."""
        try:
            return await self._answer(request, body)
        except Exception as exc:
            _complain(f"admin {request.method.decode('latin-1')} {request.target.decode('latin-1')[:200]}", exc)
            return Reply.error(500, f"internal error ({type(exc).__name__}); the admin API goes on")

    async def _answer(self, request: h11.Request, body: bytes) -> Reply:
        """Guarded, routed, validated, handled."""
        try:
            authority, path, query = split_target(request.target.decode("latin-1"))
        except ValueError as exc:
            return Reply.error(400, f"bad target: {exc}")
        refused = refusal(request, authority, self.hosts, self.token)
        if refused is not None:
            return refused
        method = request.method.decode("latin-1")
        route = ROUTES.get((method, path))
        if route is None:
            allowed = sorted(m for m, known in ROUTES if known == path)
            return Reply.error(405, f"allowed: {', '.join(allowed)}") if allowed else Reply.error(404, "no such call")
        if route.model is None:
            return await route.handler(self.control, None, query)
        call = validated(route, header_values(request, b"content-type"), body)
        return call if isinstance(call, Reply) else await route.handler(self.control, call, query)


def _complain(what: str, exc: Exception) -> None:
    """One line on stderr for an unexpected failure: enough to report it, never a traceback flood."""
    message = " ".join(str(exc).split())[:300]
    print(f"chaos-upstream: {what}: {type(exc).__name__}: {message}", file=sys.stderr, flush=True)
