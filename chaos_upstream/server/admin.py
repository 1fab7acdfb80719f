"""The admin API of a running upstream: health, readiness, metrics, scenarios, the active switch, the journal.

An honest little HTTP/1.1 server: h11 both parses and writes (keep-alive included), and `dispatch`,
which turns one parsed request into a Reply, touches no socket. Invariants:
- no admin call can end the process: every body and query is validated by a model before any
  handler sees it, `dispatch` turns any exception into a 500, and a connection's handler lets
  nothing escape;
- no web page can drive it: every call must carry a `Host` that names this API (the bound address,
  a loopback name, or one given with `--admin-allow-host`) and no foreign `Origin`, and a call that
  changes state must be `Content-Type: application/json`, which a page cannot send without a CORS
  preflight, which is never answered;
- with a token configured, every call without `Authorization: Bearer TOKEN` gets a 401 and changes nothing;
- nothing waits without end: reading a request has a deadline, every send a timeout, and at most
  MAX_CONNECTIONS connections are served at once (a new one cuts the oldest);
- the journal is served in pages of at most MAX_LIMIT records, streamed in batches, so that the data
  ports of the same process keep being served while a page goes out.
"""

from __future__ import annotations

import hmac
import json
import re
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import h11
import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from chaos_upstream.errors import ConfigError
from chaos_upstream.model.scenario import NAME_PATTERN
from chaos_upstream.server.accepting import accept_forever
from chaos_upstream.server.control import Control, JournalPage
from chaos_upstream.server.upstream import Stats

REQUEST_DEADLINE = 10.0
"""Seconds from waiting for a request to its last byte, idle keep-alive time included: ample for
scripts and scrapers on loopback, and a slowloris holds a connection no longer than this."""

SEND_TIMEOUT = 10.0
"""Seconds a reply's send may wait for a client that does not read: a journal page's batch goes out
in well under a second to any client that reads at all."""

MAX_CONNECTIONS = 64
"""Admin connections served at once: a few scrapers and scripts need a handful. A new connection
past it cuts the oldest, so clients that never read or never finish a request (slowloris) hold at
most 64 sockets and their pending batches, and cannot keep a liveness probe out."""

MAX_BODY = 64 * 1024
"""The largest request body accepted: admin calls carry a few bytes of JSON."""

RECEIVE_SIZE = 64 * 1024
"""Bytes read at once from an admin connection."""

DEFAULT_LIMIT = 1000
"""Records in a journal page unless `?limit=` says otherwise: hundreds of KB, served in milliseconds."""

MAX_LIMIT = 10_000
"""The largest `?limit=`: a few MB of JSON; more records come with `?since=` in further pages."""

BATCH = 500
"""Journal records per chunk of a streamed page: each send is a checkpoint, so the data ports of the
process are served between batches."""

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")

WILDCARDS = ("0.0.0.0", "::")
"""Bound addresses that are never a valid Host: a browser reaches 0.0.0.0 as loopback, which is how
pages have driven local services."""

JSON = "application/json"


@dataclass(frozen=True)
class Reply:
    """An admin response: status, extra headers and a body (JSON unless `content_type` says
    otherwise), or `chunks` to stream, each a checkpoint apart."""

    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()
    chunks: Iterable[bytes] | None = None

    @classmethod
    def json(cls, status: int, value: Any) -> Reply:
        return cls(status, json.dumps(value, indent=1).encode() + b"\n")

    @classmethod
    def error(cls, status: int, message: str, **details: Any) -> Reply:
        return cls.json(status, {"error": message, **details})


class _Call(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActiveCall(_Call):
    """The body of `PUT /active`."""

    scenario: str = Field(pattern=NAME_PATTERN)
    """The scenario to serve to requests that name none."""
    member: int | None = Field(None, ge=0, le=1_000_000, strict=True)
    """Only this fleet member (0-based); all of them when absent."""


class TimelineCall(_Call):
    """The body of `POST /timeline`."""

    scenario: str = Field(pattern=NAME_PATTERN)
    """The deploy scenario whose timeline to play on the fleet."""


def _cursor(value: Any) -> Any:
    """`?since=N` or `?since=N,M,...` (one per worker) as a tuple of ints."""
    return tuple(value.split(",")) if isinstance(value, str) else value


class JournalQuery(_Call):
    """The query of `GET /journal`."""

    probe: str | None = Field(None, max_length=1024)
    """Only this probe's records."""
    type: str | None = Field(None, max_length=64)
    """Only records of this type (`request`, `connection`, ...)."""
    running: bool = False
    """On the last page, also the records still in progress."""
    since: Annotated[tuple[Annotated[int, Field(ge=0)], ...], BeforeValidator(_cursor)] = Field((0,), min_length=1, max_length=1024)
    """Records written after this cursor (`X-Chaos-Journal-Next` of the previous page)."""
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    """Records in the page at most."""


Handler = Callable[["Admin", Any, str], Awaitable[Reply]]


@dataclass(frozen=True)
class Route:
    """What a call runs, and the model of its body (None: the body is ignored)."""

    handler: Handler
    model: type[_Call] | None = None
    usage: str = ""


class Admin:
    """The admin API of an upstream or a fleet of workers. Start it with `await nursery.start(admin.run, host, port)`."""

    def __init__(self, control: Control, token: str | None = None, *, allow_hosts: Sequence[str] = ()) -> None:
        self.control = control
        self.token = token
        self.hosts = {_allowed(name) for name in [*LOOPBACK_HOSTS, *allow_hosts]}
        """Host names (with any port) and name:port values accepted; `run` adds the bound address."""
        self._open: dict[int, trio.CancelScope] = {}
        """The connections being served, oldest first, by their stream's id."""

    async def run(self, host: str, port: int, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        addresses = [listener.socket.getsockname()[:2] for listener in listeners]
        self.hosts |= {_allowed(name) for name in [host, *(a[0] for a in addresses)] if name not in WILDCARDS}
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
            await _refuse(stream, connection, exc)

    async def _exchange(self, stream: trio.SocketStream, connection: h11.Connection) -> bool:
        """One request and its reply; False when the connection is done."""
        request, body = await _read(stream, connection)
        if request is None:
            return False
        await _send(stream, connection, await self.dispatch(request, body))
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
            authority, path, query = _split(request.target.decode("latin-1"))
        except ValueError as exc:
            return Reply.error(400, f"bad target: {exc}")
        refusal = self._refusal(request, authority)
        if refusal is not None:
            return refusal
        method = request.method.decode("latin-1")
        route = ROUTES.get((method, path))
        if route is None:
            allowed = sorted(m for m, known in ROUTES if known == path)
            return Reply.error(405, f"allowed: {', '.join(allowed)}") if allowed else Reply.error(404, "no such call")
        if route.model is None:
            return await route.handler(self, None, query)
        call = _validated(route, _values(request, b"content-type"), body)
        return call if isinstance(call, Reply) else await route.handler(self, call, query)

    def _refusal(self, request: h11.Request, authority: str | None) -> Reply | None:
        """403 for a Host (or the authority of an absolute-form target, which stands for it) or an
        Origin that is not ours, 401 without the token; None: go on."""
        hosts = _values(request, b"host")
        named = hosts[0] if authority is None and len(hosts) == 1 else authority
        if len(hosts) != 1 or named is None or not self._ours(named):
            shown = named[:100] if len(hosts) == 1 and named is not None else f"{len(hosts)} Host fields"
            return Reply.error(403, f"Host {shown!r} does not name this admin API: "
                               "give the name with --admin-allow-host NAME if it should")
        for origin in _values(request, b"origin"):
            if not self._ours(_origin_host(origin)):
                return Reply.error(403, f"Origin {origin[:100]!r} refused: web pages may not call the admin API "
                                   "(--admin-allow-host NAME allows one whose host is NAME)")
        if self.token is not None and not self._authorised(request):
            return Reply.error(401, "missing or wrong bearer token")
        return None

    def _ours(self, host: str) -> bool:
        """Whether a Host value (name, or name:port) names this API."""
        host = host.strip().lower()
        return bool(host) and (host in self.hosts or _host_name(host) in self.hosts)

    def _authorised(self, request: h11.Request) -> bool:
        given = dict(request.headers).get(b"authorization", b"")
        return hmac.compare_digest(given, b"Bearer " + (self.token or "").encode())


def _values(request: h11.Request, name: bytes) -> list[str]:
    """The values of every header field `name` (lower case) of the request."""
    return [value.decode("latin-1") for field, value in request.headers if field == name]


def _allowed(name: str) -> str:
    """An allowed name (`NAME` or `NAME:PORT`) as a Host value spells it: lower case, an IPv6 address in brackets."""
    name = name.strip().lower()
    return f"[{name}]" if name.count(":") > 1 and not name.startswith("[") else name


HOST_VALUE = re.compile(r"(\[[0-9a-f:.]+\]|[^\[\]:@/?#\s]+)(?::[0-9]*)?")
"""A Host value (RFC 9110 §7.2): a name or an IP literal in brackets, then an optional port."""


def _host_name(host: str) -> str:
    """The name part of a Host value, lower case: `[::1]:80` -> `[::1]`, `Example:80` -> `example`;
    "" for anything that is not a Host value (`[::1]evil`, `localhost:evil`), which is refused."""
    match = HOST_VALUE.fullmatch(host.strip().lower())
    return match[1] if match else ""


def _split(target: str) -> tuple[str | None, str, str]:
    """(authority, path, query) of a request target. Origin-form (`/path?query`) has no authority,
    and is split at its `?` alone, so that `//name/path` is a path like any other; absolute-form
    (`http://name/path?query`) names the host, which then stands for the Host field (RFC 9112
    §3.2.2). ValueError for any other form."""
    if target.startswith("/"):
        path, _, query = target.partition("?")
        return None, path, query
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{target[:100]!r} is neither /PATH nor http://HOST/PATH")
    return parts.netloc, parts.path or "/", parts.query


def _origin_host(origin: str) -> str:
    """The host[:port] of an Origin value; "" for `null` or anything unparseable, which is refused."""
    try:
        return urlsplit(origin.strip()).netloc if origin.strip() != "null" else ""
    except ValueError:
        return ""


def _validated(route: Route, content_types: list[str], body: bytes) -> _Call | Reply:
    """The body as the route's model, or the reply that refuses it: 415, 413, 400 or 422."""
    assert route.model is not None
    if len(content_types) != 1 or content_types[0].partition(";")[0].strip().lower() != JSON:
        return Reply.error(415, f"send the body as Content-Type: {JSON}: {route.usage}")
    if len(body) > MAX_BODY:
        return Reply.error(413, f"the body is over {MAX_BODY} bytes: {route.usage}")
    try:
        return route.model.model_validate_json(body)
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_input=False, include_context=False)
        unparsed = [p["msg"] for p in problems if p["type"] == "json_invalid"]
        if unparsed:
            return Reply.error(400, f"the body is not JSON ({unparsed[0]}): {route.usage}")
        listed = [{"loc": list(p["loc"]), "msg": p["msg"], "type": p["type"]} for p in problems]
        return Reply.error(422, route.usage, problems=listed)


def _complain(what: str, exc: Exception) -> None:
    """One line on stderr for an unexpected failure: enough to report it, never a traceback flood."""
    message = " ".join(str(exc).split())[:300]
    print(f"chaos-upstream: {what}: {type(exc).__name__}: {message}", file=sys.stderr, flush=True)


async def _refuse(stream: trio.SocketStream, connection: h11.Connection, exc: h11.RemoteProtocolError) -> None:
    """Answer an unparseable or oversized request with its status hint (400, 413, 431), if we still may."""
    reply = Reply.error(exc.error_status_hint, str(exc))
    try:
        await _send(stream, connection, reply)
    except (h11.LocalProtocolError, trio.BrokenResourceError, trio.TooSlowError):
        pass


async def _read(stream: trio.SocketStream, connection: h11.Connection) -> tuple[h11.Request | None, bytes]:
    """The next request and its body, within REQUEST_DEADLINE; (None, b"") when the client is done."""
    request, body = None, bytearray()
    with trio.fail_after(REQUEST_DEADLINE):
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                if connection.they_are_waiting_for_100_continue:  # RFC 9110 §10.1.1: a 100, or they wait
                    await _send_all(stream, connection.send(h11.InformationalResponse(status_code=100, headers=[])))
                connection.receive_data(await stream.receive_some(RECEIVE_SIZE))
            elif isinstance(event, h11.Request):
                request = event
                _check_length(event)
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise h11.RemoteProtocolError(f"the body is over {MAX_BODY} bytes", error_status_hint=413)
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            else:
                return None, b""


def _check_length(request: h11.Request) -> None:
    """Refuse a declared body over MAX_BODY before reading it (h11 has checked the field is a number)."""
    for field, value in request.headers:
        if field == b"content-length" and int(value) > MAX_BODY:
            raise h11.RemoteProtocolError(f"the body is over {MAX_BODY} bytes", error_status_hint=413)


async def _send(stream: trio.SocketStream, connection: h11.Connection, reply: Reply) -> None:
    """Send `reply`: with Content-Length, or chunked when it streams; every send within SEND_TIMEOUT."""
    headers = [("Content-Type", reply.content_type), *reply.headers]
    if reply.chunks is None:
        headers.append(("Content-Length", str(len(reply.body))))
    if reply.status >= 400 and reply.status not in (401, 403, 404, 405, 409, 422):
        headers.append(("Connection", "close"))  # the request may not have been read whole
    await _send_all(stream, connection.send(h11.Response(status_code=reply.status, headers=headers)))
    for chunk in [reply.body] if reply.chunks is None else reply.chunks:
        await _send_all(stream, connection.send(h11.Data(data=chunk)))
    await _send_all(stream, connection.send(h11.EndOfMessage()))


async def _send_all(stream: trio.SocketStream, data: bytes | None) -> None:
    """Send, giving up after SEND_TIMEOUT (TooSlowError): a client that does not read loses its connection."""
    with trio.fail_after(SEND_TIMEOUT):
        await stream.send_all(data or b"")


async def _healthz(admin: Admin, call: None, query: str) -> Reply:
    return Reply.json(200, {"status": "ok"})


async def _readyz(admin: Admin, call: None, query: str) -> Reply:
    ready, addresses = admin.control.readiness()
    return Reply.json(200 if ready else 503, {"ready": ready, "addresses": [list(a) for a in addresses]})


async def _metrics(admin: Admin, call: None, query: str) -> Reply:
    registry = CollectorRegistry()
    registry.register(_Collector(await admin.control.stats(), admin.control.members_listening()))
    return Reply(200, generate_latest(registry), "text/plain; version=0.0.4; charset=utf-8")


async def _scenarios(admin: Admin, call: None, query: str) -> Reply:
    control = admin.control
    scenarios = [scenario.model_dump(mode="json") for scenario in control.catalogue]
    return Reply.json(200, {"active": control.active, "default": control.default, "scenarios": scenarios})


async def _put_active(admin: Admin, call: ActiveCall, query: str) -> Reply:
    if call.scenario not in admin.control.catalogue:
        return Reply.error(404, f"no scenario named {call.scenario!r}")
    try:
        await admin.control.set_active(call.scenario, call.member)
    except ConfigError as exc:
        return Reply.error(400, str(exc))
    return Reply.json(200, call.model_dump(exclude_none=True, include={"member"}) | {"active": call.scenario})


async def _post_timeline(admin: Admin, call: TimelineCall, query: str) -> Reply:
    if call.scenario not in admin.control.catalogue:
        return Reply.error(404, f"no scenario named {call.scenario!r}")
    try:
        changes = await admin.control.play(call.scenario)
    except ConfigError as exc:
        return Reply.error(409, str(exc))
    return Reply.json(202, {"playing": call.scenario, "changes": [vars(change) for change in changes]})


async def _delete_active(admin: Admin, call: None, query: str) -> Reply:
    await admin.control.set_active(None)
    return Reply.json(200, {"active": None, "default": admin.control.default})


async def _journal(admin: Admin, call: None, query: str) -> Reply:
    """A page of records, streamed; the cursor in `X-Chaos-Journal-Next`, a `Link` to the next page
    when more remain, and in `X-Chaos-Journal-Skipped` the records that left memory unread."""
    fields = parse_qsl(query, keep_blank_values=True)
    if len({name for name, _ in fields}) != len(fields):
        return Reply.error(400, "bad query: give each parameter once", usage=JOURNAL_USAGE)
    try:
        wanted = JournalQuery.model_validate(dict(fields))
        page = await admin.control.journal(wanted.probe, wanted.type, wanted.running, wanted.since, wanted.limit)
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in exc.errors(include_url=False)]
        return Reply.error(400, f"bad query: {'; '.join(problems)}", usage=JOURNAL_USAGE)
    except ConfigError as exc:
        return Reply.error(400, f"bad query: {exc}", usage=JOURNAL_USAGE)
    return Reply(200, b"", headers=_paging(wanted, page), chunks=_batches(page.texts))


JOURNAL_USAGE = (f"GET /journal?since=CURSOR&limit=N (1 to {MAX_LIMIT}, default {DEFAULT_LIMIT})"
                 "&probe=ID&type=TYPE&running=1; CURSOR is the last page's X-Chaos-Journal-Next")


def _paging(wanted: JournalQuery, page: JournalPage) -> tuple[tuple[str, str], ...]:
    cursor = ",".join(map(str, page.next))
    headers = [("X-Chaos-Journal-Next", cursor), ("X-Chaos-Journal-Skipped", str(page.skipped))]
    if page.more:
        query = wanted.model_dump(exclude_defaults=True, exclude={"since"}) | {"since": cursor, "limit": wanted.limit}
        headers.append(("Link", f'</journal?{urlencode(query)}>; rel="next"'))
    return tuple(headers)


def _batches(texts: list[str]) -> Iterator[bytes]:
    """The JSON list of `texts`, in chunks of BATCH records."""
    yield b"["
    for start in range(0, len(texts), BATCH):
        yield ((",\n" if start else "\n") + ",\n".join(texts[start : start + BATCH])).encode()
    yield b"\n]\n"


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/healthz"): Route(_healthz),
    ("GET", "/readyz"): Route(_readyz),
    ("GET", "/metrics"): Route(_metrics),
    ("GET", "/scenarios"): Route(_scenarios),
    ("PUT", "/active"): Route(_put_active, ActiveCall, 'send {"scenario": NAME}, or {"scenario": NAME, "member": K} for one member'),
    ("DELETE", "/active"): Route(_delete_active),
    ("POST", "/timeline"): Route(_post_timeline, TimelineCall, 'send {"scenario": NAME} naming a deploy scenario'),
    ("GET", "/journal"): Route(_journal),
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
        yield CounterMetricFamily("chaos_upstream_journal_dropped", "Journal records dropped from memory to keep "
                                  "it within --journal-memory (the file keeps them).", value=stats.journal_dropped)
        yield GaugeMetricFamily("chaos_upstream_journal_memory_bytes", "Bytes the journal's records in memory take "
                                "now, estimated.", value=stats.journal_bytes)
        yield CounterMetricFamily("chaos_upstream_journal_unwritten", "Journal records the file could not take "
                                  "(a full or failing disk).", value=stats.journal_unwritten)
        members = GaugeMetricFamily("chaos_upstream_member_listening", "1 while fleet member K listens, 0 while a "
                                    "timeline holds it down.", labels=["member"])
        for index, listening in enumerate(self.listening):
            members.add_metric([str(index)], int(listening))
        yield members
