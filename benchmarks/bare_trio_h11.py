"""The throughput baseline: the simplest honest trio + h11 keep-alive HTTP/1.1 server.

Answers every request with the bytes chaos-upstream's `healthy` scenario sends, written through
h11's own writer, so `benchmarks/throughput.py` can tell chaos-upstream's overhead apart from what
trio + h11 cost anyway. Listens on 127.0.0.1 (a free port), prints `listening on
http://127.0.0.1:PORT` when ready, exits 0 on SIGTERM.

    python benchmarks/bare_trio_h11.py
"""

from __future__ import annotations

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


async def main() -> None:
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, serve_connection, 0, host="127.0.0.1"))
            print(f"listening on http://127.0.0.1:{listeners[0].socket.getsockname()[1]}", flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
