"""Executing plans on a byte stream: sends, waits and endings, exactly and in order.

Works on any trio Stream and its Transport (a socket in the server, a memory stream under MockClock
in the tests), which does what only a socket can: a reset, a wait for bytes that reads none, a send
that does not wait. Invariants: every peer failure surfaces as PeerGone, never as a trio exception,
a peer that stops reading included (after the send timeout); every action run is logged with its
time.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from chaos_upstream.errors import PeerGone
from chaos_upstream.plan.actions import Close, HalfClose, Hang, KeepAlive, Plan, Reset, Send, Wait
from chaos_upstream.records import ActionRecord
from chaos_upstream.server import timers
from chaos_upstream.server.transport import Transport

RECEIVE_SIZE = 65536
"""Bytes per read: one trio read of a full socket buffer's worth."""


def _peer_gone(exc: BaseException) -> PeerGone:
    """Translate a trio stream failure into PeerGone, telling a reset from an orderly close."""
    cause = exc.__cause__ or exc.__context__
    reset = isinstance(cause, OSError) and cause.errno == errno.ECONNRESET
    return PeerGone("reset" if reset else "closed")


class Wire:
    """One connection: counts bytes both ways, turns peer failures into PeerGone, knows how to end."""

    __slots__ = ("stream", "transport", "bytes_in", "bytes_out", "sending_since", "peer_left", "_stalled")

    def __init__(self, stream: trio.abc.Stream, transport: Transport) -> None:
        self.stream = stream
        self.transport = transport
        self.bytes_in = 0
        self.bytes_out = 0
        self.sending_since: float | None = None
        """When (trio time) the send in progress began; None between sends. A send waits as long as
        the peer reads nothing: whoever watches this may `stall()` the connection."""
        self.peer_left: BaseException | bool | None = None
        """How a read found the peer gone: True at the end of its stream (over TLS: its
        close_notify), else what the read raised; None while it has not left."""
        self._stalled = False

    async def send(self, data: bytes) -> None:
        self.sending_since = trio.current_time()
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise (PeerGone("stalled") if self._stalled else _peer_gone(exc)) from exc
        finally:
            self.sending_since = None
        self.bytes_out += len(data)

    async def send_at(self, deadline: float, data: bytes, now: Callable[[], float]) -> tuple[float, int]:
        """At `deadline` (trio time), put what the connection takes of `data` at once on the wire as
        the timer source fires (transport.send_now), before any task it wakes runs: a send due with a
        thousand others goes out on time, not after their work. When it fired, as `now` tells it,
        and the bytes taken (the rest is the caller's to send())."""
        taken, fired = 0, 0.0

        def on_time() -> None:
            nonlocal taken, fired
            taken, fired = self.transport.send_now(data), round(now(), 6)
            self.bytes_out += taken

        await timers.sleep_until(deadline, on_time)
        return fired, taken

    async def stall(self) -> None:
        """Reset the connection of a peer that stopped reading (what is queued would never be read):
        the send waiting for it ends in PeerGone("stalled")."""
        self._stalled = True
        await self.reset()

    async def receive(self) -> bytes:
        """The next bytes from the peer; b"" once it has closed its side."""
        try:
            data = await self.stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.peer_left = exc
            raise (PeerGone("stalled") if self._stalled else _peer_gone(exc)) from exc
        if not data:
            self.peer_left = True
        self.bytes_in += len(data)
        return data

    async def drain(self, limit: float | None) -> str:
        """Read and discard until the peer closes ("peer-closed") or `limit` passes ("limit").

        Strategy: a connection held this way waits in the transport's wait_readable, not in a read
        (trio's read machinery, waiting, keeps ~1.5 KiB more), and with no limit, in no cancel scope
        (~0.5 KiB)."""
        with trio.move_on_after(limit) if limit is not None else contextlib.nullcontext():
            while True:
                await self.transport.wait_readable()
                if not await self.receive():
                    return "peer-closed"
        return "limit"

    async def send_eof(self) -> None:
        """FIN on our side only; the peer may still send."""
        try:
            await self.transport.half_close()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _peer_gone(exc) from exc

    async def close(self, close_notify: bool = True) -> None:
        """End in order (the transport's close; over TLS, with a close_notify unless told not to):
        a peer already gone is no reason to fail."""
        await self.transport.close(close_notify)

    async def reset(self) -> None:
        """RST now."""
        self.transport.arm_reset()
        await self.stream.aclose()


@dataclass(slots=True)
class Execution:
    """What running a plan did: its log of actions with times, and how it ended."""

    ended: str = "running"
    """keep-alive, closed, reset, half-closed/hung (with how the peer left), peer-closed or peer-reset."""
    log: list[ActionRecord] = field(default_factory=list)
    idle_close: float | None = None
    """With keep-alive: close the connection after this many idle seconds (None: the server's default)."""


async def execute(plan: Plan, wire: Wire, origin: float, now: Callable[[], float], execution: Execution) -> None:
    """Run `plan` on `wire`, logging into `execution` as it goes (so a cancelled run keeps its log).

    Wait offsets count from `origin` (trio time); `now` stamps the log. A peer that leaves mid-plan
    ends it with `peer-closed` or `peer-reset`: never an error.
    """
    actions, log, index = plan.actions, execution.log, 0
    try:
        while index < len(actions):
            action = actions[index]
            after = actions[index + 1] if index + 1 < len(actions) else None
            if type(action) is Wait and type(after) is Send:  # the send is the timer's, not the woken task's
                data = after.data  # type: ignore[union-attr]
                fired, taken = await wire.send_at(origin + action.until, data, now)
                log.append(ActionRecord("wait", fired))
                if taken < len(data):
                    await wire.send(data[taken:])
                log.append(ActionRecord("send", fired if taken == len(data) else round(now(), 6), len(data)))
                index += 2
                continue
            name, run = ACTION_RUNNERS[type(action)]
            ended = await run(action, wire, origin)
            log.append(ActionRecord(name, round(now(), 6), len(action.data) if type(action) is Send else None))
            execution.ended = ended or execution.ended
            index += 1
    except PeerGone as gone:
        execution.ended = f"peer-{gone.how}"
    if isinstance(plan.terminal, KeepAlive):
        execution.idle_close = plan.terminal.idle_close


async def _send(action: Send, wire: Wire, origin: float) -> None:
    await wire.send(action.data)


async def _wait(action: Wait, wire: Wire, origin: float) -> None:
    await timers.sleep_until(origin + action.until)


async def _keep_alive(action: KeepAlive, wire: Wire, origin: float) -> str:
    return "keep-alive"


async def _close(action: Close, wire: Wire, origin: float) -> str:
    await wire.close(action.close_notify)
    return "closed"


async def _reset(action: Reset, wire: Wire, origin: float) -> str:
    await wire.reset()
    return "reset"


async def _half_close(action: HalfClose, wire: Wire, origin: float) -> str:
    await wire.send_eof()
    return "half-closed, " + await wire.drain(action.limit)


async def _hang(action: Hang, wire: Wire, origin: float) -> str:
    return "hung, " + await wire.drain(action.limit)


ACTION_RUNNERS: dict[type, tuple[str, Callable[[Any, Wire, float], Awaitable[str | None]]]] = {
    Send: ("send", _send),
    Wait: ("wait", _wait),
    KeepAlive: ("keep-alive", _keep_alive),
    Close: ("close", _close),
    Reset: ("reset", _reset),
    HalfClose: ("half-close", _half_close),
    Hang: ("hang", _hang),
}
"""Action type -> (its name in the journal, how to run it); a test checks every action has one."""
