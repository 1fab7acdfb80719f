"""Server-side ssl.SSLContext objects: the upstream's own, and one per TLS fault a context makes
(a certificate fault, the protocol mismatch, mTLS required).

Invariants: every context offers ALPN h2 then http/1.1; a context that requires a client certificate
verifies it against the client CA it was given. A context is chosen before the handshake, from the
scenario the ClientHello's SNI names (tls/opening.py): OpenSSL's own switch inside the handshake
(the SNI callback) could change the certificate presented, but not the protocol versions or the
verify mode.
"""

from __future__ import annotations

import ssl
import warnings

from chaos_upstream.tls.material import Identity, Material

ALPN = ("h2", "http/1.1")
"""The upstream speaks HTTP/2 to a proxy that offers h2, HTTP/1.1 to any other."""

MISMATCH_VERSIONS = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)
"""TLS 1.0 and 1.1 only: deprecated by RFC 8996, off by default in every current proxy."""

MISMATCH_CIPHERS = "DEFAULT:@SECLEVEL=0"
"""OpenSSL 3 refuses TLS 1.0/1.1 at its default security level 1 (no SHA-1 signatures: "no ciphers
available"); level 0 lets a server offer them (measured on OpenSSL 3.0.19)."""

CERTIFICATE_FAULTS = ("expired-certificate", "wrong-name", "untrusted-certificate")
PROTOCOL_MISMATCH = "protocol-mismatch"
CLIENT_CERTIFICATE_REQUIRED = "client-certificate-required"
"""The TLS faults (model.scenario.TlsFault) that a context of their own makes."""


def server_context(identity: Identity, *, client_ca: bytes | None = None) -> ssl.SSLContext:
    """A server context presenting `identity` with ALPN h2 and http/1.1; requiring a client certificate
    signed by `client_ca` (PEM) when one is given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    identity.install(context)
    context.set_alpn_protocols(list(ALPN))
    if client_ca is not None:
        context.load_verify_locations(cadata=client_ca.decode("ascii"))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def protocol_mismatch_context(identity: Identity) -> ssl.SSLContext:
    """A server context that speaks TLS 1.0 and 1.1 only (a modern client gets a protocol_version alert)."""
    context = server_context(identity)
    context.set_ciphers(MISMATCH_CIPHERS)
    with warnings.catch_warnings():  # ssl deprecates these versions; offering them is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version, context.maximum_version = MISMATCH_VERSIONS
    return context


class Contexts:
    """The contexts of one TLS upstream, by TLS fault: its own for a scenario with none that a
    context makes."""

    __slots__ = ("default", "_by_fault")

    def __init__(self, material: Material, *, client_ca: bytes | None = None) -> None:
        """`client_ca` (PEM): every connection must bring a client certificate it signed (mTLS);
        `client-certificate-required` requires one signed by it, or by `material`'s CA without it."""
        self.default = server_context(material.server, client_ca=client_ca)
        faults = (material.expired, material.wrong_name, material.untrusted)
        self._by_fault = {
            **{name: server_context(identity, client_ca=client_ca) for name, identity in zip(CERTIFICATE_FAULTS, faults, strict=True)},
            PROTOCOL_MISMATCH: protocol_mismatch_context(material.server),
            CLIENT_CERTIFICATE_REQUIRED: server_context(material.server, client_ca=client_ca or material.ca_pem),
        }

    def for_fault(self, fault: str | None) -> ssl.SSLContext:
        """The context to start a handshake with under the TLS fault `fault` (None: none)."""
        return self._by_fault.get(fault or "", self.default)
