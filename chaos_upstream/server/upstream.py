"""The upstream server: accepts connections, parses requests with h11, runs plans, journals it all.

The only module that touches sockets. Its per-connection loop: read a request's head (h11, with a
timeout on every read), choose a scenario, read the body (after a 100 Continue if the client waits
for one), plan, execute, journal; again while the plan kept the connection alive. Invariants: every
accepted socket is closed whatever happens; a peer's misbehaviour ends its connection and nothing
else; after raw bytes went out, h11 never sees the connection's output.
"""

from __future__ import annotations

import contextlib
import math
import random
import select
import socket
import struct
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import h11
import trio

from chaos_upstream.errors import PeerGone
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.plan import planner
from chaos_upstream.plan.cache import PlanCache
from chaos_upstream.plan.request import RequestInfo
from chaos_upstream.plan.selection import PROBE_HEADER, SCENARIO_HEADER, Mix, choose
from chaos_upstream.plan.wirebytes import standard_reason
from chaos_upstream.server.accepting import accept_forever
from chaos_upstream.server.journal import Journal
from chaos_upstream.server.reading import CONTINUE, RequestReader, keep_alive
from chaos_upstream.server.wire import Execution, Wire, execute

IDLE_TIMEOUT = 120.0
"""Seconds a connection may sit idle or mid-head, and one send may wait for a peer that does not
read: longer than nginx's (60 s) and HAProxy's usual upstream keep-alive, so it is the proxy, never
us, that closes an idle connection unless a scenario says otherwise."""

STALL_CHECKS = 4
"""Looks per idle timeout for sends waiting on a peer that reads nothing: such a send is cut between
1 and 1.25 idle timeouts after it began."""

GRACE = 5.0
"""Seconds in-flight connections get to finish after a stop (SIGTERM) before they are cut."""

BACKLOG = 1024
"""Listen backlog: room for a burst of a thousand proxy connections (Linux caps it at somaxconn)."""


@dataclass
class Settings:
    """How an Upstream serves."""

    host: str = "127.0.0.1"
    port: int = 8080
    timing: Timing = field(default_factory=Timing)
    default: str = "healthy"
    mix: Mix | None = None
    seed: int | None = None
    idle_timeout: float = IDLE_TIMEOUT
    grace: float = GRACE
    reuse_port: bool = False
    worker: int | None = None
    """This process's index among `serve --workers N`; tags every journal record."""
    member: int | None = None
    """This upstream's index in its fleet; tags every journal record."""
    origin: float | None = None
    """The trio time the journal's "t" counts from; None: this upstream's own start. A fleet
    member's incarnations share one, so that its records keep one clock across restarts."""


@dataclass
class Stats:
    """Running totals since start, for metrics: written by the server, read by the admin API."""

    connections: int = 0
    open: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    bad_requests: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    """Requests per scenario; also the ordinals that rules match on."""
    endings: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Requests per (scenario, how the request ended)."""
    journal_dropped: int = 0
    """Journal records that left memory to keep it within its bounds (see `of_journal`)."""
    journal_bytes: int = 0
    """Bytes the journal's records in memory take now, estimated."""
    journal_unwritten: int = 0
    """Journal records its file could not take (a full or failing disk)."""

    @classmethod
    def of_journal(cls, journal: Journal) -> Stats:
        """A journal's counts, to add once per journal to the totals of the servers writing to it
        (the members of a fleet share one; each worker has its own)."""
        return cls(journal_dropped=journal.dropped, journal_bytes=journal.held, journal_unwritten=journal.unwritten)

    def to_json(self) -> dict[str, Any]:
        totals = {name: getattr(self, name) for name in TOTALS}
        return {**totals, "requests": dict(self.requests), "endings": [[*key, n] for key, n in self.endings.items()]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stats:
        endings = Counter({(scenario, ended): n for scenario, ended, n in data["endings"]})
        return cls(**{name: data[name] for name in TOTALS}, requests=Counter(data["requests"]), endings=endings)

    def __add__(self, other: Stats) -> Stats:
        totals = {name: getattr(self, name) + getattr(other, name) for name in TOTALS}
        return Stats(**totals, requests=self.requests + other.requests, endings=self.endings + other.endings)


TOTALS = (
    "connections", "open", "bytes_in", "bytes_out", "bad_requests", "journal_dropped", "journal_bytes", "journal_unwritten",
)
"""The plain counts of Stats, which add up across workers (and across journals: each is counted once)."""


class Upstream:
    """A running chaos upstream. Start it with `await nursery.start(upstream.run)`."""

    def __init__(
        self, catalogue: Catalogue, settings: Settings | None = None, journal: Journal | None = None, stats: Stats | None = None
    ):
        self.catalogue = catalogue
        self.settings = settings or Settings()
        self.journal = journal or Journal()
        self.active: str | None = None
        """The scenario for requests that name none, when set (the admin API's switch)."""
        self.stats = stats or Stats()
        """Running totals; a fleet member hands the same one to each of its incarnations."""
        self.addresses: list[tuple[str, int]] = []
        self.accepting = False
        """True while the listeners accept connections (the admin API's readiness)."""
        self.closed = trio.Event()
        """Set once the listeners are closed after stop(): new connections are refused from then on."""
        self._rng = random.Random(self.settings.seed)
        self._plans = PlanCache()
        """Plans of the scenarios that plan the same for every request of a kind, made once."""
        tags = {"worker": self.settings.worker, "member": self.settings.member}
        self._tag = {name: value for name, value in tags.items() if value is not None}
        self._origin = 0.0
        self._accept_scope = trio.CancelScope()
        self._live: dict[int, _Live] = {}
        """Open connections by id, for drain() and kill()."""

    def now(self) -> float:
        """Seconds since the origin (the upstream's start, unless its settings give one): the journal's clock."""
        return trio.current_time() - self._origin

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, report the bound addresses through task_status, serve until stop()."""
        self._origin = trio.current_time() if self.settings.origin is None else self.settings.origin
        refusing = self.catalogue.get(self.settings.default).trigger == "refuse"
        host, port = self.settings.host, self.settings.port
        try:
            if refusing:
                sockets = await bound_sockets(host, port, reuse_port=False)
            else:
                listeners = await open_listeners(host, port, reuse_port=self.settings.reuse_port)
        except OSError as exc:  # say where: a fleet has several addresses
            raise OSError(exc.errno, exc.strerror, f"{host}:{port}") from exc
        if refusing:
            await self._refuse_connections(sockets, task_status)
            return
        self.addresses = [listener.socket.getsockname()[:2] for listener in listeners]
        async with trio.open_nursery() as handlers:
            try:
                with self._accept_scope:
                    async with trio.open_nursery() as acceptors:
                        for listener in listeners:
                            acceptors.start_soon(self._accept_loop, listener, handlers)
                        acceptors.start_soon(self._cut_stalled)
                        self.accepting = True
                        task_status.started(self.addresses)
            finally:
                self.accepting = False
                for listener in listeners:
                    listener.socket.close()
                self.closed.set()
            handlers.cancel_scope.deadline = trio.current_time() + self.settings.grace

    async def _refuse_connections(self, sockets: list[trio.socket.SocketType], task_status: Any) -> None:
        """Hold the addresses bound but not listening, until stop(): the kernel refuses every connection."""
        try:
            self.addresses = [sock.getsockname()[:2] for sock in sockets]
            with self._accept_scope:
                task_status.started(self.addresses)
                await trio.sleep_forever()
        finally:
            for sock in sockets:
                sock.close()

    def stop(self) -> None:
        """Stop accepting; in-flight connections get the grace period, then are cut."""
        self._accept_scope.cancel()

    def drain(self) -> None:
        """Stop accepting, as a server shutting down gracefully does: idle keep-alive connections
        are closed (FIN) at once, busy ones after their current response."""
        self.stop()
        for live in self._live.values():
            live.draining = True
            if live.idle is not None and not _pending(live.stream):
                live.cut_idle = True
                live.idle.cancel()

    def kill(self) -> None:
        """Stop accepting and reset (RST) every open connection at once, as a crashed server's kernel does."""
        self.stop()
        for live in self._live.values():
            live.killed = True
            with contextlib.suppress(OSError):  # a connection its plan just closed has no socket left to reset
                _abort_on_close(live.stream)
            live.scope.cancel()

    async def _cut_stalled(self) -> None:
        """Reset each connection whose send has waited longer than the idle timeout for a peer that
        reads nothing, looking every STALL_CHECKS-th of it: such a peer holds its descriptor no
        longer than one that never writes.

        Strategy: one watch over every connection, not a cancel scope around every send, which
        cost a tenth of the healthy path's throughput.
        """
        timeout = self.settings.idle_timeout
        while True:
            await trio.sleep(timeout / STALL_CHECKS)
            now = trio.current_time()
            for live in list(self._live.values()):
                since = live.wire.sending_since
                if since is not None and now - since > timeout:
                    with contextlib.suppress(OSError):  # its plan has just closed it
                        await live.wire.stall()

    async def _accept_loop(self, listener: trio.SocketListener, handlers: trio.Nursery) -> None:
        await accept_forever(listener, handlers, self._connection)

    async def _connection(self, stream: trio.SocketStream) -> None:
        self.stats.connections += 1
        self.stats.open += 1
        conn = self.stats.connections
        record: dict[str, Any] = {"type": "connection", "conn": conn, "t": round(self.now(), 6), **self._tag}
        wire = Wire(stream, lambda: _reset(stream))
        live = self._live[conn] = _Live(trio.CancelScope(), stream, wire)
        try:
            with live.scope:
                record["peer"] = "%s:%d" % stream.socket.getpeername()[:2]
                on_accept = self.catalogue.get(self.active or self.settings.default)
                if on_accept.trigger != "accept" or await self._accepted(wire, conn, on_accept) == "keep-alive":
                    record.update(await self._converse(wire, live, conn))
                else:
                    record.update(ended="accept-fault", requests=0)
            if live.scope.cancelled_caught:
                record["ended"] = "killed" if live.killed else "drained"
        except OSError:
            record["ended"] = "peer-reset"
        finally:
            del self._live[conn]
            record.update(t_end=round(self.now(), 6), bytes_in=wire.bytes_in, bytes_out=wire.bytes_out)
            self.stats.open -= 1
            self.stats.bytes_in += wire.bytes_in
            self.stats.bytes_out += wire.bytes_out
            record.setdefault("ended", "cancelled")
            with trio.CancelScope(shield=True):
                await stream.aclose()
            self.journal.write(record)

    async def _converse(self, wire: Wire, live: _Live, conn: int) -> dict[str, Any]:
        """Serve requests on one connection until a plan, the peer, a timeout or a drain ends it.

        Strategy: one cancel scope (`reading`) times every read of the connection, its deadline
        moved to each read's and back to never while a response runs: entering and leaving a scope
        per read costs twice what moving one scope's deadline does (about 8 against 4 us). A drain
        cancels it only while the connection waits, reading nothing, for a request's first byte
        (see `drain`); the idle timeout, its deadline; either way the conversation ends there.
        """
        leftover, timeout, count = b"", self.settings.idle_timeout, 0
        with trio.CancelScope() as reading:
            while not live.draining:
                reader = RequestReader(wire, leftover)
                ended = await self._reading(wire, conn, reading, timeout, reader.read_head, None if leftover else live)
                if ended or reader.head is None:
                    return {"ended": ended or "peer-closed", "requests": count}
                count += 1
                execution = await self._respond(wire, conn, count, reader, reading)
                if execution.ended != "keep-alive":
                    return {"ended": execution.ended, "requests": count}
                leftover = reader.leftover
                timeout = execution.idle_close if execution.idle_close is not None else self.settings.idle_timeout
        await wire.close()
        return {"ended": "idle-closed" if reading.cancelled_caught and not live.cut_idle else "drained", "requests": count}

    async def _reading(
        self, wire: Wire, conn: int, reading: trio.CancelScope, timeout: float, read: Callable[[], Awaitable[object]],
        idle: _Live | None = None,
    ) -> str | None:
        """Run `read`, a part of reading a request, within `timeout` seconds (`reading`'s deadline
        meanwhile: past it, its Cancelled ends the conversation): None once done, else how the
        connection ended (a request the peer got wrong is answered here, and the connection closed).
        With `idle`, its connection first waits, reading nothing, until the request's first bytes
        can be read: a wait that drain() may end.

        Strategy: a drain cancels only that wait, in which no byte has been taken from the kernel;
        once a read has taken some, the request is served, however close to the drain it came.
        """
        try:
            reading.deadline = trio.current_time() + timeout
            try:
                if idle is not None:
                    await _wait_readable(idle, reading)
                await read()
            finally:
                reading.deadline = math.inf
        except PeerGone as gone:
            return f"peer-{gone.how}"
        except h11.RemoteProtocolError as exc:
            await self._refuse(wire, conn, exc.error_status_hint, str(exc))
            return "bad-request"
        return None

    async def _respond(self, wire: Wire, conn: int, count: int, reader: RequestReader, reading: trio.CancelScope) -> Execution:
        """Choose the scenario once the head is read, read the body as it says, then plan and run
        (the plan's times counting from the end of the body)."""
        info = _request_info(reader.head, count)  # type: ignore[arg-type]  # read_head found one
        choice = choose(
            info.target,
            info.header(SCENARIO_HEADER),
            active=self.active,
            mix=self.settings.mix,
            default=self.settings.default,
            rng=self._rng,
        )
        record: dict[str, Any] = {
            "type": "request",
            "t": round(self.now(), 6),
            "conn": conn,
            **self._tag,
            "seq": count,
            "method": info.method,
            "target": info.target,
            "scenario": choice.name,
            "chosen_by": choice.source,
            "probe": info.header(PROBE_HEADER),
            "body_bytes": 0,
        }
        if choice.name not in self.catalogue:
            record["scenario"] = None
            await self._refuse(wire, conn, 404, f"no scenario named {choice.name!r}", record)
            return Execution(ended="closed")
        scenario = self.catalogue.get(choice.name)
        waiting = reader.awaits_continue()
        if waiting or not reader.complete:  # a GET's whole "body" came with its head: nothing to wait for
            body = partial(_read_body, wire, reader, scenario, record, waiting)
            ended = await self._reading(wire, conn, reading, self.settings.idle_timeout, body)
            if ended:
                return Execution(ended=ended)
        started = trio.current_time()
        record.update(t=round(started - self._origin, 6), body_bytes=reader.body_bytes)
        self.stats.requests[choice.name] += 1
        keep_alive = info.keep_alive and reader.complete  # a body left unread leaves the connection unusable
        info = RequestInfo(  # not dataclasses.replace, which inspects the fields each time
            method=info.method, target=info.target, headers=info.headers, keep_alive=keep_alive,
            on_connection=count, ordinal=self.stats.requests[choice.name], path=choice.path,
        )
        plan = self._plans.plan(scenario, info, self._rng, self.settings.timing, self.catalogue.get)
        if scenario.request_body == "record":
            record["body"] = reader.body.decode("latin-1")
        return await self._run(plan, wire, started, record)

    async def _accepted(self, wire: Wire, conn: int, scenario: Scenario) -> str:
        """Run an accept-triggered scenario before reading a byte; how it ended."""
        started = trio.current_time()
        record = {"type": "accept", "t": round(started - self._origin, 6), "conn": conn, **self._tag, "scenario": scenario.name}
        self.stats.requests[scenario.name] += 1
        plan = self._plans.plan(scenario, None, self._rng, self.settings.timing, self.catalogue.get)
        return (await self._run(plan, wire, started, record)).ended

    async def _run(self, plan: planner.Plan, wire: Wire, started: float, record: dict[str, Any]) -> Execution:
        """Execute `plan` and journal `record` with what was done, even when cut short."""
        execution = Execution()
        record.update(rule=plan.rule, response=vars(plan.response).copy(), actions=execution.log)
        self.journal.begin(record)
        try:
            await execute(plan, wire, started, self.now, execution)
        finally:
            ended = "cancelled" if execution.ended == "running" else execution.ended
            duration = round(trio.current_time() - started, 6)
            record.update(ended=ended, duration=duration)
            self.stats.endings[plan.scenario, ended] += 1
            self.journal.write(record)
        return execution

    async def _refuse(self, wire: Wire, conn: int, status: int, reason: str, record: dict[str, Any] | None = None) -> None:
        """Answer a request we cannot serve with a plain-text error, and close."""
        body = f"chaos-upstream: {reason}\n".encode("latin-1", "replace")
        head = f"HTTP/1.1 {status} {standard_reason(status)}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        try:
            await wire.send(head.encode("latin-1") + body)
            await wire.close()
        except PeerGone:
            pass
        self.stats.bad_requests += 1
        entry = record or {"type": "bad-request", "t": round(self.now(), 6), "conn": conn, **self._tag}
        entry.update(error=reason, status=status, ended="closed")
        self.journal.write(entry)


@dataclass
class _Live:
    """An open connection as drain() and kill() see it."""

    scope: trio.CancelScope
    stream: trio.SocketStream
    wire: Wire
    idle: trio.CancelScope | None = None
    """While the connection waits for its next request's first byte: the scope timing its reads,
    which drain() cancels (its deadline is then the idle timeout's)."""
    draining: bool = False
    """Close once the current response is out."""
    cut_idle: bool = False
    """drain() cut the wait for a next request (its cancel, not the idle timeout, ended the reads)."""
    killed: bool = False


def _pending(stream: trio.SocketStream) -> bool:
    """Whether bytes (or the peer's FIN) wait unread in the kernel: a request that has arrived is
    served by a draining server, not cut. poll, not select: select fails on fds past 1023."""
    poller = select.poll()
    try:
        poller.register(stream.socket.fileno(), select.POLLIN)
    except (OSError, ValueError):  # closed meanwhile
        return False
    return bool(poller.poll(0))  # readable, or hung up, or failed: there is something to read


async def _wait_readable(live: _Live, scope: trio.CancelScope) -> None:
    """Wait until `live`'s next request can be read, as `live.idle` (`scope`) for drain() to cancel."""
    live.idle = scope
    try:
        await trio.lowlevel.wait_readable(live.stream.socket)
    finally:
        live.idle = None


async def _read_body(wire: Wire, reader: RequestReader, scenario: Scenario, record: dict[str, Any], waiting: bool) -> None:
    """Read the body, after a 100 Continue if the client is `waiting` for one, unless the scenario
    withholds it: then its response goes first and the body is never read. Notes which in `record`."""
    if waiting:
        withhold = scenario.on_expect == "withhold"
        record["continue"] = "withheld" if withhold else "sent"
        if withhold:
            return
        await wire.send(CONTINUE)
    await reader.read_body()


def _request_info(head: h11.Request, on_connection: int) -> RequestInfo:
    headers = tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in head.headers)
    return RequestInfo(
        method=head.method.decode("latin-1"),
        target=head.target.decode("latin-1"),
        headers=headers,
        keep_alive=keep_alive(head),
        on_connection=on_connection,
    )


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


def _abort_on_close(stream: trio.SocketStream) -> None:
    """SO_LINGER with a zero timeout: closing the socket then resets the connection (RST)."""
    stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def _reset(stream: trio.SocketStream) -> None:
    """RST now."""
    _abort_on_close(stream)
    await stream.aclose()
