"""The handshake faults: what the upstream does with a ClientHello instead of answering it, before
any TLS library sends a byte. Each runs on the connection's RecordStream (the ClientHello read)
and returns how the connection ended, in the journal's words. Invariant: the stream is closed when
one returns, except a stall cancelled from outside (its caller closes it, as every handler does).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from chaos_upstream.tls.handshake import HANDSHAKE_FAILURE_ALERT
from chaos_upstream.tls.recordstream import RecordStream


async def stall(stream: RecordStream) -> str:
    """Never answer: read and discard until the peer leaves (the caller's timeout may end it first)."""
    try:
        while await stream.raw.receive_some():
            pass
    except trio.BrokenResourceError:
        await stream.aclose()
        return "hung, peer-reset"
    await stream.aclose()
    return "hung, peer-closed"


async def reset(stream: RecordStream) -> str:
    """RST right after the ClientHello."""
    stream.arm_reset()
    await stream.aclose()
    return "reset"


async def alert(stream: RecordStream) -> str:
    """A fatal handshake_failure alert record, then FIN."""
    try:
        await stream.send_all(HANDSHAKE_FAILURE_ALERT)
    except trio.BrokenResourceError:
        await stream.aclose()
        return "peer-reset"
    await stream.aclose()
    return "alert"


HANDSHAKE_FAULTS: dict[str, Callable[[RecordStream], Awaitable[str]]] = {
    "handshake-stall": stall,
    "reset-in-handshake": reset,
    "handshake-alert": alert,
}
"""The TLS faults that end a connection at its ClientHello (model.scenario.HANDSHAKE_FAULTS), and what runs them."""
