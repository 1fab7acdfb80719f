"""Certificate material: a throwaway certificate authority made at start-up (trustme), the server's
certificate for its names, the fault certificates of the TLS catalogue, and the PEM files a proxy
is given to trust them.

Strategy: trustme and cryptography are imported when certificates are made, not with the module
(~40 ms a start of every command, TLS or not).

Invariants: a name that parses as an IP address is an IP SAN, any other a DNS SAN (trustme does so,
and `_self_signed` the same); the expired and wrong-name certificates are signed by the same CA as
the server's, so a proxy that trusts the CA refuses them for exactly one reason; the untrusted one
is signed by nobody but itself. Validity is wall-clock time, passed in as `now`.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import trustme
    from cryptography import x509

DEFAULT_NAMES = ("localhost", "127.0.0.1")
"""What a proxy on the same host names the upstream: curl and nginx's default `proxy_ssl_name` use
the host of the upstream's address."""

WRONG_NAME = "not-the-upstream.invalid"
""".invalid is reserved (RFC 6761 §6.4): no proxy asks for it."""

EXPIRED_FOR = datetime.timedelta(days=1)
"""How long before `now` the expired certificate ended: a day, far past any clock skew allowance."""

CLIENT_NAME = "chaos-upstream-client"
"""The common name of the client certificate issued for mTLS."""


@dataclass(frozen=True, slots=True)
class Identity:
    """A certificate chain (leaf first) and its private key, in PEM."""

    chain_pem: bytes
    key_pem: bytes

    @classmethod
    def from_files(cls, cert_file: str | os.PathLike[str], key_file: str | os.PathLike[str]) -> Identity:
        """The user's own certificate (chain) and key files."""
        return cls(Path(cert_file).read_bytes(), Path(key_file).read_bytes())

    def install(self, context: ssl.SSLContext) -> None:
        """Make `context` present this identity (ssl loads chains from files only: a private
        temporary file, removed at once, holds it for the call). ssl.SSLError when they do not match."""
        with tempfile.NamedTemporaryFile(suffix=".pem") as pem:
            pem.write(self.key_pem + self.chain_pem)
            pem.flush()
            context.load_cert_chain(pem.name)


@dataclass(frozen=True, slots=True)
class Material:
    """Everything a TLS upstream presents: its certificate and those of the certificate faults."""

    ca_pem: bytes
    """The throwaway CA, for the proxy to trust (`write_ca`), and for the client certificates of mTLS."""
    server: Identity
    expired: Identity
    wrong_name: Identity
    untrusted: Identity
    client: Identity
    """A client certificate signed by the CA, for a proxy doing mTLS against this upstream."""


IDENTITIES = ("server", "expired", "wrong_name", "untrusted", "client")
"""A Material's identities, by attribute: the files `save` writes, NAME.pem and NAME-key.pem each."""


def save(material: Material, folder: Path) -> None:
    """Write `material` into `folder` (private to this user), for `load` in another process."""
    folder.chmod(0o700)
    (folder / "ca.pem").write_bytes(material.ca_pem)
    for name in IDENTITIES:
        identity: Identity = getattr(material, name)
        (folder / f"{name}.pem").write_bytes(identity.chain_pem)
        key = folder / f"{name}-key.pem"
        key.touch(mode=0o600)
        key.write_bytes(identity.key_pem)


def load(folder: Path) -> Material:
    """The Material `save` wrote into `folder` (serve --workers: the supervisor's, so that every
    worker presents certificates of one CA); OSError when a file is missing."""
    identities = {name: Identity.from_files(folder / f"{name}.pem", folder / f"{name}-key.pem") for name in IDENTITIES}
    return Material(ca_pem=(folder / "ca.pem").read_bytes(), **identities)


def generate(names: Sequence[str] = DEFAULT_NAMES, *, now: datetime.datetime, server: Identity | None = None) -> Material:
    """Material for `names` (the first is each certificate's common name) made under a new CA;
    the user's own `server` identity, when given, instead of one the CA issues."""
    import trustme

    ca = trustme.CA(organization_name="chaos-upstream throwaway CA")
    expired = ca.issue_cert(*names, not_before=now - 10 * EXPIRED_FOR, not_after=now - EXPIRED_FOR)
    return Material(
        ca_pem=ca.cert_pem.bytes(),
        server=server or _identity(ca.issue_cert(*names)),
        expired=_identity(expired),
        wrong_name=_identity(ca.issue_cert(WRONG_NAME)),
        untrusted=_self_signed(names, now),
        client=_identity(ca.issue_cert(CLIENT_NAME, common_name=CLIENT_NAME)),
    )


def write_ca(material: Material, path: str | os.PathLike[str]) -> None:
    """Write the CA's certificate to `path` (PEM), for a proxy to trust."""
    Path(path).write_bytes(material.ca_pem)


def _identity(leaf: trustme.LeafCert) -> Identity:
    return Identity(b"".join(blob.bytes() for blob in leaf.cert_chain_pems), leaf.private_key_pem.bytes())


def _self_signed(names: Sequence[str], now: datetime.datetime) -> Identity:
    """A leaf certificate for `names` signed by its own key: valid in every way but trust."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - EXPIRED_FOR)
        .not_valid_after(now + 365 * EXPIRED_FOR)
        .add_extension(x509.SubjectAlternativeName([_general_name(name) for name in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return Identity(cert.public_bytes(serialization.Encoding.PEM), key_pem)


def _general_name(name: str) -> x509.GeneralName:
    """An IP SAN for an IP address, a DNS SAN for anything else."""
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)
