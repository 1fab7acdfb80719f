"""Opening a connection over TLS: read its ClientHello, choose the scenario (the one its SNI names
as NAME.chaos, else the connection's own), then either run a handshake fault or do the handshake
with the context the scenario asks for.

Invariants: whatever happens, the caller gets how the connection ended (a str) or an `Opened`
connection whose handshake is done; the raw socket is closed in the first case (never through the
SSLStream, whose close would try to finish the handshake), and belongs to the SSLStream in the
second. Nothing here waits longer than `timeout` for the peer, except a stall, which waits for the
peer to leave (the connection's scope ends it on a kill or at shutdown).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from chaos_upstream.errors import NotClientHello
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.tls.contexts import Contexts
from chaos_upstream.tls.facts import TlsFacts, ending_of, facts_of
from chaos_upstream.tls.faults import HANDSHAKE_FAULTS
from chaos_upstream.tls.recordstream import RecordStream
from chaos_upstream.tls.sni import scenario_of
from chaos_upstream.tls.transport import TlsTransport


@dataclass(frozen=True, slots=True)
class Opened:
    """A TLS connection ready for HTTP."""

    stream: trio.SSLStream[RecordStream]
    transport: TlsTransport
    facts: TlsFacts
    scenario: str | None
    """The scenario its SNI named (NAME.chaos, NAME in the catalogue); None when it named none."""
    fault: str | None = None
    """The scenario whose TLS fault acted at the handshake (a certificate, mTLS), if one did."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A TLS connection that ended before HTTP: how, and the SNI it sent (if it got that far)."""

    ended: str
    sni: str | None = None
    fault: str | None = None
    """The scenario whose TLS fault acted at the handshake, if one did (it may be why it ended)."""


async def open_tls(
    raw: trio.SocketStream, contexts: Contexts, *, lookup: Callable[[str], Scenario | None], own: str, timeout: float
) -> Opened | Refused:
    """Open `raw` as TLS: the scenario is the one the SNI names if `lookup` finds it, else `own`
    (the connection's: its port's, the active one, the default); its TLS fault, if any, acts."""
    records = RecordStream(raw)
    hello, ended = None, "tls-timeout"
    try:
        with trio.move_on_after(timeout):
            try:
                hello = await records.client_hello()
            except NotClientHello:
                ended = "tls-not-client-hello"
            else:
                ended = "peer-closed" if hello is None else ended
    except trio.BrokenResourceError:
        ended = "peer-reset"
    sni = None if hello is None else hello.sni
    if hello is None:
        await raw.aclose()
        return Refused(ended, sni)
    named = scenario_of(sni)
    chosen = None if named is None else lookup(named)
    scenario = chosen or lookup(own)
    fault = None if scenario is None else scenario.tls
    acting = None if fault in (None, "valid") else scenario.name  # type: ignore[union-attr]
    if fault in HANDSHAKE_FAULTS:
        return Refused(await HANDSHAKE_FAULTS[fault](records), sni, acting)
    tls = trio.SSLStream(records, contexts.for_fault(fault), server_side=True)
    failure = await _handshake(tls, timeout)
    if failure is not None:
        await raw.aclose()
        return Refused(failure, sni, acting)
    return Opened(tls, TlsTransport(records, tls), facts_of(tls, sni), None if chosen is None else chosen.name, acting)


async def _handshake(tls: trio.SSLStream[RecordStream], timeout: float) -> str | None:
    """Finish the handshake within `timeout`: None once done, else how it failed, in the journal's
    words ("tls-handshake-failed: <OpenSSL's reason>", "peer-reset", "tls-timeout"). A handshake
    this side refuses ends with OpenSSL's alert on the wire (`_send_alert`)."""
    with trio.move_on_after(timeout):
        try:
            await tls.do_handshake()
        except trio.BrokenResourceError as exc:
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLError):
                await _send_alert(tls)
                return f"tls-handshake-failed: {cause.reason or cause.strerror}".lower()
            return "peer-reset" if isinstance(cause, ConnectionResetError) else "peer-closed"
        return None
    return "tls-timeout"


async def _send_alert(tls: trio.SSLStream[RecordStream]) -> None:
    """Send what OpenSSL wrote as it refused the handshake: its fatal alert (protocol_version,
    certificate_required, ...), which trio's SSLStream drops when it raises (trio 0.25 to 0.35 keep it
    in the stream's outgoing BIO, `_outgoing`: read here, as nothing public gives it). Without it a
    proxy sees a bare EOF and cannot say why; a test checks the alert arrives."""
    outgoing = getattr(tls, "_outgoing", None)
    alert = outgoing.read() if isinstance(outgoing, ssl.MemoryBIO) else b""
    if alert:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await tls.transport_stream.raw.send_all(alert)


def tls_fields(tls: Opened | Refused, peer_left: BaseException | bool | None) -> dict[str, Any]:
    """A TLS connection's fields of its journal record (records.ConnectionRecord), from how it was
    opened and how the peer left (Wire.peer_left: None if it did not, True for an end of stream)."""
    if isinstance(tls, Refused):
        return {"sni": tls.sni}
    facts = tls.facts
    fields: dict[str, Any] = {
        "sni": facts.sni, "tls_version": facts.version, "tls_cipher": facts.cipher, "alpn": facts.alpn,
        "client_certificate": facts.client_subject,
    }
    if peer_left is not None:
        fields["peer_close_notify"] = ending_of(None if peer_left is True else peer_left) == "close_notify"  # type: ignore[arg-type]
    return fields
