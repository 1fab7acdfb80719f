"""`check` with its upstreams: serve them, check through the proxy, stop serving."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from chaos_upstream.harness.serving import Address, serving
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.tls.contexts import Contexts
from chaos_upstream.verifier.check import Report, Skipped, check
from chaos_upstream.verifier.judge import RFC
from chaos_upstream.verifier.probe import Result
from chaos_upstream.verifier.series import ROTATION_LIMIT


async def serve_and_check(
    proxy_url: str,
    addresses: Sequence[Address],
    catalogue: Catalogue,
    scenarios: Sequence[Scenario],
    *,
    timing: Timing,
    profile: str = RFC,
    ports: Mapping[str, Address] | None = None,
    on_result: Callable[[Result], None] = lambda result: None,
    rotation_limit: float = ROTATION_LIMIT,
    skipped: Sequence[Skipped] = (),
    tls: Contexts | None = None,
    http2: bool = False,
) -> Report:
    """Serve the catalogue at every address and each connection-level scenario at its port (over
    TLS with `tls`), check through the proxy (speaking HTTP/2 to the upstream with `http2`), stop serving."""
    async with serving(catalogue, addresses, timing=timing, ports=ports, tls=tls) as served:
        return await check(proxy_url, scenarios, served.journal, timing=timing, profile=profile, members=served.members,
                           on_result=on_result, rotation_limit=rotation_limit, skipped=skipped, http2=http2)
