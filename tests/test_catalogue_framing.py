"""Every built-in scenario whose expected outcome is the upstream's own status is well-framed: a
correct proxy passes that response on as it is, so it must parse completely, with nothing extra."""

from __future__ import annotations

import random

import h11
import trio

from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.plan import planner
from chaos_upstream.plan.request import RequestInfo
from chaos_upstream.verifier.capture import capture
from chaos_upstream.verifier.exchange import Capture

from conftest import CATALOGUE, T, get

LIMIT = 4.5 * T
"""The client's own time limit: past the slowest scenario's last byte (drip-body, 3T)."""


def passed_on(scenario: Scenario) -> bool:
    """Whether a correct proxy is expected to give the client the upstream's own final status."""
    if scenario.trigger != "request" or scenario.timeline or scenario.http2:  # HTTP/2's frames: test_h2_serve.py
        return False
    plan = planner.plan(scenario, RequestInfo("GET", "/"), random.Random(0), Timing(T), CATALOGUE.get)
    return plan.response.status in scenario.expect.outcomes


def parse(seen: Capture) -> tuple[h11.Response, bytes, bytes]:
    """(the final response, its body, the bytes after it) as an HTTP/1.1 client reads `seen`;
    raises unless the response is complete (the connection's FIN ends a close-delimited body)."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "upstream.test")]))
    client.receive_data(seen.data)
    if seen.ending == "fin":
        client.receive_data(b"")
    response, body = None, b""
    while not isinstance(event := client.next_event(), h11.EndOfMessage):
        assert event is not h11.NEED_DATA, f"incomplete after {len(seen.data)} bytes"
        if isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
    assert response is not None
    return response, body, client.trailing_data[0]


async def test_every_scenario_a_proxy_passes_on_is_well_framed(start_upstream):
    names = sorted(scenario.name for scenario in CATALOGUE if passed_on(scenario))
    assert {"healthy", "slow-response", "drip-body", "close-delimited-body", "upstream-502"} <= set(names)
    upstream = await start_upstream()
    seen: dict[str, Capture] = {}

    async def fetch(name: str) -> None:
        seen[name] = await capture(*upstream.addresses[0], get(scenario=name), limit=LIMIT)

    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(fetch, name)
    for name in names:
        response, body, extra = parse(seen[name])
        lengths = [int(value) for field, value in response.headers if field == b"content-length"]
        assert response.status_code in CATALOGUE.get(name).expect.outcomes, name
        assert (lengths in ([], [len(body)]), extra) == (True, b""), name
