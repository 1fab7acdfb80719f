"""What every chaos upstream of a test suite is, whichever loop it runs in: a fleet on free ports.

An upstream is a fleet of `members` (one unless asked) serving the catalogue on free ports, plus a
port of its own for each connection-level scenario (`routes`: what a proxy must send `/_chaos/NAME/`
to), all writing to one journal, which judges every probe.  `in_loop.AsyncChaosUpstream` runs in
the caller's trio loop, `in_thread.ChaosUpstream` in a thread of its own; both are a
`BaseChaosUpstream`.

Invariants:
- A catalogue is loaded once per process for each set of paths (it is immutable).
- Each test collects the upstreams opened while it runs (`watching`), so the plugin can report them.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from chaos_upstream.harness.serving import Served
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.plan.selection import route_prefix
from chaos_upstream.proxies import RunningProxy
from chaos_upstream.proxies.settings import UpstreamTls
from chaos_upstream.proxies.ports import host_port
from chaos_upstream.verifier.probe import Result

Address = tuple[str, int]
Proxy = str | RunningProxy
"""What a probe goes through: a proxy's URL, or a proxy started by a launcher (its profile judges)."""
Headers = Mapping[str, str] | Iterable[tuple[str, str]]


@functools.cache
def _catalogue(paths: tuple[Path, ...]) -> Catalogue:
    return Catalogue.load(paths)


def load_catalogue(paths: Iterable[str | Path] = ()) -> Catalogue:
    """The built-in scenarios plus those in the files or folders at `paths`; loaded once per
    process for each set of paths (a catalogue is immutable), so a fresh upstream per test is cheap."""
    return _catalogue(tuple(Path(path).resolve() for path in paths))


_watchers: list[list[Any]] = []


@contextlib.contextmanager
def watching() -> Iterator[list[Any]]:
    """Collect every upstream opened inside the block, except those a nested block collects."""
    opened: list[Any] = []
    _watchers.append(opened)
    try:
        yield opened
    finally:
        _watchers.remove(opened)


def announce(upstream: Any) -> None:
    """Hand `upstream` to the innermost `watching` block, if any."""
    if _watchers:
        _watchers[-1].append(upstream)


def checked_options(scenarios: Iterable[str | Path], proxy_timeout: float, members: int) -> tuple[Catalogue, Timing]:
    """The catalogue and timing of an upstream, once its options are checked."""
    if not proxy_timeout > 0:
        raise ValueError(f"proxy_timeout must be a positive number of seconds, not {proxy_timeout!r}")
    if members < 1:
        raise ValueError(f"members must be 1 or more, not {members!r}")
    return load_catalogue(scenarios), Timing(proxy_timeout)


class BaseChaosUpstream:
    """What both kinds of upstream share: where they listen, their scenarios and timing, the
    active scenario, and the probes made (`results`, for failure reports)."""

    def __init__(self, catalogue: Catalogue, timing: Timing, served: Served, results: list[Result], tls: UpstreamTls | None = None) -> None:
        self.catalogue = catalogue
        self.timing = timing
        self._served = served
        self.results = results
        self.tls = tls
        """With `tls=True`: what a proxy needs to speak TLS to it (the CA to trust, a client
        certificate it may present), files that live as long as the upstream; else None."""

    @property
    def tls_ca(self) -> Path | None:
        """With `tls=True`: the CA file (PEM) a proxy must trust to verify the upstream."""
        return None if self.tls is None else self.tls.ca

    @property
    def proxy_timeout(self) -> float:
        """T: the read timeout the proxy in front is (to be) configured with, in seconds."""
        return self.timing.proxy_timeout

    @property
    def addresses(self) -> list[Address]:
        """Every member's (host, port): what a proxy balances over."""
        return self._served.addresses

    @property
    def address(self) -> Address:
        return self.addresses[0]

    @property
    def host(self) -> str:
        return self.address[0]

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{host_port(*self.address)}"

    @property
    def routes(self) -> dict[str, Address]:
        """Path prefix -> address: each connection-level scenario's own port."""
        return self._served.routes

    @property
    def active(self) -> str:
        """The scenario for requests that name none (`healthy` unless set); set None to go back."""
        member = self._served.members[0]
        return member.active or member.settings.default

    @active.setter
    def active(self, name: str | None) -> None:
        if name is not None and self.catalogue.get(name).trigger == "refuse":
            raise ValueError(f"{name!r} cannot answer on a port that listens: it has a port of its own, "
                             f"which a proxy reaches through {route_prefix(name)}")
        for member in self._served.members:
            member.serve(name)

    def scenario(self, scenario: str | Scenario) -> Scenario:
        """The catalogue's scenario of that name; a timeline must fit the fleet."""
        chosen = self.catalogue.get(scenario if isinstance(scenario, str) else scenario.name)
        if len(self._served.members) < chosen.min_members:
            raise ValueError(f"{chosen.name!r} needs a fleet of {chosen.min_members} members; "
                             f"this upstream has {len(self._served.members)} (members=...)")
        return chosen


def proxy_targets(upstream: Any, proxy_timeout: float) -> tuple[list[Address], dict[str, Address], float, UpstreamTls | None]:
    """(addresses, routes, timeout, TLS) for a proxy in front of `upstream`: a chaos upstream (all
    its members, its connection-level routes, its T, its TLS settings), or an address, or a list of
    addresses (with `proxy_timeout`, plain HTTP).  A fleet of chaos upstreams is one upstream with
    `members`: one journal must see every attempt for a probe to be judged."""
    if isinstance(upstream, BaseChaosUpstream):
        return upstream.addresses, upstream.routes, upstream.proxy_timeout, upstream.tls
    addresses: Sequence[Any] = [upstream] if isinstance(upstream, tuple) else upstream
    if not all(isinstance(address, tuple) and len(address) == 2 for address in addresses):
        raise TypeError(f"a proxy goes in front of a chaos upstream, a (host, port) or a list of them, "
                        f"not {upstream!r}; for a fleet of chaos upstreams, give one members=N")
    return list(addresses), {}, proxy_timeout, None
