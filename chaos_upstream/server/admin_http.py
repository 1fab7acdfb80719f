"""The admin API's side of HTTP/1.1: reading one request and sending one `Reply`, with h11 doing both.

Invariants:
- nothing waits without end: reading a request has a deadline (REQUEST_DEADLINE), every send a
  timeout (SEND_TIMEOUT), so a slowloris or a client that never reads loses its connection;
- no body over MAX_BODY is read: a declared one is refused before its first byte, a chunked one as
  soon as it passes the limit (413);
- a request h11 cannot parse is answered with h11's status hint (400, 413, 431) if it still may be;
- an error reply that may leave part of the request unread closes the connection.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import h11
import trio

REQUEST_DEADLINE = 10.0
"""Seconds from waiting for a request to its last byte, idle keep-alive time included: ample for
scripts and scrapers on loopback, and a slowloris holds a connection no longer than this."""

SEND_TIMEOUT = 10.0
"""Seconds a reply's send may wait for a client that does not read: a journal page's batch goes out
in well under a second to any client that reads at all."""

MAX_BODY = 64 * 1024
"""The largest request body accepted: admin calls carry a few bytes of JSON."""

RECEIVE_SIZE = 64 * 1024
"""Bytes read at once from an admin connection."""

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


async def refuse(stream: trio.SocketStream, connection: h11.Connection, exc: h11.RemoteProtocolError) -> None:
    """Answer an unparseable or oversized request with its status hint (400, 413, 431), if we still may."""
    reply = Reply.error(exc.error_status_hint, str(exc))
    try:
        await send_reply(stream, connection, reply)
    except (h11.LocalProtocolError, trio.BrokenResourceError, trio.TooSlowError):
        pass


async def read_request(stream: trio.SocketStream, connection: h11.Connection) -> tuple[h11.Request | None, bytes]:
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


async def send_reply(stream: trio.SocketStream, connection: h11.Connection, reply: Reply) -> None:
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
