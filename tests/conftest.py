"""Shared fixtures: a catalogue loaded once, and upstreams started inside the test's nursery."""

from __future__ import annotations

import http.client

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.plan.actions import Response
from chaos_upstream.records import ActionRecord, RequestRecord
from chaos_upstream.server.upstream import Settings, Upstream

T = 0.2
"""The proxy timeout the wire tests use: short enough to keep the suite fast, long enough to measure."""

CATALOGUE = Catalogue.load()

StartUpstream = Callable[..., Awaitable[Upstream]]


@pytest.fixture
def catalogue() -> Catalogue:
    return CATALOGUE


@pytest.fixture
async def start_upstream(nursery: Any) -> StartUpstream:
    """Start an Upstream on 127.0.0.1 with a free port (T = 0.2 s); it stops with the test."""

    async def start(catalogue: Catalogue = CATALOGUE, **overrides: Any) -> Upstream:
        settings = Settings(port=0, timing=Timing(T), **overrides)
        upstream = Upstream(catalogue, settings)
        await nursery.start(upstream.run)
        return upstream

    return start


def get(path: str = "/", scenario: str | None = None, *, probe: str | None = None, extra: str = "") -> bytes:
    """A GET request's bytes, naming the scenario and probe when given."""
    lines = [f"GET {path} HTTP/1.1", "Host: upstream.test"]
    if scenario:
        lines.append(f"X-Chaos-Scenario: {scenario}")
    if probe:
        lines.append(f"X-Chaos-Probe: {probe}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


async def refused(address) -> bool:
    """Whether a connection to `address` is refused (nothing listens there)."""
    import trio

    with trio.socket.socket() as sock:
        try:
            await sock.connect(address)
        except ConnectionRefusedError:
            return True
    return False


async def settled(journal, *, type: str, count: int, limit: float = 2.0) -> list[dict]:
    """The journal's records of `type` once there are `count` of them (records land when things end)."""
    import trio

    with trio.fail_after(limit):
        while len(records := journal.records(type=type)) < count:
            await trio.sleep(0.005)
    return records


async def check_through(name: str, workdir, only=(), proxy_timeout: float = 0.5):
    """(report, proxy): the real proxy `name` (skipped when not installed) checked for `only`
    (default: every request-level scenario) as the matrix does, with its effective timeout."""
    from chaos_upstream.matrix import check_through as matrix_check_through
    from chaos_upstream.proxies import require
    from chaos_upstream.verifier.check import choose_scenarios

    launcher = require(name)
    timing = Timing(launcher.effective_timeout(proxy_timeout))
    return await matrix_check_through(launcher, CATALOGUE, choose_scenarios(CATALOGUE, list(only)), timing, workdir)


@pytest.fixture
async def nginx_with_admin(nursery: Any, tmp_path: Any) -> Any:
    """(proxy URL, admin URL, journal): real nginx (T = 0.2 s) in front of an upstream whose admin API
    serves its journal, as a sidecar's would."""
    from chaos_upstream.matrix import running
    from chaos_upstream.proxies import require
    from chaos_upstream.server.admin import Admin
    from chaos_upstream.server.control import Local
    from chaos_upstream.server.fleet import Fleet
    from chaos_upstream.server.journal import Journal

    journal = Journal()
    fleet = Fleet(CATALOGUE, [Settings(port=0, timing=Timing(T))], journal)
    await nursery.start(fleet.run)
    [(host, port)] = await nursery.start(Admin(Local(fleet, "healthy", Timing(T)), None).run, "127.0.0.1", 0)
    async with running(require("nginx"), fleet.addresses, T, tmp_path) as proxy:
        yield proxy.url, f"http://{host}:{port}", journal


def request_record(n: int, target: str = "/", probe: str | None = None, **fields: Any) -> RequestRecord:
    """A request record shaped like the server's, with `target`, `probe` and any other `fields` as given."""
    return RequestRecord(**{
        "t": 1.5 + n, "conn": n, "seq": 1, "method": "GET", "target": target, "scenario": "healthy",
        "chosen_by": "default", "probe": probe, "body_bytes": 0, "rule": None,
        "response": Response(status=200, content_length=2, head_complete=True, body_bytes=2),
        "actions": (ActionRecord("send", 1.5 + n, 80), ActionRecord("keep-alive", 1.5 + n)),
        "ended": "keep-alive", "duration": 0.001, **fields,
    })


def admin_call(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """(status, body) of one admin call (http.client undoes the chunked framing of journal pages)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        reply = connection.getresponse()
        return reply.status, reply.read()
    finally:
        connection.close()
