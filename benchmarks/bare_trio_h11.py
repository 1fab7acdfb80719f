"""The throughput baseline: the simplest honest trio + h11 keep-alive HTTP/1.1 server.

Answers every request with the bytes chaos-upstream's `healthy` scenario sends, written through
h11's own writer, so `benchmarks/throughput.py` can tell chaos-upstream's overhead apart from what
trio + h11 cost anyway. Listens on 127.0.0.1 (a free port), prints `listening on
http://127.0.0.1:PORT` when ready, exits 0 on SIGTERM.

With `--hold` it is the reference of `benchmarks/held_memory.py` instead: it reads each
connection's first request head, prints `holding K` (K: the heads read so far), and never answers.

    python benchmarks/bare_trio_h11.py [--hold]
"""

from __future__ import annotations

import argparse
import signal
from functools import partial

import h11
import trio

BODY = b"chaos-upstream: healthy\n"
RESPONSE = (
    h11.Response(
        status_code=200, reason=b"OK", headers=[("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]
    ),
    h11.Data(data=BODY),
    h11.EndOfMessage(),
)


async def serve_connection(stream: trio.SocketStream) -> None:
    """Answer requests on one connection until the peer closes it, asks to close, or breaks HTTP."""
    conn = h11.Connection(h11.SERVER)
    async with stream:
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some())
                elif isinstance(event, h11.Request):
                    await stream.send_all(b"".join(conn.send(part) for part in RESPONSE))
                elif isinstance(event, h11.EndOfMessage):
                    if conn.our_state is not h11.DONE:
                        return
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return
        except (h11.RemoteProtocolError, trio.BrokenResourceError):
            return


async def hold_connection(stream: trio.SocketStream, held: list[int]) -> None:
    """Read one request head, count it in `held` (one element: the count) and say so, then never answer."""
    conn = h11.Connection(h11.SERVER)
    async with stream:
        try:
            while (event := conn.next_event()) is h11.NEED_DATA:
                if not (data := await stream.receive_some()):
                    return
                conn.receive_data(data)
        except (h11.RemoteProtocolError, trio.BrokenResourceError):
            return
        if isinstance(event, h11.Request):
            held[0] += 1
            print(f"holding {held[0]}", flush=True)
            await trio.sleep_forever()


async def main(hold: bool) -> None:
    handler = partial(hold_connection, held=[0]) if hold else serve_connection
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            print(f"listening on http://127.0.0.1:{listeners[0].socket.getsockname()[1]}", flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The bare trio + h11 reference server of benchmarks/.")
    parser.add_argument("--hold", action="store_true", help="read each first request head and never answer")
    trio.run(main, parser.parse_args().hold)
