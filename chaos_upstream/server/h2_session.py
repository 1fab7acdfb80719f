"""Serving HTTP/2 on a connection (h2c after its preface, h2 after ALPN): the `h2` library keeps the
protocol's state; frames it would refuse to send (RST_STREAM on a closed stream, GOAWAY kept apart
from its state, any raw frame) are written as exact bytes, in order with its own.

Each request's stream is a task: its scenario is chosen from its headers, its plan (plan.h2_planner)
runs once its body has come, and its record (a request record with its stream id) is journaled as
over HTTP/1.1. Invariants: every write goes out whole and in the order it was made (h2_writer); a stream the peer resets, or
a connection that ends, ends every plan on it and journals it with how; a peer breaking the protocol
gets GOAWAY with the error's code and loses only its connection, one opening a stream too many or
past a GOAWAY we sent gets that stream refused (RST_STREAM(REFUSED_STREAM)); the idle timeout bounds
every wait on the peer (an idle connection, a request body that stops coming, a window that never
opens), as over HTTP/1.1.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack.exceptions
import trio

from chaos_upstream.errors import PeerGone
from chaos_upstream.model.h2_steps import ERROR_CODES
from chaos_upstream.plan.actions import Close, Hang, Plan, Reset, Wait
from chaos_upstream.plan.h2_actions import Data, Frame, GoAway, Headers, RstStream, Trailers
from chaos_upstream.plan.h2_translate import NoEquivalent
from chaos_upstream.plan.request import RequestInfo, header, request_path
from chaos_upstream.plan.selection import PROBE_HEADER, SCENARIO_HEADER
from chaos_upstream.records import ActionRecord, RequestRecord
from chaos_upstream.server import timers
from chaos_upstream.server.h2_frames import MAX_STREAM, FrameLengths, code_name, frame, goaway, rst_stream
from chaos_upstream.server.h2_writer import FrameWriter
from chaos_upstream.server.reading import RECORD_BODY
from chaos_upstream.server.wire import Execution

if TYPE_CHECKING:
    from chaos_upstream.server.connection import Connection

CONFIG = h2.config.H2Configuration(
    client_side=False, header_encoding=None, validate_outbound_headers=False, normalize_outbound_headers=False,
)
"""A server that sends the fields its scenarios give as they are (upper case, connection-specific)."""

ENDING = 1.0
"""Seconds a plan's close may take to send what is queued, whoever cancels it meanwhile."""
DRAIN_PING = 0.1
"""Seconds a drain waits for its PING's ACK before its last GOAWAY (a peer that never answers)."""
MAX_CONCURRENT_STREAMS = 100
"""Streams a peer may have open at once (our SETTINGS say so): one more is refused alone
(RST_STREAM(REFUSED_STREAM), RFC 9113 §5.1.2), not its whole connection as `h2` would."""


@dataclass(eq=False)
class _Stream:
    """A request's stream while its task runs."""

    id: int
    fields: dict[str, Any]
    """Its request record's fields (body_bytes and the body grow as DATA comes)."""
    stall: bool = False
    """Never open its flow-control window (the scenario's `request_window: stall`)."""
    record: bool = False
    complete: trio.Event = field(default_factory=trio.Event)
    """Its request has ended (END_STREAM): its plan may run."""
    body_wait: trio.CancelScope = field(default_factory=trio.CancelScope)
    """The wait for the rest of its request: its deadline moves an idle timeout on with each DATA."""
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    gone: str = ""
    """How it ended from outside its plan (the peer's RST_STREAM, the connection's end)."""
    body: bytearray = field(default_factory=bytearray)

    def end(self, how: str) -> None:
        self.gone = self.gone or how
        self.scope.cancel()


class H2Session:
    """HTTP/2 on one connection of `Connection`: `serve()` until it ends; how it ended."""

    def __init__(self, connection: Connection, received: bytes, protocol: str) -> None:
        self.connection = connection
        self.received = received
        self.protocol = protocol
        """h2c (plain, prior knowledge) or h2 (TLS)."""
        self.h2 = h2.connection.H2Connection(CONFIG)
        self.lengths = FrameLengths()
        self.streams: dict[int, _Stream] = {}
        self.highest = 0
        """The highest stream id the peer opened."""
        self.goaway: str | None = None
        """The GOAWAY we sent: its code and last-stream-id, as the connection record says it."""
        self.goaway_last: int | None = None
        self.peer_goaway: str | None = None
        self.ended: str | None = None
        """How a plan ended the whole connection (closed, reset), or a protocol error."""
        self.draining = False
        self._window = trio.Event()
        self._pinged = trio.Event()
        self._scope = trio.CancelScope()
        self._busy = trio.CancelScope()
        """The read's wait while streams run (no idle timeout): cancelled when the last one ends."""
        self.writer = FrameWriter(connection.wire)

    def facts(self) -> dict[str, Any]:
        """The connection record's HTTP/2 fields."""
        return {"protocol": self.protocol, "goaway": self.goaway, "peer_goaway": self.peer_goaway}

    async def serve(self) -> str:
        live = self.connection.live
        self.h2.initiate_connection()
        # `h2` makes a stream past its limit a connection error: it is told of none, and _request refuses
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 2**31 - 1,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: self.h2.local_settings.max_header_list_size,
        })
        ended = "peer-closed"
        async with trio.open_nursery() as writing:
            writing.start_soon(self.writer.run)
            try:
                async with trio.open_nursery() as self.nursery:
                    live.on_drain = self.drain
                    if live.draining:  # a drain came while the preface was read
                        self.drain()
                    with self._scope:
                        ended = await self._read()
                    for stream in list(self.streams.values()):
                        stream.end(self.ended or ended)
            finally:
                live.on_drain = None  # the streams are done: a drain from now on has nothing to tell them
                self.writer.close()  # the writer sends what is queued, then ends
        return self.ended or ended

    async def _read(self) -> str:
        """Read frames until the peer leaves (how it left) or a plan ends the connection."""
        try:
            await self._write()
            return await self._read_on(self.received)
        except PeerGone as gone:
            return self.ended or f"peer-{gone.how}"

    async def _read_on(self, data: bytes) -> str:
        connection = self.connection
        while True:
            if data:
                if not await self._receive(data):
                    return self.ended or "h2-protocol-error"
            if self.streams:  # a plan may hold its stream: no idle timeout, but the last stream's end ends the wait
                with trio.CancelScope() as self._busy, contextlib.suppress(trio.ClosedResourceError):
                    await connection.transport.wait_readable()  # closed under it (the stall reaper): the read says how
                if self._busy.cancelled_caught:
                    data = b""
                    continue
                data = await connection.wire.receive()
            else:  # idle: the idle timeout and a drain may end the wait
                ended = await connection.read_within(connection.upstream.settings.idle_timeout, self._receive_idle, idle=True)
                if ended:
                    return ended
                data = self.received
            if not data:
                return "peer-closed"

    async def _receive_idle(self) -> None:
        self.received = await self.connection.wire.receive()

    async def _receive(self, data: bytes) -> bool:
        """Hand `data` to the protocol and act on its events; False when the peer broke the protocol
        (answered with GOAWAY)."""
        try:
            too_long = self.lengths.oversized(data, self.h2.max_inbound_frame_size)  # `h2` would wait for all of it
            if too_long is not None:
                raise h2.exceptions.FrameTooLargeError(f"a frame of {too_long} bytes, past the {self.h2.max_inbound_frame_size} allowed")
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            code = getattr(exc, "error_code", None) or ERROR_CODES["PROTOCOL_ERROR"]
            if isinstance(exc.__cause__, hpack.exceptions.HPACKError):
                code = ERROR_CODES["COMPRESSION_ERROR"]  # RFC 9113 §4.3
            self.goaway = f"{code_name(code)} last-stream {self.highest}"
            self.ended = f"h2-protocol-error: {exc}"
            self.h2.data_to_send()  # what h2 queued in answer (its own GOAWAY among it) gives way to ours, one GOAWAY
            await self._write(goaway(self.highest, code), flush=True)
            await self.connection.wire.close()
            return False
        for event in events:
            try:
                self._event(event)
            except h2.exceptions.StreamClosedError:
                pass  # the peer reset the stream first: nothing left to answer on it
        await self._write()
        return True

    def _event(self, event: h2.events.Event) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.RequestReceived):
            self._request(event)
        elif isinstance(event, h2.events.DataReceived):
            self._data(stream, event)
        elif isinstance(event, h2.events.StreamEnded) and stream is not None:
            stream.complete.set()
        elif isinstance(event, h2.events.StreamReset) and stream is not None:
            stream.end(f"{'peer-' if event.remote_reset else ''}rst-stream {code_name(event.error_code)}")
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self._window.set()
            self._window = trio.Event()
        elif isinstance(event, h2.events.PingAckReceived):
            self._pinged.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.peer_goaway = f"{code_name(event.error_code)} last-stream {event.last_stream_id}"
            # `h2` sends nothing more once told GOAWAY; the peer's streams are still ours to answer (RFC 9113 §6.8)
            self.h2.state_machine.state = h2.connection.ConnectionState.SERVER_OPEN

    def _data(self, stream: _Stream | None, event: h2.events.DataReceived) -> None:
        size = event.flow_controlled_length
        if size and (stream is None or stream.stall):
            self.h2.increment_flow_control_window(size)  # the connection's window only
        elif size:
            self.h2.acknowledge_received_data(size, event.stream_id)
        if stream is not None:
            stream.body_wait.deadline = trio.current_time() + self.connection.upstream.settings.idle_timeout
            stream.fields["body_bytes"] += len(event.data)
            if stream.record and len(stream.body) < RECORD_BODY:
                stream.body += event.data[: RECORD_BODY - len(stream.body)]
                stream.fields["body"] = stream.body.decode("latin-1")

    def _request(self, event: h2.events.RequestReceived) -> None:
        """A new stream: choose its scenario and plan, and start its task (or answer it at once)."""
        connection, upstream, sid = self.connection, self.connection.upstream, event.stream_id
        self.highest = max(self.highest, sid)
        if (self.goaway_last is not None and sid > self.goaway_last) or self._open_streams() >= MAX_CONCURRENT_STREAMS:
            self.h2.reset_stream(sid, ERROR_CODES["REFUSED_STREAM"])
            return
        pseudo = {name.decode("latin-1"): value.decode("latin-1") for name, value in event.headers if name.startswith(b":")}
        headers = tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers if not name.startswith(b":"))
        method, target = pseudo.get(":method", ""), pseudo.get(":path", "")
        connection.requests += 1
        settings = upstream.settings
        probe = header(headers, PROBE_HEADER)
        choice, head = connection.choose(connection.requests, method, target, request_path(target), header(headers, SCENARIO_HEADER), probe)
        fields = {"t": round(upstream.now(), 6), **head, "stream": sid, "body_bytes": 0}
        scenario = upstream.catalogue.find(choice.name)
        if scenario is None:
            self._refuse(sid, 404, f"no scenario named {choice.name!r}", {**fields, "scenario": None})
            return
        upstream.stats.requests[choice.name] += 1
        info = RequestInfo(method=method, target=target, headers=headers, on_connection=connection.requests,
                           ordinal=upstream.stats.requests[choice.name], path=choice.path, attempt=upstream.attempt(probe))
        planned = upstream.plans.plan_h2(scenario, info, upstream.rng, settings.timing, upstream.catalogue.get)
        if isinstance(planned, NoEquivalent):
            self._refuse(sid, 501, str(planned), fields)
            return
        stream = self.streams[sid] = _Stream(sid, fields, stall=scenario.request_window == "stall", record=scenario.request_body == "record")
        stream.body_wait.deadline = trio.current_time() + settings.idle_timeout
        if event.stream_ended:
            stream.complete.set()
        self.nursery.start_soon(self._serve_stream, stream, planned)

    def _open_streams(self) -> int:
        """Streams the peer has open now (those it reset are gone, though their tasks may not have run yet)."""
        return sum(not stream.gone for stream in self.streams.values())

    def _refuse(self, sid: int, status: int, reason: str, fields: dict[str, Any]) -> None:
        """Answer a stream we cannot serve with a plain-text error (its body sent as the peer's window
        and frame size let it go, as any DATA), and journal why."""
        body = f"chaos-upstream: {reason}\n".encode("latin-1", "replace")
        self.h2.send_headers(sid, [(b":status", str(status).encode()), (b"content-type", b"text/plain"),
                                   (b"content-length", str(len(body)).encode())])
        self.connection.upstream.stats.bad_requests += 1
        stream = self.streams[sid] = _Stream(sid, {**fields, "error": reason, "status": status})
        self.nursery.start_soon(self._send_refusal, stream, body)

    async def _send_refusal(self, stream: _Stream, body: bytes) -> None:
        ended = "cancelled"
        try:
            with stream.scope:
                await self._send_data(stream.id, body, True)
                ended = "end-stream"
            ended = stream.gone or ended
        except PeerGone as gone:
            ended = f"peer-{gone.how}"
        except h2.exceptions.ProtocolError as exc:
            ended = f"h2-error: {exc}"
        finally:
            self.connection.upstream.journal.write(RequestRecord(**stream.fields, rule=None, ended=ended))
            self._forget(stream)

    async def _serve_stream(self, stream: _Stream, plan: Plan) -> None:
        try:
            await self.connection.run_plan(RequestRecord, plan, trio.current_time(), stream.fields, partial(self._execute, stream, plan))
        finally:
            self._forget(stream)

    def _forget(self, stream: _Stream) -> None:
        """A stream's task has ended: if it was the last, the read waits idle (or, draining, the connection closes)."""
        del self.streams[stream.id]
        if not self.streams:
            self._busy.cancel()
            if self.draining:
                self._drained()

    async def _execute(self, stream: _Stream, plan: Plan, execution: Execution) -> None:
        """Run the stream's plan once its request has come; log it into `execution`."""
        log, now = execution.log, self.connection.upstream.now
        try:
            with stream.scope:
                with stream.body_wait:
                    await stream.complete.wait()
                if not stream.complete.is_set():  # its body stopped coming for an idle timeout, as over HTTP/1.1
                    await self._reset_stream(stream.id, "CANCEL")
                    execution.ended = "idle-closed, rst-stream CANCEL"
                    return
                origin = trio.current_time()
                for action in plan.actions:
                    name, size = await self._act(stream, action, origin, execution)
                    log.append(ActionRecord(name, round(now(), 6), size))
                await self._write(flush=True)  # the plan's frames are out (or the peer is gone: said so)
                if execution.ended == "running":  # nothing ended the stream: it is held, as a hang without a limit
                    execution.ended = "held"
                    await trio.sleep_forever()
        except PeerGone as gone:
            execution.ended = f"peer-{gone.how}"
        except h2.exceptions.ProtocolError as exc:
            execution.ended = f"h2-error: {exc}"
        if stream.scope.cancelled_caught and execution.ended in ("running", "hung", "held"):
            execution.ended = stream.gone if execution.ended == "running" else f"{execution.ended}, {stream.gone}"

    async def _act(self, stream: _Stream, action: Any, origin: float, execution: Execution) -> tuple[str, int | None]:
        """Do one action on the stream: its name in the journal and its bytes."""
        sid, conn = stream.id, self.h2
        kind = type(action)
        if kind is Wait:
            await timers.sleep_until(origin + action.until)
            return "wait", None
        if kind is Headers:
            conn.send_headers(sid, [(b":status", str(action.status).encode()), *action.fields], end_stream=action.end_stream)
            await self._write()
            return self._ending(execution, f"headers {action.status}", action.end_stream), None
        if kind is Data:
            await self._send_data(sid, action.data, action.end_stream)
            return self._ending(execution, "data", action.end_stream), len(action.data)
        if kind is Trailers:
            conn.send_headers(sid, list(action.fields), end_stream=True)
            await self._write()
            return self._ending(execution, "trailers", True), None
        if kind is RstStream:
            await self._reset_stream(sid, action.code)
            execution.ended = f"rst-stream {action.code}"
            return execution.ended, None
        if kind is GoAway:
            last = sid if action.last_stream == "this" else max(0, sid - 2)
            await self._send_goaway(action.code, last)
            return f"goaway {action.code} last-stream {last}", None
        if kind is Frame:
            on = 0 if action.connection else sid
            await self._write(frame(action.type, action.flags, on, action.payload))
            return f"frame type {action.type} on stream {on}", len(action.payload)
        if kind is Hang:
            with trio.move_on_after(action.limit if action.limit is not None else float("inf")):
                execution.ended = "hung"
                await trio.sleep_forever()
            await self._reset_stream(sid, "CANCEL")
            execution.ended = "hung, rst-stream CANCEL"
            return "hang", None
        return await self._end_connection(action, execution)

    def _ending(self, execution: Execution, name: str, end_stream: bool) -> str:
        if end_stream:
            execution.ended = "end-stream"
            return f"{name} end-stream"
        return name

    async def _end_connection(self, action: Close | Reset, execution: Execution) -> tuple[str, None]:
        """A plan's close or reset ends the connection, and every stream on it (the reader, which
        sees the socket closed, says so: the connection ended this way, not by the peer)."""
        wire = self.connection.wire
        self.ended = execution.ended = "closed" if isinstance(action, Close) else "reset"
        with trio.CancelScope(shield=True, deadline=trio.current_time() + ENDING):
            with contextlib.suppress(PeerGone):
                await self._write(flush=True)  # the frames before it go out first, then the FIN or the RST
            if isinstance(action, Close):
                await wire.close(action.close_notify)
            else:
                await wire.reset()
        self._scope.cancel()
        return self.ended, None

    async def _send_data(self, sid: int, data: bytes, end_stream: bool) -> None:
        """DATA frames for `data`, each as large as the peer's windows and frame size let it be."""
        conn, offset = self.h2, 0
        while True:
            await self.writer.room()  # a peer that reads slowly: the frames of all streams wait, not pile up
            room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size, len(data) - offset)
            if room <= 0 and offset < len(data):
                with trio.move_on_after(self.connection.upstream.settings.idle_timeout) as waiting:
                    await self._window.wait()
                if waiting.cancelled_caught:  # a peer that never opens its window is one that stopped reading
                    await self._reset_stream(sid, "CANCEL")
                    raise PeerGone("stalled")
                continue
            last = offset + room >= len(data)
            conn.send_data(sid, data[offset : offset + room], end_stream=end_stream and last)
            await self._write()
            offset += room
            if last:
                return

    async def _reset_stream(self, sid: int, code: str) -> None:
        """RST_STREAM through the protocol's state while the stream is open in it, else as bytes
        (after END_STREAM both ways, which RFC 9113 §8.1 allows and `h2` refuses)."""
        try:
            self.h2.reset_stream(sid, ERROR_CODES[code])
        except h2.exceptions.StreamClosedError:
            await self._write(rst_stream(sid, ERROR_CODES[code]))
            return
        await self._write()

    async def _send_goaway(self, code: str, last: int) -> None:
        if self.goaway_last is None or last < self.goaway_last:
            self.goaway_last = last
        self.goaway = f"{code} last-stream {last}"
        await self._write(goaway(last, ERROR_CODES[code]))

    def drain(self) -> None:
        """A graceful stop: GOAWAY(NO_ERROR) with the last stream opened, the streams up to it
        finish, then the connection closes (Upstream.drain calls this instead of cancelling)."""
        if not self.draining:
            self.draining = True
            try:
                self.nursery.start_soon(self._goaway_then_close)
            except RuntimeError:  # its streams have all ended, and the session with them: nothing to drain
                pass

    async def _goaway_then_close(self) -> None:
        """RFC 9113 §6.8's graceful shutdown: GOAWAY with the largest stream id, a PING, and once
        its ACK is back (or DRAIN_PING seconds pass) the GOAWAY with the last stream opened: a
        request the peer sent meanwhile is served, not refused."""
        try:
            await self._write(goaway(MAX_STREAM, ERROR_CODES["NO_ERROR"]))
            self.h2.ping(b"chaos-gw")
            await self._write()
            with trio.move_on_after(DRAIN_PING):
                await self._pinged.wait()
            await self._send_goaway("NO_ERROR", self.highest)
        except PeerGone:
            pass
        if not self.streams:
            self._drained()

    def _drained(self) -> None:
        self.ended = self.ended or "drained"
        self._scope.cancel()

    async def _write(self, extra: bytes = b"", *, flush: bool = False) -> None:
        """Send what the protocol has queued, then `extra` (raw frames), in the order asked (see FrameWriter)."""
        await self.writer.write(self.h2.data_to_send() + extra, flush=flush)
