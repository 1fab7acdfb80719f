"""The HTTP/2 throughput baseline: the simplest honest trio + h2 server (h2c, prior knowledge).

Answers every request with what chaos-upstream's `healthy` scenario sends over HTTP/2 (a HEADERS
frame of :status 200, content-type and content-length, then the 24-byte body with END_STREAM), so
`benchmarks/h2_throughput.py` can tell chaos-upstream's overhead apart from what trio + h2 cost
anyway. Listens on 127.0.0.1 (a free port), prints `listening on http://127.0.0.1:PORT` when ready,
exits 0 on SIGTERM.

With `--hold` it is the HTTP/2 reference of `benchmarks/held_memory.py` instead: it reads each
connection's first request, prints `holding K` (K: the requests read so far), and never answers.

    python benchmarks/bare_trio_h2.py [--hold]
"""

from __future__ import annotations

import argparse
import signal
from functools import partial

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import trio

BODY = b"chaos-upstream: healthy\n"
HEADERS = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]
CONFIG = h2.config.H2Configuration(client_side=False, header_encoding=None)


async def serve_connection(stream: trio.SocketStream, held: list[int] | None = None) -> None:
    """Answer every request on one connection until the peer leaves or breaks the protocol; with
    `held` (one element: the count), read one request instead, count it, say so, and never answer."""
    conn = h2.connection.H2Connection(CONFIG)
    conn.initiate_connection()
    async with stream:
        try:
            await stream.send_all(conn.data_to_send())
            while data := await stream.receive_some():
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived) and held is not None:
                        held[0] += 1
                        print(f"holding {held[0]}", flush=True)
                        await stream.send_all(conn.data_to_send())
                        await trio.sleep_forever()
                    if isinstance(event, h2.events.RequestReceived):
                        conn.send_headers(event.stream_id, HEADERS)
                        conn.send_data(event.stream_id, BODY, end_stream=True)
                    elif isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                await stream.send_all(conn.data_to_send())
        except (h2.exceptions.ProtocolError, trio.BrokenResourceError):
            return


async def main(hold: bool) -> None:
    handler = partial(serve_connection, held=[0]) if hold else serve_connection
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        print(f"listening on http://127.0.0.1:{listeners[0].socket.getsockname()[1]}", flush=True)
        nursery.start_soon(trio.serve_listeners, handler, listeners)
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The bare trio + h2 server of the HTTP/2 benchmarks.")
    parser.add_argument("--hold", action="store_true", help="hold each connection's first request, never answer")
    trio.run(main, parser.parse_args().hold)
