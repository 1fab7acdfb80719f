"""Real proxies in front of TLS upstreams (`matrix --tls`, the pytest fixtures with `tls=True`): a
certificate authority made for the run, its files in a workdir, and the proxies that can speak TLS
to an upstream, each configured to verify it and, where its default lets any certificate through,
at its default too.

Invariants: every launcher returned presents the CA's client certificate (so `tls-client-certificate-required`
means the same for all: mTLS configured), and sends `localhost` as SNI where its configuration can say so
(Apache and Traffic Server send the client's Host: the matrix probes them as `localhost`); a proxy
that cannot speak TLS to an upstream is left out, and said to be.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from pathlib import Path

from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.proxies.launcher import Launcher
from chaos_upstream.proxies.settings import UpstreamTls
from chaos_upstream.tls.contexts import Contexts
from chaos_upstream.tls.material import DEFAULT_NAMES, generate, save
from chaos_upstream.tls.sni import SUFFIX

SERVER_NAME = "localhost"
"""The name every proxy is told the upstream has, and checks its certificate against."""


def tls_material(catalogue: Catalogue, workdir: Path) -> tuple[Contexts, UpstreamTls]:
    """The run's contexts for the upstreams, and the proxies' TLS settings: the CA and the client
    certificate written into `workdir` (absolute, with the rest of the material: `save`), verification on."""
    material = generate([*DEFAULT_NAMES, *(scenario.name + SUFFIX for scenario in catalogue)],
                        now=datetime.datetime.now(datetime.timezone.utc))
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    save(material, workdir)
    upstream = UpstreamTls(ca=workdir / "ca.pem", server_name=SERVER_NAME, client_cert=workdir / "client.pem",
                           client_key=workdir / "client-key.pem")
    return Contexts(material), upstream


def tls_launchers(launchers: Sequence[Launcher], upstream: UpstreamTls) -> tuple[list[Launcher], list[str]]:
    """(the launchers of the TLS section, the names of those that cannot speak TLS to an upstream):
    each able one verifying, then at its own default when that default trusts any certificate."""
    able = [launcher for launcher in launchers if launcher.upstream_tls != "none"]
    chosen: list[Launcher] = []
    for launcher in able:
        chosen.append(dataclasses.replace(launcher, tls=upstream))
        if launcher.upstream_tls == "trusts":
            chosen.append(dataclasses.replace(launcher, tls=dataclasses.replace(upstream, verify=False)))
    return chosen, [launcher.key for launcher in launchers if launcher.upstream_tls == "none"]
