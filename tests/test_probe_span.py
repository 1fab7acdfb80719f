"""A probe's span runs from when its request went out to its answer: the connection's set-up, slow
on a loaded machine, is not part of it, so a stream counts an answer in the window (a member down)
that it really came in, not in the one before."""

import trio

from chaos_upstream.model.durations import Timing
from chaos_upstream.verifier.probe import send_probe

from conftest import CATALOGUE, T

SLOW_CONNECT = 0.1


async def test_a_slow_connect_is_not_time_the_request_was_out(start_upstream, monkeypatch):
    upstream = await start_upstream()
    host, port = upstream.addresses[0]
    connect = trio.open_tcp_stream

    async def slowly(*args, **kwargs):  # the probe's connect only: the upstream accepts, it connects to nothing
        await trio.sleep(SLOW_CONNECT)
        return await connect(*args, **kwargs)

    monkeypatch.setattr(trio, "open_tcp_stream", slowly)
    began = trio.current_time()
    sample = await send_probe(f"http://{host}:{port}", CATALOGUE.get("healthy"), upstream.journal, timing=Timing(T), method="GET", body=b"")
    answered = trio.current_time()
    assert sample.observation.status == 200
    assert sample.sent >= began + SLOW_CONNECT
    assert sample.sent + sample.observation.elapsed <= answered
