"""The upstream server: listens, hands each accepted socket to the connection handler, stops.

Its settings and running totals, its listeners (or bound sockets that refuse every connection), and
the open connections that drain() and kill() end. Serving one connection is `connection`'s job,
opening listeners and accepting `accepting`'s, what only a socket can do `transport`'s.
Invariants: every accepted socket is closed whatever happens; a stop closes every listener.
"""

from __future__ import annotations

import contextlib
import random
from functools import partial
from collections import Counter
from dataclasses import dataclass, field
from collections.abc import Coroutine
from typing import Any

import trio

from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.plan.cache import PlanCache
from chaos_upstream.plan.selection import Mix
from chaos_upstream.server.accepting import accept_forever, bound_sockets, open_listeners
from chaos_upstream.server.connection import Connection, Live
from chaos_upstream.server.journal import Journal
from chaos_upstream.server.reading import KnownHeads
from chaos_upstream.server.stalls import cut_stalled
from chaos_upstream.server.transport import SocketTransport
from chaos_upstream.tls.contexts import Contexts
from chaos_upstream.tls.opening import open_tls

IDLE_TIMEOUT = 120.0
"""Seconds a connection may sit idle or mid-head, and one send may wait for a peer that does not
read: longer than nginx's (60 s) and HAProxy's usual upstream keep-alive, so it is the proxy, never
us, that closes an idle connection unless a scenario says otherwise."""

ATTEMPTS_KEPT = 10_000
"""Probe ids whose attempts an upstream counts (the oldest forgotten first): ~1 MiB at most."""

GRACE = 5.0
"""Seconds in-flight connections get to finish after a stop (SIGTERM) before they are cut."""

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
    tls: Contexts | None = None
    """Serve every connection over TLS with these contexts (serve --tls); None: plain HTTP."""


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
        self, catalogue: Catalogue, settings: Settings | None = None, journal: Journal | None = None, stats: Stats | None = None,
        listeners: list[trio.SocketListener] | None = None,
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
        self.rng = random.Random(self.settings.seed)
        self.plans = PlanCache()
        """Plans of the scenarios that plan the same for every request of a kind, made once."""
        self.heads = KnownHeads()
        """Request heads parsed already, by their bytes: the same request is not parsed again."""
        tags = {"worker": self.settings.worker, "member": self.settings.member}
        self.tag = {name: value for name, value in tags.items() if value is not None}
        """What tags every journal record of this upstream (its worker, its fleet member)."""
        self.origin = 0.0
        """The trio time the journal's "t" counts from (set by run())."""
        self.live: dict[int, Live] = {}
        """Open connections by number, for drain(), kill() and the stall reaper."""
        self._accept_scope = trio.CancelScope()
        self._listeners = listeners
        """Listening sockets handed over by the incarnation before (a hot restart), else None: run() opens its own."""
        self._handing_over = False
        self._attempts: dict[str, int] = {}

    def attempt(self, probe: str | None) -> int:
        """The ordinal of a request carrying the probe id `probe` among those that did (1 without
        one): a proxy's retry of a probe is its attempt 2. The last ATTEMPTS_KEPT ids are counted."""
        if probe is None:
            return 1
        count = self._attempts[probe] = self._attempts.pop(probe, 0) + 1
        if len(self._attempts) > ATTEMPTS_KEPT:
            del self._attempts[next(iter(self._attempts))]
        return count

    def now(self) -> float:
        """Seconds since the origin (the upstream's start, unless its settings give one): the journal's clock."""
        return trio.current_time() - self.origin

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, report the bound addresses through task_status, serve until stop()."""
        self.origin = trio.current_time() if self.settings.origin is None else self.settings.origin
        refusing = self.catalogue.get(self.settings.default).trigger == "refuse"
        host, port = self.settings.host, self.settings.port
        try:
            if refusing:
                sockets = await bound_sockets(host, port, reuse_port=False)
            else:
                listeners = self._listeners or await open_listeners(host, port, reuse_port=self.settings.reuse_port)
                self._listeners = listeners
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
                        acceptors.start_soon(cut_stalled, self.live, self.settings.idle_timeout)
                        self.accepting = True
                        task_status.started(self.addresses)
            finally:
                self.accepting = False
                for listener in listeners if not self._handing_over else ():
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

    async def hand_over(self) -> list[trio.SocketListener]:
        """Stop accepting and give the listening sockets, still open, to the next incarnation (a hot
        restart): a connection that comes meanwhile waits in their backlog, neither refused nor
        reset; then drain() or kill() this one's connections."""
        self._handing_over = True
        self.stop()
        await self.closed.wait()
        return self._listeners or []

    def stop(self) -> None:
        """Stop accepting; in-flight connections get the grace period, then are cut."""
        self._accept_scope.cancel()

    def drain(self) -> None:
        """Stop accepting, as a server shutting down gracefully does: idle keep-alive connections
        are closed (FIN) at once, busy ones after their current response."""
        self.stop()
        for live in self.live.values():
            live.draining = True
            if live.on_drain is not None:
                live.on_drain()
            elif live.idle and not live.transport.pending():
                live.scope.cancel()

    def kill(self) -> None:
        """Stop accepting and reset (RST) every open connection at once, as a crashed server's kernel does."""
        self.stop()
        for live in self.live.values():
            live.killed = True
            with contextlib.suppress(OSError):  # a connection its plan just closed has no socket left to reset
                live.transport.arm_reset()
            live.scope.cancel()

    async def _accept_loop(self, listener: trio.SocketListener, handlers: trio.Nursery) -> None:
        await accept_forever(listener, handlers, self._connection)

    def _connection(self, stream: trio.SocketStream) -> Coroutine[Any, Any, None]:
        """The task serving one accepted connection (no coroutine of its own around it: a held
        connection keeps every frame of its await chain); over TLS, opened first by `open_tls`
        with the scenario the connection has when its SNI names none."""
        contexts, opening = self.settings.tls, None
        if contexts is not None:
            own = self.active or self.settings.default
            opening = partial(open_tls, stream, contexts, lookup=self.catalogue.find, own=own, timeout=self.settings.idle_timeout)
        return Connection(self, stream, SocketTransport(stream), opening).serve()
