"""The pytest plugin (entry point `pytest11`): chaos upstreams and real proxies as fixtures.

    def test_a_hung_upstream_becomes_a_504(chaos_upstream, chaos_proxy):
        nginx = chaos_proxy("nginx", chaos_upstream)
        assert_verdict(chaos_upstream.probe(nginx, "never-respond"))

Fixtures: `chaos_upstream` (a ChaosUpstream, in a thread of its own), `chaos_upstream_async` (an
AsyncChaosUpstream in the test's trio loop, with pytest-trio) and `chaos_proxy` (a factory that
starts a real proxy in front of an upstream).  Configuration, closest first: the markers
`chaos_upstream(proxy_timeout=..., members=..., tls=...)` and `chaos_scenarios(path, ...)` (paths relative to
the test file), then the ini options `chaos_upstream_proxy_timeout` and `chaos_upstream_scenarios`
(paths relative to the ini file).

Invariants: every upstream and proxy a test starts is stopped at its teardown; an exception that
crashed a `chaos_upstream`'s loop fails the test during which it happened; a failed test's report
explains its probes and shows each of its proxies' error log.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos_upstream.errors import ConfigError
from chaos_upstream.proxies import RunningProxy, require
from chaos_upstream.testing.failures import failure_sections
from chaos_upstream.testing.in_loop import open_chaos_upstream
from chaos_upstream.testing.in_thread import ChaosUpstream
from chaos_upstream.testing.upstream import load_catalogue, proxy_targets, watching

OPENED = pytest.StashKey[list[Any]]()
"""The chaos upstreams opened during the test."""
PROXIES = pytest.StashKey[list[RunningProxy]]()
"""The proxies `chaos_proxy` started for the test."""

MARKER_OPTIONS = ("proxy_timeout", "members", "tls")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("chaos_upstream_proxy_timeout", "chaos-upstream: T, the read timeout (seconds) of the "
                  "proxies under test, which timing scenarios are written against (default 1.0)", default="1.0")
    parser.addini("chaos_upstream_scenarios", "chaos-upstream: scenario files or folders added to the built-in "
                  "catalogue, relative to the ini file", type="paths", default=[])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos_scenarios(*paths): scenario files or folders, relative to the test "
                            "file, added to this test's chaos upstream catalogue")
    config.addinivalue_line("markers", "chaos_upstream(proxy_timeout=None, members=None, tls=False): this test's chaos "
                            "upstream: T in seconds, the size of its fleet, and whether it serves TLS")
    _ini_timeout(config)


def _ini_timeout(config: pytest.Config) -> float:
    text = config.getini("chaos_upstream_proxy_timeout")
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise pytest.UsageError(f"chaos_upstream_proxy_timeout: {text!r} is not a positive number of seconds")
    return seconds


def _marked(node: pytest.Item, config: pytest.Config) -> dict[str, Any]:
    """proxy_timeout and members of the test's chaos upstream: the ini option, then the
    `chaos_upstream` markers from the farthest to the closest, which wins."""
    options: dict[str, Any] = {"proxy_timeout": _ini_timeout(config)}
    for mark in reversed(list(node.iter_markers("chaos_upstream"))):
        unknown = set(mark.kwargs) - set(MARKER_OPTIONS)
        if mark.args or unknown:
            pytest.fail(f"@pytest.mark.chaos_upstream takes only {', '.join(MARKER_OPTIONS[:-1])} and {MARKER_OPTIONS[-1]}=..., "
                        f"not {', '.join(map(repr, mark.args)) or ', '.join(sorted(unknown))}", pytrace=False)
        options.update(mark.kwargs)
    return options


def upstream_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The options of the requesting test's chaos upstream; its scenario files are the ini
    option's, then those of the `chaos_scenarios` markers.  Bad scenario files fail the test with
    their `FILE:LINE: field: message` lines."""
    node = request.node
    scenarios: list[Path] = list(request.config.getini("chaos_upstream_scenarios"))
    for mark in reversed(list(node.iter_markers("chaos_scenarios"))):
        scenarios += [node.path.parent / path for path in mark.args]
    options = {**_marked(node, request.config), "scenarios": list(dict.fromkeys(scenarios))}
    try:
        load_catalogue(options["scenarios"])  # loaded once: the upstream gets the same catalogue
    except ConfigError as exc:
        problems = str(exc)
    else:
        return options
    pytest.fail(f"chaos-upstream scenario files:\n{problems}", pytrace=False)


@pytest.fixture
def chaos_upstream(request: pytest.FixtureRequest) -> Iterator[ChaosUpstream]:
    """A chaos upstream on free ports, serving from a thread of its own; stopped at teardown."""
    with ChaosUpstream(**upstream_options(request)) as upstream:
        yield upstream


@pytest.fixture
async def chaos_upstream_async(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A chaos upstream in the test's own trio loop (pytest-trio), with `await upstream.probe(...)`."""
    async with open_chaos_upstream(**upstream_options(request)) as upstream:
        yield upstream


@pytest.fixture
def chaos_proxy(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str, Any], RunningProxy]]:
    """`chaos_proxy(name, upstream)`: the real proxy `name` ("nginx", "haproxy", "nginx:deploy-safe",
    "envoy+h2": speaking HTTP/2 to the upstream, ...) started in front of `upstream` (a chaos upstream, a (host, port), or a list of those
    addresses), with the upstream's T as its timeout and the connection-level scenarios routed to
    their ports.  Skips the test when the proxy is not installed (fails it instead under
    CHAOS_UPSTREAM_REQUIRE_PROXIES=1); every proxy started is stopped at teardown."""
    started = request.node.stash[PROXIES]
    default_timeout = _marked(request.node, request.config)["proxy_timeout"]

    def start(name: str, upstream: Any) -> RunningProxy:
        product, http2 = name.removesuffix("+h2"), name.endswith("+h2")
        launcher = require(product)
        if http2:  # HTTP/2 to the upstream, which serves it on every port
            if not launcher.upstream_h2:
                pytest.fail(f"{product} cannot speak HTTP/2 to an upstream (see docs/proxies.md)", pytrace=False)
            launcher = dataclasses.replace(launcher, h2=True)
        addresses, routes, timeout, tls = proxy_targets(upstream, default_timeout)
        if tls is not None:  # a TLS upstream: the proxy verifies it with its CA, and presents its client certificate
            if launcher.upstream_tls == "none":
                pytest.fail(f"{name} cannot speak TLS to an upstream: put another proxy in front of a tls=True upstream", pytrace=False)
            launcher = dataclasses.replace(launcher, tls=tls)
        if launcher.effective_timeout(timeout) != timeout:
            least = f" and {launcher.min_timeout_s:g} s at least" if launcher.min_timeout_s else ""
            pytest.fail(f"{name} takes its upstream timeout in steps of {launcher.timeout_step_ms} ms{least}, so it "
                        f"would wait {launcher.effective_timeout(timeout)} s, not the T = {timeout} s the scenarios "
                        f"are timed for: set @pytest.mark.chaos_upstream(proxy_timeout=...) to one it takes", pytrace=False)
        workdir = tmp_path / f"chaos_proxy-{len(started)}-{launcher.slug}"
        proxy = launcher.start(addresses, timeout, workdir, routes)
        started.append(proxy)
        return proxy

    try:
        yield start
    finally:
        for proxy in started:
            proxy.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    with watching() as opened:
        item.stash[OPENED] = opened
        item.stash[PROXIES] = []
        try:
            return (yield)
        finally:
            del item.stash[OPENED], item.stash[PROXIES]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A crash of a threaded upstream's loop fails the test it happened in, with its exception."""
    __tracebackhide__ = True
    try:
        return (yield)
    finally:
        for upstream in item.stash[OPENED]:
            if isinstance(upstream, ChaosUpstream):
                upstream.raise_if_crashed()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    report = yield
    if report.failed and OPENED in item.stash:
        try:
            report.sections += failure_sections(item.stash[OPENED], item.stash[PROXIES], report.longreprtext)
        except Exception as exc:  # noqa: BLE001: a report that cannot say more must still be made
            report.sections.append(("chaos-upstream", f"could not describe the upstreams and proxies: {exc!r}"))
    return report
