"""A chaos upstream in the caller's trio loop, for the block:

    async with open_chaos_upstream(proxy_timeout=0.5) as upstream:   # in a trio test
        result = await upstream.probe(proxy_url, "slow-headers")

Invariants:
- Leaving the block stops every listener and cuts every connection at once: the end of a test is
  not a deploy, and nothing waits for a grace period.
- An error of the block or of the upstream comes out as itself, not wrapped in the exception
  groups of the nurseries it crossed.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path

from chaos_upstream.errors import unwrap
from chaos_upstream.harness.serving import serving
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.proxies import UnknownProxy, get_launcher
from chaos_upstream.proxies.ports import LOOPBACK
from chaos_upstream.proxies.tls_setup import tls_material
from chaos_upstream.server.journal import Journal
from chaos_upstream.testing.upstream import BaseChaosUpstream, Headers, Proxy, announce, checked_options
from chaos_upstream.verifier.judge import RFC
from chaos_upstream.verifier.probe import Result
from chaos_upstream.verifier.series import ROTATION_EVERY, ROTATION_LIMIT, in_rotation, probe_scenario


class AsyncChaosUpstream(BaseChaosUpstream):
    """An upstream running in the caller's trio loop (from `open_chaos_upstream`)."""

    @property
    def journal(self) -> Journal:
        """Every connection and request the upstream handled: `.records(probe=..., type=...)`."""
        return self._served.journal

    async def probe(
        self,
        proxy: Proxy,
        scenario: str | Scenario,
        *,
        method: str | None = None,
        path: str | None = None,
        body: bytes | str | None = None,
        headers: Headers = (),
        profile: str | None = None,
        limit: float | None = None,
    ) -> Result:
        """Send `scenario`'s probe through `proxy` and judge what came back (`.verdict`, `.observed`,
        `.explain()`).  The profile defaults to the launcher's for a started proxy, else `rfc`;
        method and body to the scenario's own.  A scenario probed by a stream (a deploy, a race)
        takes no request options: its stream is its own."""
        url, profile = _judged_as(proxy, profile)
        result = await probe_scenario(
            url, self.scenario(scenario), self.journal, timing=self.timing, profile=profile, members=self._served.members,
            method=method, path=path, body=body.encode("latin-1") if isinstance(body, str) else body,
            headers=tuple(headers.items() if isinstance(headers, Mapping) else headers), limit=limit,
        )
        self.results.append(result)
        return result

    async def in_rotation(self, proxy: Proxy, *, limit: float = ROTATION_LIMIT) -> float | None:
        """Seconds until `proxy` sends requests to every member again (4 probes per member in a row
        get a 200, from every member), or None after `limit` seconds.  Through a fleet, call it
        between probes, so that the proxy's passive health check does not carry one probe's fault
        over to the next (as `check` does)."""
        url, _ = _judged_as(proxy, None)
        return await in_rotation(url, self.scenario("healthy"), self.journal, self._served.members, timing=self.timing,
                                 every=ROTATION_EVERY, limit=limit)


def _judged_as(proxy: Proxy, profile: str | None) -> tuple[str, str]:
    """The proxy's URL and the profile to judge by."""
    if isinstance(proxy, str):
        return proxy, profile or RFC
    if profile is None:
        try:
            profile = get_launcher(proxy.name).profile
        except UnknownProxy:
            profile = RFC
    return proxy.url, profile


@contextlib.asynccontextmanager
async def serving_upstream(catalogue: Catalogue, timing: Timing, members: int, host: str, tls: bool = False) -> AsyncIterator[AsyncChaosUpstream]:
    """Serve until the block ends (over TLS with `tls`: a CA of its own, whose files last as long);
    an error of the block or of the upstream comes out as itself, not wrapped in the exception
    groups of the nurseries it crossed."""
    __tracebackhide__ = True
    ports = {scenario.name: (host, 0) for scenario in catalogue if scenario.connection_level}
    try:
        with tempfile.TemporaryDirectory(prefix="chaos-upstream-tls-") if tls else contextlib.nullcontext() as folder:
            contexts, files = tls_material(catalogue, Path(folder)) if folder else (None, None)
            async with serving(catalogue, [(host, 0)] * members, timing=timing, ports=ports, tls=contexts) as served:
                yield AsyncChaosUpstream(catalogue, timing, served, [], files)
    except BaseExceptionGroup as group:
        sole = unwrap(group, BaseException)
        if sole is None:
            raise
        raise sole from sole.__cause__


@contextlib.asynccontextmanager
async def open_chaos_upstream(
    *, scenarios: Iterable[str | Path] = (), proxy_timeout: float = 1.0, members: int = 1, host: str = LOOPBACK, tls: bool = False,
) -> AsyncIterator[AsyncChaosUpstream]:
    """An upstream in the caller's trio loop, for the block: the built-in scenarios plus the files
    or folders at `scenarios`, T = `proxy_timeout`, a fleet of `members`, on free ports of `host`;
    over TLS with `tls` (`upstream.tls_ca` is the CA a proxy must trust)."""
    __tracebackhide__ = True
    catalogue, timing = checked_options(scenarios, proxy_timeout, members)
    async with serving_upstream(catalogue, timing, members, host, tls) as upstream:
        announce(upstream)
        yield upstream
