"""The TLS facts of a connection, for the journal: what was negotiated, what the client sent, how
the session ended.

How trio tells the endings (measured, trio 0.35, https_compatible=False, the default this upstream
uses): a close_notify from the peer makes SSLStream.receive_some return b""; a FIN without one
raises trio.BrokenResourceError caused by ssl.SSLEOFError (UNEXPECTED_EOF_WHILE_READING); with
https_compatible=True that FIN would read as b"" too, and the two could not be told apart.
"""

from __future__ import annotations

import errno
import ssl
from dataclasses import dataclass

import trio

SUBJECT_KEYS = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C"}
"""The short names of RFC 4514 for the attributes a client certificate's subject usually has."""


@dataclass(frozen=True, slots=True)
class TlsFacts:
    """What a TLS handshake settled."""

    version: str | None
    """TLSv1.3, TLSv1.2..."""
    cipher: str | None
    sni: str | None
    """The server name the client sent (read from its ClientHello)."""
    alpn: str | None
    client_subject: str | None
    """The verified client certificate's subject (mTLS), as CN=...,O=..."""


def facts_of(tls: trio.SSLStream[trio.abc.Stream], sni: str | None) -> TlsFacts:
    """The facts of `tls` once its handshake is done, with the SNI its ClientHello carried."""
    cipher = tls.cipher()
    return TlsFacts(
        version=tls.version(), cipher=cipher[0] if cipher else None, sni=sni,
        alpn=tls.selected_alpn_protocol(), client_subject=_subject(tls.getpeercert()),
    )


def ending_of(failure: BaseException | None) -> str:
    """How the peer ended a TLS session, from what a read raised (None: it read b""):
    close_notify, no-close_notify (a bare FIN), reset, or tls-error."""
    if failure is None:
        return "close_notify"
    cause = failure.__cause__ if isinstance(failure, trio.BrokenResourceError) else failure
    if isinstance(cause, ssl.SSLEOFError):
        return "no-close_notify"
    if isinstance(cause, OSError) and cause.errno == errno.ECONNRESET:
        return "reset"
    return "tls-error"


def _subject(certificate: dict | None) -> str | None:
    if not certificate:
        return None
    return ",".join(f"{SUBJECT_KEYS.get(key, key)}={value}" for rdn in certificate.get("subject", ()) for key, value in rdn)
