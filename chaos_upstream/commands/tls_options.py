"""The TLS flags of `serve` and `check`: declared, checked, and turned into the contexts every
listener of the upstream serves.

Invariants: a TLS flag without --tls, a certificate without its key, a file that cannot be read or
is not what it should be, a name no certificate can carry, or a --tls-ca that cannot be written is a
ConfigError naming the flag, before anything listens; the CA is written before the server listens,
so a proxy started once `listening on` is printed can trust it.
"""

from __future__ import annotations

import argparse
import datetime
import ssl
from pathlib import Path

from chaos_upstream.errors import ConfigError
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.tls.contexts import Contexts
from chaos_upstream.tls.material import DEFAULT_NAMES, Identity, Material, generate, load, write_ca
from chaos_upstream.tls.sni import SUFFIX

FLAGS = ("tls_cert", "tls_key", "tls_name", "tls_ca", "tls_client_ca")
"""The flags that mean something only with --tls."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TLS", "the upstream serves every listener over TLS (ALPN h2, http/1.1); the SNI NAME.chaos selects scenario NAME")
    group.add_argument("--tls", action="store_true", help="serve over TLS, with a certificate of a throwaway CA unless --tls-cert")
    group.add_argument("--tls-cert", type=Path, default=None, metavar="FILE", help="the certificate (chain, PEM) to serve instead")
    group.add_argument("--tls-key", type=Path, default=None, metavar="FILE", help="its private key (PEM)")
    group.add_argument(
        "--tls-name", action="append", default=[], metavar="NAME",
        help=f"a name the throwaway certificate is for (repeatable; default {' and '.join(DEFAULT_NAMES)})",
    )
    group.add_argument("--tls-ca", type=Path, default=None, metavar="FILE", help="write the throwaway CA's certificate here, for the proxy to trust")
    group.add_argument("--tls-client-ca", type=Path, default=None, metavar="FILE", help="require a client certificate signed by this CA (mTLS)")
    group.add_argument("--tls-material", type=Path, default=None, help=argparse.SUPPRESS)  # a supervisor's, for its workers


def contexts_of(args: argparse.Namespace, catalogue: Catalogue) -> Contexts | None:
    """The contexts `serve --tls ...` asks for (None without --tls): over the certificates of
    `material_of`, or those a supervisor made for its workers (the hidden --tls-material)."""
    if args.tls_material is not None:
        try:
            material = load(args.tls_material)
        except OSError as exc:
            raise ConfigError(f"the supervisor's TLS material {args.tls_material}: {exc.strerror or exc}") from None
    else:
        material = material_of(args, catalogue)
        if material is None:
            return None
    client_ca = None if args.tls_client_ca is None else _client_ca(args.tls_client_ca)
    return Contexts(material, client_ca=client_ca)


def material_of(args: argparse.Namespace, catalogue: Catalogue) -> Material | None:
    """The certificates `serve --tls ...` asks for (None without --tls), checked, the CA written to
    --tls-ca. The throwaway certificate is also for NAME.chaos, each scenario NAME of `catalogue`
    (OpenSSL takes no wildcard over a top-level name), so a proxy that checks names may select any by SNI."""
    if not args.tls:
        given = [name for name in FLAGS if getattr(args, name)]
        if given:
            raise ConfigError(f"--{given[0].replace('_', '-')}: give --tls too")
        return None
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key: give both, the certificate and its key")
    if args.tls_cert is not None and args.tls_name:
        raise ConfigError("--tls-name names the throwaway certificate: leave it out with --tls-cert")
    server = None if args.tls_cert is None else _identity(args.tls_cert, args.tls_key)
    if args.tls_client_ca is not None:
        _client_ca(args.tls_client_ca)  # checked before anything is made
    try:
        names = [*(args.tls_name or DEFAULT_NAMES), *(scenario.name + SUFFIX for scenario in catalogue)]
        material = generate(names, now=datetime.datetime.now(datetime.timezone.utc), server=server)
    except ValueError as exc:  # a name no certificate can carry (trustme and idna say which)
        raise ConfigError(f"--tls-name: {exc}") from None
    if args.tls_ca is not None:
        try:
            write_ca(material, args.tls_ca)
        except OSError as exc:
            raise ConfigError(f"--tls-ca {args.tls_ca}: {exc.strerror or exc}") from None
    return material


def _identity(cert: Path, key: Path) -> Identity:
    """The user's certificate and key, read and tried on a context: ConfigError if they cannot serve."""
    try:
        identity = Identity.from_files(cert, key)
        identity.install(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    except OSError as exc:  # ssl.SSLError too: not PEM, or a key that is not the certificate's
        raise ConfigError(f"--tls-cert {cert} --tls-key {key}: {getattr(exc, 'reason', None) or exc.strerror or exc}") from None
    return identity


def _client_ca(path: Path) -> bytes:
    """The client CA's certificates (PEM), read and tried: ConfigError if they are none."""
    try:
        pem = path.read_bytes()
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cadata=pem.decode("ascii"))
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError; not ASCII is a ValueError
        raise ConfigError(f"--tls-client-ca {path}: {getattr(exc, 'reason', None) or getattr(exc, 'strerror', None) or exc}") from None
    return pem
