"""Serving one connection: read requests with h11, choose scenarios, run plans, journal it all; a
connection whose first bytes are HTTP/2's preface, or whose TLS session chose h2, goes to H2Session.

Works on any trio Stream and its Transport (a socket in the server, a memory stream under MockClock
in the tests). Its loop: read a request's head (h11, with a timeout on every read), choose a
scenario, read the body (after a 100 Continue if the client waits for one), plan, execute, journal;
again while the plan kept the connection alive. Invariants: the stream is closed whatever happens; a
peer's misbehaviour ends its connection and nothing else; after raw bytes went out, h11 never sees
the connection's output.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import h11
import trio

from chaos_upstream.errors import PeerGone
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.plan import planner
from chaos_upstream.plan.request import RequestInfo
from chaos_upstream.plan.selection import Choice, choose
from chaos_upstream.plan.wirebytes import standard_reason
from chaos_upstream.records import AcceptRecord, ActionRecord, BadRequestRecord, ConnectionRecord, Record, RequestRecord
from chaos_upstream.server import timers
from chaos_upstream.server.reading import CONTINUE, Head, RequestReader
from chaos_upstream.server.transport import Transport
from chaos_upstream.server.wire import Execution, Wire, execute
from chaos_upstream.server.h2_frames import PREFACE, begins_preface
from chaos_upstream.server.h2_session import H2Session
from chaos_upstream.tls.opening import Opened, Refused, tls_fields

if TYPE_CHECKING:
    from chaos_upstream.server.upstream import Upstream


@dataclass(slots=True)
class Live:
    """An open connection as drain(), kill() and the stall reaper see it."""

    scope: trio.CancelScope
    """The connection's one scope: kill() cancels it; its deadline is a read's while one runs (the
    idle timeout: its Cancelled ends the connection), never while a response runs."""
    transport: Transport
    wire: Wire
    idle: bool = False
    """The connection waits for its next request's first byte: drain() may cancel `scope` then."""
    draining: bool = False
    """Close once the current response is out."""
    killed: bool = False
    on_drain: Callable[[], None] | None = None
    """What drain() calls instead of cancelling an idle connection (HTTP/2: a GOAWAY, then close)."""


Opening = Callable[[], Awaitable["Opened | Refused"]]
"""What opens a connection accepted on a TLS listener (tls.opening.open_tls, its arguments given)."""

Prepared = tuple[planner.Plan, float, dict[str, Any]]
"""A request ready to be answered: its plan, when the plan starts (trio time), its record's fields."""


class Connection:
    """One connection of an upstream: its wire, its number, its entry in `upstream.live`.
    `serve()` serves it until it ends, then closes and journals it."""

    __slots__ = ("upstream", "stream", "transport", "wire", "conn", "live", "requests", "opening", "tls", "scenario", "h2")

    def __init__(self, upstream: Upstream, stream: trio.abc.Stream, transport: Transport, opening: Opening | None = None) -> None:
        """`opening`, for a TLS listener: what turns the accepted socket into a TLS session (or ends
        it) before a byte of HTTP; `stream` and `transport` are the socket's until then."""
        self.upstream = upstream
        self.stream = stream
        self.transport = transport
        self.wire = Wire(stream, transport)
        self.opening = opening
        self.tls: Opened | Refused | None = None
        self.scenario: str | None = None
        """The scenario of every request that names none, when the TLS client's SNI named it."""
        self.h2: H2Session | None = None
        """The HTTP/2 session, once the connection speaks HTTP/2."""

    async def serve(self) -> None:
        upstream, stats, wire = self.upstream, self.upstream.stats, self.wire
        stats.connections += 1
        stats.open += 1
        self.conn = conn = stats.connections
        started, peer, ended, self.requests = round(upstream.now(), 6), None, "cancelled", 0
        self.live = live = upstream.live[conn] = Live(trio.CancelScope(), self.transport, wire)
        try:
            with live.scope:
                peer = self.transport.peer()
                if self.opening is not None and not await self._open(self.opening):
                    ended = self.tls.ended  # type: ignore[union-attr]  # _open says it was refused
                else:
                    on_accept = upstream.catalogue.get(self.scenario or upstream.active or upstream.settings.default)
                    if on_accept.trigger != "accept" or await self._accepted(on_accept) == "keep-alive":
                        ended = await self._converse()
                    else:
                        ended = "accept-fault"
            if live.scope.cancelled_caught:
                ended = "killed" if live.killed else "drained" if live.draining else "idle-closed"
        except OSError:
            ended = "peer-reset"
        finally:
            del upstream.live[conn]
            stats.open -= 1
            stats.bytes_in += wire.bytes_in
            stats.bytes_out += wire.bytes_out
            with trio.CancelScope(shield=True):
                await self.stream.aclose()
            upstream.journal.write(ConnectionRecord(
                t=started, conn=conn, **upstream.tag, peer=peer, ended=ended, requests=self.requests,
                t_end=round(upstream.now(), 6), bytes_in=wire.bytes_in, bytes_out=wire.bytes_out,
                **({} if self.tls is None else tls_fields(self.tls, self.wire.peer_left)),
                **({} if self.h2 is None else self.h2.facts()),
            ))

    async def _open(self, opening: Opening) -> bool:
        """Open the connection (TLS): True once it can serve HTTP, on the session's stream; False
        when it ended first (`self.tls` says how)."""
        started = trio.current_time()
        self.tls = opened = await opening()
        if opened.fault is not None:  # a TLS fault acted: journaled as a connection-level scenario's run
            upstream = self.upstream
            upstream.stats.requests[opened.fault] += 1
            ended = opened.ended if isinstance(opened, Refused) else "handshake-done"
            upstream.journal.write(AcceptRecord(
                t=round(started - upstream.origin, 6), conn=self.conn, **upstream.tag, scenario=opened.fault, rule=None,
                ended=ended, duration=round(trio.current_time() - started, 6),
            ))
        if isinstance(opened, Refused):
            return False
        self.stream, self.transport, self.scenario = opened.stream, opened.transport, opened.scenario
        self.wire = self.live.wire = Wire(opened.stream, opened.transport)
        self.live.transport = opened.transport
        return True

    async def _converse(self) -> str:
        """Serve requests on the connection until a plan, the peer or a drain after a response ends
        it: how it ended (counting the requests read in `self.requests`). The idle timeout, and a
        drain while the connection waits for a request, end it by cancelling `live.scope`.

        Strategy: the connection's one cancel scope times every read, cancelled by the timer source
        at the read's deadline unless the read is done first (timers.cancel_at): a scope per read
        costs a held connection ~0.6 KiB, and moving one scope's deadline to each read's and back
        costs ~12 us a request in trio's registration of deadlines. A drain cancels it only while
        the connection waits, reading nothing, for a request's first byte (see `Upstream.drain`).
        """
        live, wire, default_timeout = self.live, self.wire, self.upstream.settings.idle_timeout
        leftover, timeout = b"", default_timeout
        if isinstance(self.tls, Opened) and self.tls.facts.alpn == "h2":
            return await self._http2(b"", "h2")
        ended, leftover = await self._first_bytes()
        if ended:
            return ended
        if begins_preface(leftover):
            return await self._http2(leftover, "h2c" if self.tls is None else "h2")
        while leftover or not live.draining:  # bytes read are a request begun: it is served, drain or not
            reader = RequestReader(wire, leftover, self.upstream.heads)
            ended = await self.read_within(timeout, reader.read_head, idle=not leftover)
            if ended or reader.head is None:
                return ended or "peer-closed"
            self.requests += 1
            prepared = await self._prepare(self.requests, reader)
            leftover = reader.leftover
            del reader  # and with it h11's parser and the head: a plan that holds the connection keeps neither
            execution = prepared if isinstance(prepared, Execution) else await self.run_plan(RequestRecord, *prepared)
            if execution.ended != "keep-alive":
                return execution.ended
            timeout = execution.idle_close if execution.idle_close is not None else default_timeout
        await wire.close()
        return "drained"

    async def _first_bytes(self) -> tuple[str | None, bytes]:
        """The connection's first bytes, as many as tell the HTTP/2 preface from a request (or how
        the connection ended first)."""
        received = b""

        async def more() -> None:
            nonlocal received
            while True:
                data = await self.wire.receive()
                received += data
                if not data or len(received) >= len(PREFACE) or not begins_preface(received):
                    return

        ended = await self.read_within(self.upstream.settings.idle_timeout, more, idle=True)
        return (ended or (None if received else "peer-closed")), received

    async def _http2(self, received: bytes, protocol: str) -> str:
        self.h2 = H2Session(self, received, protocol)
        return await self.h2.serve()

    async def read_within(self, timeout: float, read: Callable[[], Awaitable[object]], *, idle: bool = False) -> str | None:
        """Run `read`, a part of reading a request, within `timeout` seconds (past them the timer
        source cancels the connection's scope, which ends it): None once done, else how the
        connection ended (a request the peer got wrong is answered here, and the connection closed).
        When `idle`, the connection first waits, reading nothing, until the request's first bytes
        can be read: a wait that drain() may end.

        Strategy: a drain cancels only that wait, in which no byte has been taken from the stream;
        once a read has taken some, the request is served, however close to the drain it came.
        """
        timer, due = timers.source(), trio.current_time() + timeout
        try:
            deadline = timer.cancel_at(self.live.scope, due)
            try:
                if idle:
                    await self._wait_readable()
                await read()
            finally:
                timer.forget(deadline)
        except PeerGone as gone:
            return f"peer-{gone.how}"
        except h11.RemoteProtocolError as exc:
            await self._refuse(exc.error_status_hint, str(exc))
            return "bad-request"
        return None

    async def _wait_readable(self) -> None:
        """Wait until the next request can be read, `live.idle` meanwhile (drain() may cancel the wait)."""
        self.live.idle = True
        try:
            await self.transport.wait_readable()
        finally:
            self.live.idle = False

    async def _prepare(self, count: int, reader: RequestReader) -> Prepared | Execution:
        """Choose the scenario once the head is read, read the body as it says, then plan (the
        plan's times counting from the end of the body): the plan, when it starts, and the request
        record's fields; or how the connection ended when there is nothing to run."""
        upstream = self.upstream
        settings = upstream.settings
        request: Head = reader.head  # type: ignore[assignment]  # read_head found one
        choice, head = self.choose(count, request.method, request.target, request.path, request.scenario, request.probe)
        if choice.name not in upstream.catalogue:
            fields = {**head, "t": round(upstream.now(), 6), "scenario": None}
            await self._refuse(404, f"no scenario named {choice.name!r}", partial(RequestRecord, **fields, rule=None))
            return Execution(ended="closed")
        scenario = upstream.catalogue.get(choice.name)
        if scenario.http2:
            reason = f"scenario {choice.name} is HTTP/2 only: have the proxy speak HTTP/2 to the upstream (h2c or h2)"
            await self._refuse(505, reason, partial(RequestRecord, **head, t=round(upstream.now(), 6), rule=None))
            return Execution(ended="closed")
        waiting = reader.awaits_continue()
        if waiting or not reader.complete:  # a GET's whole "body" came with its head: nothing to wait for
            body = partial(_read_body, self.wire, reader, scenario, head, waiting)
            ended = await self.read_within(settings.idle_timeout, body)
            if ended:
                return Execution(ended=ended)
        started = trio.current_time()
        head.update(t=round(started - upstream.origin, 6), body_bytes=reader.body_bytes)
        upstream.stats.requests[choice.name] += 1
        info = RequestInfo(
            method=request.method, target=request.target, headers=request.headers,
            keep_alive=reader.complete and request.keeps_alive,  # a body left unread leaves the connection unusable
            on_connection=count, ordinal=upstream.stats.requests[choice.name], path=choice.path, attempt=upstream.attempt(request.probe),
        )
        plan = upstream.plans.plan(scenario, info, upstream.rng, settings.timing, upstream.catalogue.get)
        if scenario.request_body == "record":
            head["body"] = reader.body.decode("latin-1")
        return plan, started, head

    def choose(self, seq: int, method: str, target: str, path: str, named: str | None, probe: str | None) -> tuple[Choice, dict[str, Any]]:
        """The scenario of the connection's `seq`th request (over HTTP/2, a stream's), and its
        record's fields so far: the one place both protocols choose (selection.choose)."""
        upstream, settings = self.upstream, self.upstream.settings
        choice = choose(path, named, active=self.scenario or upstream.active, mix=settings.mix, default=settings.default, rng=upstream.rng)
        return choice, {
            "conn": self.conn, **upstream.tag, "seq": seq, "method": method, "target": target,
            "scenario": choice.name, "chosen_by": choice.source, "probe": probe,
        }

    async def _accepted(self, scenario: Scenario) -> str:
        """Run an accept-triggered scenario before reading a byte; how it ended."""
        upstream = self.upstream
        started = trio.current_time()
        fields = {"t": round(started - upstream.origin, 6), "conn": self.conn, **upstream.tag, "scenario": scenario.name}
        upstream.stats.requests[scenario.name] += 1
        plan = upstream.plans.plan(scenario, None, upstream.rng, upstream.settings.timing, upstream.catalogue.get)
        return (await self.run_plan(AcceptRecord, plan, started, fields)).ended

    async def run_plan(
        self, kind: type[RequestRecord | AcceptRecord], plan: planner.Plan, started: float, fields: dict[str, Any],
        run: Callable[[Execution], Awaitable[None]] | None = None,
    ) -> Execution:
        """Execute `plan` (on the wire; or with `run`, an HTTP/2 stream's executor) and journal a
        `kind` of record with `fields` and what was done, even when cut short (while it runs,
        readers of running records see what was done so far).

        Strategy: the record is made once, at the end, from `fields` and the plan: a held request
        keeps one small dict (at most ten entries), not a running record object or partials of one."""
        upstream = self.upstream
        execution = Execution()
        upstream.journal.begin(id(execution), partial(_record, kind, fields, plan, execution.log, running=True))
        try:
            await (run or partial(execute, plan, self.wire, started, upstream.now))(execution)
        finally:
            ended = "cancelled" if execution.ended == "running" else execution.ended
            duration = round(trio.current_time() - started, 6)
            upstream.stats.endings[plan.scenario, ended] += 1
            record = _record(kind, fields, plan, execution.log, ended=ended, duration=duration)
            upstream.journal.write(record, key=id(execution))
        return execution

    async def _refuse(self, status: int, reason: str, record: Callable[..., Record] | None = None) -> None:
        """Answer a request we cannot serve with a plain-text error, and close; journal the `record`
        made with the error (a bad-request record without one)."""
        upstream = self.upstream
        body = f"chaos-upstream: {reason}\n".encode("latin-1", "replace")
        head = f"HTTP/1.1 {status} {standard_reason(status)}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        try:
            await self.wire.send(head.encode("latin-1") + body)
            await self.wire.close()
        except PeerGone:
            pass
        upstream.stats.bad_requests += 1
        record = record or partial(BadRequestRecord, t=round(upstream.now(), 6), conn=self.conn, **upstream.tag)
        upstream.journal.write(record(error=reason, status=status, ended="closed"))


def _record(
    kind: type[RequestRecord | AcceptRecord], fields: dict[str, Any], plan: planner.Plan, log: list[ActionRecord], **end: Any
) -> Record:
    """The record of a plan's run from its `fields`, its plan and what it has done so far, with how
    it `end`ed (or `running=True`: a partial of this, not a closure, is what a held request keeps
    for readers of running records, half the bytes)."""
    return kind(**fields, rule=plan.rule, response=plan.response, actions=tuple(log), **end)


async def _read_body(wire: Wire, reader: RequestReader, scenario: Scenario, record: dict[str, Any], waiting: bool) -> None:
    """Read the body, after a 100 Continue if the client is `waiting` for one, unless the scenario
    withholds it: then its response goes first and the body is never read. Notes which in `record`
    (the request record's fields)."""
    if waiting:
        withhold = scenario.on_expect == "withhold"
        record["continue_"] = "withheld" if withhold else "sent"
        if withhold:
            return
        await wire.send(CONTINUE)
    await reader.read_body()

