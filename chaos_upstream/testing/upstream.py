"""Chaos upstreams for test suites: on free ports, in the caller's trio loop or in a thread of their own.

    async with open_chaos_upstream(proxy_timeout=0.5) as upstream:   # in a trio test
        result = await upstream.probe(proxy_url, "slow-headers")

    with ChaosUpstream(proxy_timeout=0.5) as upstream:                # anywhere else
        result = upstream.probe(proxy_url, "slow-headers")

An upstream is a fleet of `members` (one unless asked) serving the catalogue on free ports, plus a
port of its own for each connection-level scenario (`routes`: what a proxy must send `/_chaos/NAME/`
to), all writing to one journal, which judges every probe.

Invariants:
- Leaving the block stops every listener and cuts every connection at once: the end of a test is
  not a deploy, and nothing waits for a grace period.
- A ChaosUpstream's loop runs in a thread of its own; every call into it goes through `_call`, which
  works from any thread, a trio loop's included (trio.from_thread refuses those).  The exception that
  ended its loop, if one did, is raised in the caller's thread exactly once, as UpstreamCrashed: by
  the next probe, by `raise_if_crashed()` or by `close()`.
- Each test collects the upstreams opened while it runs (`watching`), so the plugin can report them.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import trio
import trio.testing

from chaos_upstream.errors import unwrap
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.plan.selection import route_prefix
from chaos_upstream.proxies import RunningProxy, UnknownProxy, get_launcher
from chaos_upstream.proxies.launcher import LOOPBACK, host_port
from chaos_upstream.server.journal import Journal, Record
from chaos_upstream.verifier.check import Served, serving
from chaos_upstream.verifier.judge import RFC
from chaos_upstream.verifier.probe import Result
from chaos_upstream.verifier.stream import ROTATION_EVERY, ROTATION_LIMIT, in_rotation, probe_scenario

Address = tuple[str, int]
Proxy = str | RunningProxy
"""What a probe goes through: a proxy's URL, or a proxy started by a launcher (its profile judges)."""
Headers = Mapping[str, str] | Iterable[tuple[str, str]]

STOP_LIMIT = 10.0
"""Seconds a ChaosUpstream's thread has to end once told to stop: cancelling takes milliseconds."""


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


def _announce(upstream: Any) -> None:
    if _watchers:
        _watchers[-1].append(upstream)


class UpstreamStopped(RuntimeError):
    """A call into a ChaosUpstream whose loop has ended."""


class UpstreamCrashed(RuntimeError):
    """A ChaosUpstream's loop ended with an exception (its cause): a bug, or a scenario it cannot serve."""


class _Common:
    """What both kinds of upstream share: where they listen, their scenarios and timing, the
    active scenario, and the probes made (`results`, for failure reports)."""

    def __init__(self, catalogue: Catalogue, timing: Timing, served: Served, results: list[Result]) -> None:
        self.catalogue = catalogue
        self.timing = timing
        self._served = served
        self.results = results

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
        return f"http://{host_port(*self.address)}"

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


class AsyncChaosUpstream(_Common):
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


def _options(scenarios: Iterable[str | Path], proxy_timeout: float, members: int) -> tuple[Catalogue, Timing]:
    if not proxy_timeout > 0:
        raise ValueError(f"proxy_timeout must be a positive number of seconds, not {proxy_timeout!r}")
    if members < 1:
        raise ValueError(f"members must be 1 or more, not {members!r}")
    return load_catalogue(scenarios), Timing(proxy_timeout)


@contextlib.asynccontextmanager
async def _serving(catalogue: Catalogue, timing: Timing, members: int, host: str) -> AsyncIterator[AsyncChaosUpstream]:
    """Serve until the block ends; an error of the block or of the upstream comes out as itself,
    not wrapped in the exception groups of the nurseries it crossed."""
    __tracebackhide__ = True
    ports = {scenario.name: (host, 0) for scenario in catalogue if scenario.connection_level}
    try:
        async with serving(catalogue, [(host, 0)] * members, timing=timing, ports=ports) as served:
            yield AsyncChaosUpstream(catalogue, timing, served, [])
    except BaseExceptionGroup as group:
        sole = unwrap(group, BaseException)
        if sole is None:
            raise
        raise sole from sole.__cause__


@contextlib.asynccontextmanager
async def open_chaos_upstream(
    *, scenarios: Iterable[str | Path] = (), proxy_timeout: float = 1.0, members: int = 1, host: str = LOOPBACK
) -> AsyncIterator[AsyncChaosUpstream]:
    """An upstream in the caller's trio loop, for the block: the built-in scenarios plus the files
    or folders at `scenarios`, T = `proxy_timeout`, a fleet of `members`, on free ports of `host`."""
    __tracebackhide__ = True
    catalogue, timing = _options(scenarios, proxy_timeout, members)
    async with _serving(catalogue, timing, members, host) as upstream:
        _announce(upstream)
        yield upstream


class ChaosUpstream(_Common):
    """An upstream serving from a thread of its own, for synchronous code: running once constructed,
    stopped by `close()` or at the end of a `with` block.  Same options as `open_chaos_upstream`."""

    def __init__(
        self, *, scenarios: Iterable[str | Path] = (), proxy_timeout: float = 1.0, members: int = 1, host: str = LOOPBACK
    ) -> None:
        catalogue, timing = _options(scenarios, proxy_timeout, members)
        self._error: BaseException | None = None
        self._reported = False
        ready = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(catalogue, timing, members, host, ready),
                                        name="chaos-upstream", daemon=True)
        self._thread.start()
        ready.wait()
        if self._error is not None:  # it could not start
            self._thread.join()
            raise self._error
        inner = self._inner
        super().__init__(catalogue, timing, inner._served, inner.results)
        self.journal = _ThreadJournal(self, inner.journal)
        """Every connection and request the upstream handled: `.records(probe=..., type=...)`."""
        _announce(self)

    def _main(self, catalogue: Catalogue, timing: Timing, members: int, host: str, ready: threading.Event) -> None:
        try:
            trio.run(self._serve, catalogue, timing, members, host, ready)
        except BaseException as exc:  # noqa: BLE001: whatever ended the loop is raised in the caller's thread
            self._error = exc
        finally:
            ready.set()

    async def _serve(self, catalogue: Catalogue, timing: Timing, members: int, host: str, ready: threading.Event) -> None:
        async with _serving(catalogue, timing, members, host) as inner:
            self._inner, self._token, self._stopping = inner, trio.lowlevel.current_trio_token(), trio.Event()
            ready.set()
            await self._stopping.wait()

    def probe(self, proxy: Proxy, scenario: str | Scenario, **options: Any) -> Result:
        """As `AsyncChaosUpstream.probe`, blocking until judged."""
        try:
            return self._call(functools.partial(self._inner.probe, proxy, scenario, **options))
        except UpstreamStopped:
            self.raise_if_crashed()
            raise

    def in_rotation(self, proxy: Proxy, **options: Any) -> float | None:
        """As `AsyncChaosUpstream.in_rotation`, blocking until it knows."""
        return self._call(functools.partial(self._inner.in_rotation, proxy, **options))  # type: ignore[no-any-return]

    def raise_if_crashed(self) -> None:
        """Raise UpstreamCrashed from the exception that ended the upstream's loop, the first time
        it is asked."""
        __tracebackhide__ = True
        if self._thread.is_alive():
            with contextlib.suppress(UpstreamStopped):
                self._call(trio.testing.wait_all_tasks_blocked)  # a loop going down has ended after it
        if self._error is not None and not self._reported:
            self._reported = True
            raise UpstreamCrashed(f"the chaos upstream at {self.url} crashed: {self._error!r}") from self._error

    def close(self) -> None:
        """Stop serving, cut every connection, end the thread; raise what crashed the loop, if unreported."""
        if self._thread.is_alive():
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._stopping.set)
            self._thread.join(STOP_LIMIT)
            if self._thread.is_alive():
                raise RuntimeError(f"the chaos upstream at {self.url} did not stop within {STOP_LIMIT} s")
        self.raise_if_crashed()

    def __enter__(self) -> ChaosUpstream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, fn: Callable[[], Any]) -> Any:
        """`fn()` run in the upstream's loop (and awaited, if it returns an awaitable): its result or
        exception, here.  UpstreamStopped, once the thread is over, if the loop is not running."""
        done: Future[Any] = Future()

        async def run() -> None:
            try:
                value = fn()
                done.set_result(await value if inspect.isawaitable(value) else value)
            except trio.Cancelled:
                done.set_exception(UpstreamStopped(f"the chaos upstream at {self.url} stopped during the call"))
                raise
            except BaseException as exc:  # noqa: BLE001: the caller's, not the loop's
                done.set_exception(exc)

        def spawn() -> None:
            try:
                trio.lowlevel.spawn_system_task(run)
            except RuntimeError:  # the run is shutting down
                done.set_exception(UpstreamStopped(f"the chaos upstream at {self.url} is stopping"))

        try:
            self._token.run_sync_soon(spawn)
            return done.result()
        except (trio.RunFinishedError, UpstreamStopped):
            self._thread.join(STOP_LIMIT)
            raise UpstreamStopped(f"the chaos upstream at {self.url} is not running") from None


class _ThreadJournal:
    """A ChaosUpstream's journal, read from the upstream's own loop (never mid-write)."""

    def __init__(self, upstream: ChaosUpstream, journal: Journal) -> None:
        self._upstream = upstream
        self._journal = journal

    def records(self, *, probe: str | None = None, type: str | None = None, running: bool = False) -> list[Record]:
        read = functools.partial(self._journal.records, probe=probe, type=type, running=running)
        try:
            return self._upstream._call(read)
        except UpstreamStopped:
            return read()  # no writer is left


def proxy_targets(upstream: Any, proxy_timeout: float) -> tuple[list[Address], dict[str, Address], float]:
    """(addresses, routes, timeout) for a proxy in front of `upstream`: a chaos upstream (all its
    members, its connection-level routes, its T), or an address, or a list of addresses (with
    `proxy_timeout`).  A fleet of chaos upstreams is one upstream with `members`: one journal must
    see every attempt for a probe to be judged."""
    if isinstance(upstream, _Common):
        return upstream.addresses, upstream.routes, upstream.proxy_timeout
    addresses: Sequence[Any] = [upstream] if isinstance(upstream, tuple) else upstream
    if not all(isinstance(address, tuple) and len(address) == 2 for address in addresses):
        raise TypeError(f"a proxy goes in front of a chaos upstream, a (host, port) or a list of them, "
                        f"not {upstream!r}; for a fleet of chaos upstreams, give one members=N")
    return list(addresses), {}, proxy_timeout
