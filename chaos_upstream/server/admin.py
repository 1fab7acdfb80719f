"""The admin API of a running upstream: health, readiness, metrics, scenarios, the active switch, the journal.

An honest little HTTP/1.1 server: h11 both parses and writes (keep-alive included), every read has
a timeout, every connection is closed. Invariant: with a token configured, every call without
`Authorization: Bearer TOKEN` gets a 401 and changes nothing.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from chaos_upstream.errors import ConfigError
from chaos_upstream.server.control import Control
from chaos_upstream.server.upstream import Stats

READ_TIMEOUT = 30.0
"""Seconds an admin connection may sit idle or mid-request: ample for scripts and scrapers."""

MAX_BODY = 64 * 1024
"""The largest request body accepted: admin calls carry a few bytes of JSON."""

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class Reply:
    """An admin response: status and a body (JSON unless `content_type` says otherwise)."""

    status: int
    body: bytes
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, value: Any) -> Reply:
        return cls(status, json.dumps(value, indent=1).encode() + b"\n")


Handler = Callable[["Admin", dict[str, list[str]], bytes], Awaitable[Reply]]


class Admin:
    """The admin API of an upstream or a fleet of workers. Start it with `await nursery.start(admin.run, host, port)`."""

    def __init__(self, control: Control, token: str | None = None) -> None:
        self.control = control
        self.token = token

    async def run(self, host: str, port: int, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        task_status.started([listener.socket.getsockname()[:2] for listener in listeners])
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        async with stream:
            connection = h11.Connection(h11.SERVER)
            try:
                while await self._exchange(stream, connection):
                    connection.start_next_cycle()
            except h11.RemoteProtocolError as exc:
                await _refuse(stream, connection, exc)
            except (h11.LocalProtocolError, trio.BrokenResourceError, trio.TooSlowError):
                pass

    async def _exchange(self, stream: trio.SocketStream, connection: h11.Connection) -> bool:
        """One request and its reply; False when the connection is done."""
        request, body = await _read(stream, connection)
        if request is None:
            return False
        reply = await self.dispatch(request, body)
        headers = [("Content-Type", reply.content_type), ("Content-Length", str(len(reply.body)))]
        for event in (h11.Response(status_code=reply.status, headers=headers), h11.Data(data=reply.body), h11.EndOfMessage()):
            await stream.send_all(connection.send(event))
        return connection.our_state is h11.DONE and connection.their_state is h11.DONE

    async def dispatch(self, request: h11.Request, body: bytes) -> Reply:
        """The reply to one request: authorised, routed by method and path."""
        if self.token is not None and not self._authorised(request):
            return Reply.json(401, {"error": "missing or wrong bearer token"})
        target = urlsplit(request.target.decode("latin-1"))
        route = ROUTES.get((request.method.decode("latin-1"), target.path))
        if route is None:
            allowed = sorted(method for method, path in ROUTES if path == target.path)
            status, error = (405, f"allowed: {', '.join(allowed)}") if allowed else (404, "no such call")
            return Reply.json(status, {"error": error})
        return await route(self, parse_qs(target.query), body)

    def _authorised(self, request: h11.Request) -> bool:
        given = dict(request.headers).get(b"authorization", b"")
        return hmac.compare_digest(given, b"Bearer " + (self.token or "").encode())


async def _refuse(stream: trio.SocketStream, connection: h11.Connection, exc: h11.RemoteProtocolError) -> None:
    """Answer an unparseable or oversized request with its status hint (400, 413, 431), if we still may."""
    body = json.dumps({"error": str(exc)}).encode()
    response = h11.Response(status_code=exc.error_status_hint, headers=[("Content-Length", str(len(body)))])
    try:
        await stream.send_all(connection.send(response) + connection.send(h11.Data(data=body)))
    except (h11.LocalProtocolError, trio.BrokenResourceError):
        pass


async def _read(stream: trio.SocketStream, connection: h11.Connection) -> tuple[h11.Request | None, bytes]:
    request, body = None, b""
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            with trio.fail_after(READ_TIMEOUT):
                connection.receive_data(await stream.receive_some(MAX_BODY))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                raise h11.RemoteProtocolError("body too large", error_status_hint=413)
        elif isinstance(event, h11.EndOfMessage):
            return request, body
        else:
            return None, b""


async def _healthz(admin: Admin, query: dict, body: bytes) -> Reply:
    return Reply.json(200, {"status": "ok"})


async def _readyz(admin: Admin, query: dict, body: bytes) -> Reply:
    ready, addresses = admin.control.readiness()
    return Reply.json(200 if ready else 503, {"ready": ready, "addresses": [list(a) for a in addresses]})


async def _metrics(admin: Admin, query: dict, body: bytes) -> Reply:
    registry = CollectorRegistry()
    registry.register(_Collector(await admin.control.stats(), admin.control.members_listening()))
    return Reply(200, generate_latest(registry), "text/plain; version=0.0.4; charset=utf-8")


async def _scenarios(admin: Admin, query: dict, body: bytes) -> Reply:
    control = admin.control
    scenarios = [scenario.model_dump(mode="json") for scenario in control.catalogue]
    return Reply.json(200, {"active": control.active, "default": control.default, "scenarios": scenarios})


async def _put_active(admin: Admin, query: dict, body: bytes) -> Reply:
    try:
        call = json.loads(body)
        name, member = call["scenario"], call.get("member")
    except (ValueError, KeyError, TypeError, AttributeError):
        return Reply.json(400, {"error": 'send {"scenario": NAME}, or {"scenario": NAME, "member": K} for one member'})
    if name not in admin.control.catalogue:
        return Reply.json(404, {"error": f"no scenario named {name!r}"})
    try:
        await admin.control.set_active(name, member)
    except ConfigError as exc:
        return Reply.json(400, {"error": str(exc)})
    return Reply.json(200, {"active": name} if member is None else {"active": name, "member": member})


async def _post_timeline(admin: Admin, query: dict, body: bytes) -> Reply:
    try:
        name = json.loads(body)["scenario"]
    except (ValueError, KeyError, TypeError):
        return Reply.json(400, {"error": 'send {"scenario": NAME} naming a deploy scenario'})
    if name not in admin.control.catalogue:
        return Reply.json(404, {"error": f"no scenario named {name!r}"})
    try:
        changes = await admin.control.play(name)
    except ConfigError as exc:
        return Reply.json(409, {"error": str(exc)})
    return Reply.json(202, {"playing": name, "changes": [vars(change) for change in changes]})


async def _delete_active(admin: Admin, query: dict, body: bytes) -> Reply:
    await admin.control.set_active(None)
    return Reply.json(200, {"active": None, "default": admin.control.default})


async def _journal(admin: Admin, query: dict, body: bytes) -> Reply:
    probe = query.get("probe", [None])[0]
    kind = query.get("type", [None])[0]
    running = query.get("running", ["0"])[0] in ("1", "true")
    return Reply.json(200, await admin.control.journal(probe, kind, running))


ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "/healthz"): _healthz,
    ("GET", "/readyz"): _readyz,
    ("GET", "/metrics"): _metrics,
    ("GET", "/scenarios"): _scenarios,
    ("PUT", "/active"): _put_active,
    ("DELETE", "/active"): _delete_active,
    ("POST", "/timeline"): _post_timeline,
    ("GET", "/journal"): _journal,
}


class _Collector:
    """Prometheus metrics from a snapshot of the running totals, taken at scrape time."""

    def __init__(self, stats: Stats, listening: list[bool]) -> None:
        self.stats = stats
        self.listening = listening

    def collect(self) -> Any:
        stats = self.stats
        requests = CounterMetricFamily("chaos_upstream_requests", "Requests handled, by scenario.", labels=["scenario"])
        for scenario, count in sorted(stats.requests.items()):
            requests.add_metric([scenario], count)
        endings = CounterMetricFamily(
            "chaos_upstream_request_endings", "Requests by scenario and how they ended.", labels=["scenario", "ended"]
        )
        for (scenario, ended), count in sorted(stats.endings.items()):
            endings.add_metric([scenario, ended], count)
        yield requests
        yield endings
        yield CounterMetricFamily("chaos_upstream_connections", "Connections accepted.", value=stats.connections)
        yield GaugeMetricFamily("chaos_upstream_connections_open", "Connections open now.", value=stats.open)
        yield CounterMetricFamily("chaos_upstream_bad_requests", "Requests refused as unparseable.", value=stats.bad_requests)
        yield CounterMetricFamily("chaos_upstream_received_bytes", "Bytes read from closed connections.", value=stats.bytes_in)
        yield CounterMetricFamily("chaos_upstream_sent_bytes", "Bytes written to closed connections.", value=stats.bytes_out)
        members = GaugeMetricFamily("chaos_upstream_member_listening", "1 while fleet member K listens, 0 while a "
                                    "timeline holds it down.", labels=["member"])
        for index, listening in enumerate(self.listening):
            members.add_metric([str(index)], int(listening))
        yield members
