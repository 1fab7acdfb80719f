"""Server-side ssl.SSLContext objects: the upstream's own, one per certificate fault, the protocol
mismatch, and mTLS; and the SNI switch between them.

Invariants: every context offers ALPN http/1.1 only; a context that requires a client certificate
verifies it against the client CA it was given; the SNI switch, run by OpenSSL inside the
handshake, changes only the certificate presented (OpenSSL's SSL_set_SSL_CTX moves the certificate,
not the protocol versions or the verify mode): the scenarios that change more are chosen before the
handshake, by `Contexts.for_scenario` on the name the ClientHello's SNI gave (see records.py).
"""

from __future__ import annotations

import ssl
import warnings

from chaos_upstream.tls.material import Identity, Material
from chaos_upstream.tls.sni import scenario_of

ALPN = ("http/1.1",)
"""The upstream speaks HTTP/1.1 only: a proxy offering h2 first must fall back, as against nginx."""

MISMATCH_VERSIONS = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)
"""TLS 1.0 and 1.1 only: deprecated by RFC 8996, off by default in every current proxy."""

MISMATCH_CIPHERS = "DEFAULT:@SECLEVEL=0"
"""OpenSSL 3 refuses TLS 1.0/1.1 at its default security level 1 (no SHA-1 signatures: "no ciphers
available"); level 0 lets a server offer them (measured on OpenSSL 3.0.19)."""

CERTIFICATE_FAULTS = ("tls-expired-certificate", "tls-wrong-name", "tls-untrusted-certificate")
PROTOCOL_MISMATCH = "tls-protocol-mismatch"
CLIENT_CERTIFICATE_REQUIRED = "tls-client-certificate-required"


def server_context(identity: Identity, *, client_ca: bytes | None = None) -> ssl.SSLContext:
    """A server context presenting `identity` with ALPN http/1.1; requiring a client certificate
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
    """The contexts of one TLS upstream, by scenario: its own for any scenario that is no TLS fault.
    Each switches, by SNI, to a certificate fault's certificate when the name names one."""

    __slots__ = ("default", "_by_scenario")

    def __init__(self, material: Material, *, client_ca: bytes | None = None) -> None:
        """`client_ca` (PEM): every connection must bring a client certificate it signed (mTLS);
        the `tls-client-certificate-required` scenario requires one signed by it, or by
        `material`'s CA without it."""
        self.default = server_context(material.server, client_ca=client_ca)
        faults = (material.expired, material.wrong_name, material.untrusted)
        self._by_scenario = {
            **{name: server_context(identity, client_ca=client_ca) for name, identity in zip(CERTIFICATE_FAULTS, faults, strict=True)},
            PROTOCOL_MISMATCH: protocol_mismatch_context(material.server),
            CLIENT_CERTIFICATE_REQUIRED: server_context(material.server, client_ca=client_ca or material.ca_pem),
        }
        for context in (self.default, *self._by_scenario.values()):
            context.sni_callback = self._switch

    def for_scenario(self, scenario: str | None) -> ssl.SSLContext:
        """The context to start a handshake with when `scenario` applies."""
        return self._by_scenario.get(scenario or "", self.default)

    def _switch(self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        """OpenSSL's servername callback: present the certificate fault the name names, if any."""
        scenario = scenario_of(server_name)
        if scenario in CERTIFICATE_FAULTS:
            connection.context = self._by_scenario[scenario]
