"""Timer lateness of chaos-upstream under many concurrent delayed requests, next to a bare trio loop.

What it measures: how late chaos-upstream's own timers fire when N connections at once each wait on
one. `chaos-upstream serve --proxy-timeout 0.25 --journal FILE` is sent N concurrent `slow-headers`
requests (header `X-Chaos-Scenario: slow-headers`: 4T = 1.0 s of silence, then the status line). From
the journal file, each request's lateness is its first `send` action's time minus (the request's
time + the scenario's 1.0 s): the server's own lateness, in the server's own clock, which the client
and loopback cannot blur. The client also records when each response's first byte arrived, against
when its request went out plus 1.0 s (what a proxy would see: the server's lateness plus reading and
loopback). The reference run is a bare trio loop in this same script (`--bare-server`), started
afresh the same way, that reads a request head, sleeps 1.0 s, writes the same response, and journals
the same two times in the same format; the ratios (chaos-upstream / bare) are the part of the
lateness that is chaos-upstream's own work. Read them with care: chaos-upstream stamps a send
when its timer source put the bytes in the kernel (a send due after a wait goes out as the timer
fires), the bare loop after trio's send_all, which yields, so its timers that come due together are
stamped when the whole batch has been sent; the bare loop also reads its requests faster, so its
timers bunch more, and its server figure can exceed chaos-upstream's while its client figure stays
far lower. The client figure counts from when the request went out, so it also holds the time the
server took to read the request (1000 requests sent at once are read over ~150 ms).

How to run it, from the repository root:

    .venv/bin/python benchmarks/timer_lateness.py                      # N = 300 and 1000, 1 round
    .venv/bin/python benchmarks/timer_lateness.py --connections 1000 --rounds 3 --json

Each round starts each server afresh as a subprocess on 127.0.0.1 (alternating which goes first),
opens the N connections, sends every request, reads every response, SIGTERMs the server and reads
its journal. Figures are the medians over the rounds of each round's p50, p99 and max, in ms. The
client shares the machine's CPUs with the server: compare figures from the same run only.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import trio

from server_process import bounded, raise_fd_limit, read_port, stop_server  # benchmarks/: run as scripts

ROOT = Path(__file__).resolve().parent.parent
PROXY_TIMEOUT = 0.25
DELAY = 4 * PROXY_TIMEOUT
"""slow-headers waits 4T before its status line."""
CHAOS, BARE = "chaos-upstream slow-headers", "bare trio sleep"
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nX-Chaos-Scenario: slow-headers\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n\r\nchaos-upstream: toolate\n"
CLIENT_TIMEOUT = 60.0
"""Seconds one round's client may take in all (connect, send, read every response)."""
SPARE_FDS = 100
"""File descriptors beyond one per connection that the client and each server may need."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.bare_server:
        trio.run(bare_server, args.bare_server)
        return 0
    raise_fd_limit(max(args.connections) + SPARE_FDS)  # inherited by the servers too
    results = {n: measure_rounds(n, args) for n in args.connections}
    if args.json:
        settings = {"connections": args.connections, "rounds": args.rounds, "proxy_timeout": PROXY_TIMEOUT,
                    "delay": DELAY, "cpus": os.cpu_count(), "python": sys.version.split()[0]}
        print(json.dumps({"settings": settings, "results": {str(n): r for n, r in results.items()}}, indent=2))
    else:
        for n, result in results.items():
            print_result(n, result, args.rounds)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Timer lateness of delayed responses: chaos-upstream vs a bare trio loop.")
    parser.add_argument("--connections", type=bounded(1, 5000), nargs="+", default=[300, 1000],
                        help="concurrent delayed requests, one measurement each, default 300 1000")
    parser.add_argument("--rounds", type=bounded(1, 10), default=1, help="measurements per server and N, default 1")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of lines")
    parser.add_argument("--bare-server", metavar="JOURNAL", help=argparse.SUPPRESS)  # the reference server itself
    return parser.parse_args(argv)


def commands(journal: str) -> dict[str, list[str]]:
    return {
        CHAOS: [sys.executable, "-m", "chaos_upstream", "serve", "--port", "0", "--host", "127.0.0.1",
                "--proxy-timeout", str(PROXY_TIMEOUT), "--journal", journal],
        BARE: [sys.executable, str(Path(__file__).resolve()), "--bare-server", journal],
    }


def measure_rounds(n: int, args: argparse.Namespace) -> dict[str, dict]:
    runs: dict[str, list[dict]] = {CHAOS: [], BARE: []}
    for round_ in range(args.rounds):
        order = [CHAOS, BARE] if round_ % 2 == 0 else [BARE, CHAOS]
        for name in order:
            print(f"N={n} round {round_ + 1}/{args.rounds}: {name} ...", file=sys.stderr, flush=True)
            runs[name].append(measure_once(name, n))
    summary = {name: summarise(server_runs) for name, server_runs in runs.items()}
    summary["ratio"] = {
        key: round(summary[CHAOS][key] / summary[BARE][key], 2) if summary[BARE][key] > 0 else None
        for key in ("server_p50_ms", "server_p99_ms", "server_max_ms")
    }
    return summary


def measure_once(name: str, n: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="timer-lateness-") as folder:
        journal = str(Path(folder) / "journal.jsonl")
        process = subprocess.Popen(commands(journal)[name], cwd=ROOT, stdout=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = read_port(process)
            client = trio.run(run_client, port, n)
        finally:
            code = stop_server(process)
        if code != 0:
            raise SystemExit(f"{name} exited {code} after SIGTERM")
        server = server_lateness(Path(journal))
    if len(server) != n or len(client) != n:
        raise SystemExit(f"{name}: {len(client)} responses and {len(server)} journal records for {n} requests")
    return {"server": figures(server), "client": figures(client)}


async def run_client(port: int, n: int) -> list[float]:
    """Open n connections, then send each its request at once; each response's first byte's lateness (s)."""
    lateness: list[float] = []
    with trio.fail_after(CLIENT_TIMEOUT):
        streams = []
        try:
            for _ in range(n):
                streams.append(await trio.open_tcp_stream("127.0.0.1", port))
            async with trio.open_nursery() as nursery:
                for stream in streams:
                    nursery.start_soon(one_request, stream, lateness)
        finally:
            for stream in streams:
                await stream.aclose()
    return lateness


async def one_request(stream: trio.SocketStream, lateness: list[float]) -> None:
    sent = trio.current_time()
    await stream.send_all(REQUEST)
    received = await stream.receive_some()
    if not received:
        raise SystemExit("a server closed a connection instead of answering")
    lateness.append(trio.current_time() - sent - DELAY)
    while len(received) < len(RESPONSE) and (more := await stream.receive_some()):
        received += more


def server_lateness(journal: Path) -> list[float]:
    """Per slow-headers request record: its first send's t minus (its t + DELAY), in seconds."""
    lateness = []
    for line in journal.read_text().splitlines():
        record = json.loads(line)
        if record.get("type") != "request" or record.get("scenario") != "slow-headers":
            continue
        first_send = next(action["t"] for action in record["actions"] if action["do"] == "send")
        lateness.append(first_send - record["t"] - DELAY)
    return lateness


def figures(lateness: list[float]) -> dict[str, float]:
    ordered = sorted(lateness)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": at(0.50) * 1000, "p99_ms": at(0.99) * 1000, "max_ms": ordered[-1] * 1000}


def summarise(runs: list[dict]) -> dict:
    """The median over the rounds of each figure, server's and client's."""
    summary = {
        f"{side}_{key}": round(statistics.median(run[side][key] for run in runs), 2)
        for side in ("server", "client") for key in ("p50_ms", "p99_ms", "max_ms")
    }
    return summary | {"rounds": runs}


def print_result(n: int, result: dict, rounds: int) -> None:
    print(f"N={n} concurrent slow-headers (T={PROXY_TIMEOUT:g} s, delay {DELAY:g} s), median of {rounds}, ms late:")
    for name in (CHAOS, BARE):
        r = result[name]
        print(f"  {name:28} server p50 {r['server_p50_ms']:7.2f}  p99 {r['server_p99_ms']:7.2f}  max {r['server_max_ms']:7.2f}"
              f"   | client first byte p50 {r['client_p50_ms']:7.2f}  p99 {r['client_p99_ms']:7.2f}  max {r['client_max_ms']:7.2f}")
    ratio = result["ratio"]
    print(f"  ratio chaos/bare (server): p50 {ratio['server_p50_ms']}  p99 {ratio['server_p99_ms']}  max {ratio['server_max_ms']}")


async def bare_server(journal: str) -> None:
    """The reference: read a request head, sleep DELAY, write RESPONSE; journal both times (seconds
    since start, chaos-upstream's format) to `journal` when SIGTERM stops it."""
    start = trio.current_time()
    records: list[dict] = []

    async def serve(stream: trio.SocketStream) -> None:
        async with stream:
            head = b""
            while b"\r\n\r\n" not in head:
                if not (data := await stream.receive_some()):
                    return
                head += data
            t = trio.current_time() - start
            await trio.sleep(DELAY)
            await stream.send_all(RESPONSE)
            sent = trio.current_time() - start
            records.append({"type": "request", "t": t, "scenario": "slow-headers", "actions": [{"do": "send", "t": sent}]})
            await stream.receive_some()  # until the client closes

    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(functools.partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
            print(f"listening on http://127.0.0.1:{listeners[0].socket.getsockname()[1]}", flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
    Path(journal).write_text("".join(json.dumps(record) + "\n" for record in records))


if __name__ == "__main__":
    sys.exit(main())
