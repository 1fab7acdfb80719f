"""Memory per held connection of chaos-upstream, next to a bare trio + h11 server, on loopback; and
the same over HTTP/2 (h2c, one stream per connection), next to a bare trio + h2 server.

What it measures: how much resident memory a connection costs the server while it holds it, its
request read and not answered. `chaos-upstream serve --proxy-timeout 60 --admin-port 0` is sent
requests with `X-Chaos-Scenario: never-respond` (it reads the request and never answers); the
reference, `benchmarks/bare_trio_h11.py --hold`, reads a request head with h11 and sleeps forever.
A client process (this script with `--client`) first opens WARM connections, each sending the one
request; once the server holds them all, the server's VmRSS (/proc/PID/status) is read; then the
client opens N more, and once the server holds WARM + N, VmRSS is read again. KiB per held
connection = (second - first) / N: what the first connections cost once (imports done lazily, plan
caches, the journal's structures) is outside it. "The server holds them" is the server's own word:
chaos-upstream's admin API `GET /metrics` counts the never-respond requests, the bare server prints
`holding K` for each head it has read. Each round starts each server afresh (alternating which goes
first); the report gives the median over the rounds, and the ratio chaos-upstream / bare.

With `--profile`, instead, one in-process measurement says where the memory goes: an `Upstream`
serving in this very process under tracemalloc, the client still a child process (so its sockets
are not traced), and the allocation sites that grew from WARM to WARM + N held connections, by
size, per connection.

How to run it, from the repository root:

    .venv/bin/python benchmarks/held_memory.py                    # N = 1000, 3 rounds
    .venv/bin/python benchmarks/held_memory.py --connections 2000 --rounds 5 --json
    .venv/bin/python benchmarks/held_memory.py --profile          # the top 15 allocation sites

RSS counts pages, so a few connections' worth of noise is in every figure; N = 1000 keeps it to a
few percent. Figures vary between Python versions and machines: compare figures from the same run.
"""

from __future__ import annotations

import argparse
import gc
import json
import linecache
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import tracemalloc
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from server_process import bounded, raise_fd_limit, read_port, read_until, rss_kib, stop_server  # benchmarks/: run as scripts

ROOT = Path(__file__).resolve().parent.parent
CHAOS, BARE = "chaos-upstream never-respond", "bare trio+h11 hold"
CHAOS_H2, BARE_H2 = "chaos-upstream never-respond h2c", "bare trio+h2 hold"
CHAOS_COMMAND = [sys.executable, "-m", "chaos_upstream", "serve", "--port", "0", "--host", "127.0.0.1",
                 "--proxy-timeout", "60", "--admin-port", "0"]
SERVERS = {
    CHAOS: CHAOS_COMMAND,
    BARE: [sys.executable, str(ROOT / "benchmarks" / "bare_trio_h11.py"), "--hold"],
    CHAOS_H2: CHAOS_COMMAND,
    BARE_H2: [sys.executable, str(ROOT / "benchmarks" / "bare_trio_h2.py"), "--hold"],
}
HTTP2 = {CHAOS_H2, BARE_H2}
"""The servers held over HTTP/2: one stream per connection, h2c."""
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nX-Chaos-Scenario: never-respond\r\n\r\n"


def h2_request() -> bytes:
    """The h2c preface, SETTINGS and one HEADERS frame asking for never-respond (END_STREAM)."""
    import h2.config
    import h2.connection

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "bench"),
                            ("x-chaos-scenario", "never-respond")], end_stream=True)
    return client.data_to_send()
ADMIN = re.compile(rb"admin API on http://127\.0\.0\.1:(\d+)")
NEVER_RESPOND = re.compile(r'^chaos_upstream_requests_total\{scenario="never-respond"\} ([\d.e+]+)$', re.M)
HOLD_TIMEOUT = 60.0
"""Seconds a server gets to hold a batch of connections, and the client to open them."""
POLL = 0.05
"""Seconds between two looks at chaos-upstream's metrics."""
SPARE_FDS = 100
"""File descriptors beyond one per connection that the client and each server may need."""
TOP = 15


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.client:
        hold_client(args.client, h2_request() if args.h2 else REQUEST)
        return 0
    raise_fd_limit(args.warm + args.connections + SPARE_FDS)  # inherited by the servers and the client
    if args.profile:
        import trio

        trio.run(profile, args)
        return 0
    summary = summarise(measure_rounds(args))
    if args.json:
        settings = {"connections": args.connections, "warm": args.warm, "rounds": args.rounds, "python": sys.version.split()[0]}
        print(json.dumps({"settings": settings, "servers": summary, "ratio": ratio(summary),
                          "ratio_h2": ratio(summary, CHAOS_H2, BARE_H2)}, indent=2))
    else:
        print(f"memory per held connection, N={args.connections} after {args.warm} warm, median of {args.rounds} (127.0.0.1):")
        for name, figures in summary.items():
            per_round = ", ".join(f"{run['kib_per_connection']:.2f}" for run in figures["rounds"])
            print(f"  {name:30} {figures['kib_per_connection']:6.2f} KiB   (rounds: {per_round})")
        print(f"  ratio chaos-upstream / bare: {ratio(summary):.2f}; over HTTP/2: {ratio(summary, CHAOS_H2, BARE_H2):.2f}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Memory per held connection: chaos-upstream vs bare trio+h11.")
    parser.add_argument("--connections", type=bounded(10, 5000), default=1000, help="N held connections measured, default 1000")
    parser.add_argument("--warm", type=bounded(1, 100), default=20, help="connections held before the first reading, default 20")
    parser.add_argument("--rounds", type=bounded(1, 10), default=3, help="measurements per server, default 3")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of lines")
    parser.add_argument("--profile", action="store_true", help="in-process tracemalloc: the top allocation sites per connection")
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the client process itself
    parser.add_argument("--h2", action="store_true", help=argparse.SUPPRESS)  # the client speaks h2c
    return parser.parse_args(argv)


def hold_client(port: int, request: bytes) -> None:
    """The client process: for each line K on stdin, open K more connections to `port`, each
    sending `request`, and print `sent TOTAL`; at the end of stdin, exit (closing them all)."""
    held = []
    for line in sys.stdin:
        for _ in range(int(line)):
            sock = socket.create_connection(("127.0.0.1", port), timeout=HOLD_TIMEOUT)
            sock.sendall(request)
            held.append(sock)
        print(f"sent {len(held)}", flush=True)


@contextmanager
def holding_client(port: int, http2: bool = False) -> Iterator[Callable[[int], None]]:
    """A client process for `port` (speaking h2c when `http2`); yields `open(K)`, which returns once
    it has sent K more requests."""
    client = subprocess.Popen([sys.executable, __file__, "--client", str(port), *(["--h2"] if http2 else [])],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    sent = 0

    def open_more(count: int) -> None:
        nonlocal sent
        sent += count
        client.stdin.write(f"{count}\n".encode())
        client.stdin.flush()
        read_until(client, re.compile(rb"sent %d\n" % sent), HOLD_TIMEOUT)

    try:
        yield open_more
    finally:
        client.stdin.close()
        client.stdout.close()
        try:
            client.wait(timeout=HOLD_TIMEOUT)
        except subprocess.TimeoutExpired:
            client.kill()
            client.wait()


def measure_rounds(args: argparse.Namespace) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {name: [] for name in SERVERS}
    for round_ in range(args.rounds):
        order = list(SERVERS) if round_ % 2 == 0 else list(reversed(SERVERS))
        for name in order:
            print(f"round {round_ + 1}/{args.rounds}: {name} ...", file=sys.stderr, flush=True)
            runs[name].append(measure_once(name, args.warm, args.connections))
    return runs


def measure_once(name: str, warm: int, n: int) -> dict:
    """Start the server, hold `warm` connections, read VmRSS, hold `n` more, read it again."""
    process = subprocess.Popen(SERVERS[name], cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        if name in (CHAOS, CHAOS_H2):
            match = read_until(process, re.compile(LISTENING_THEN_ADMIN, re.S), 15.0)
            port, admin = int(match.group(1)), int(match.group(2))
            wait_held = lambda count: wait_metrics(admin, count)  # noqa: E731
        else:
            port = read_port(process)
            wait_held = lambda count: read_until(process, re.compile(rb"holding %d\n" % count), HOLD_TIMEOUT)  # noqa: E731
        with holding_client(port, name in HTTP2) as open_more:
            open_more(warm)
            wait_held(warm)
            before = rss_kib(process.pid)
            open_more(n)
            wait_held(warm + n)
            after = rss_kib(process.pid)
    finally:
        code = stop_server(process)
    if code != 0:
        raise SystemExit(f"{name} exited {code} after SIGTERM")
    return {"rss_before_kib": before, "rss_after_kib": after, "kib_per_connection": round((after - before) / n, 3)}


LISTENING_THEN_ADMIN = rb"listening on http://127\.0\.0\.1:(\d+).*?" + ADMIN.pattern
"""chaos-upstream's two start-up lines: its data port, then its admin port."""


def wait_metrics(admin: int, count: int) -> None:
    """Return once chaos-upstream's /metrics counts `count` never-respond requests (their heads read)."""
    deadline = time.monotonic() + HOLD_TIMEOUT
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=HOLD_TIMEOUT) as response:
            match = NEVER_RESPOND.search(response.read().decode())
        if match and float(match.group(1)) >= count:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"chaos-upstream held {match and match.group(1)} of {count} requests after {HOLD_TIMEOUT:.0f} s")
        time.sleep(POLL)


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict]:
    return {
        name: {"kib_per_connection": statistics.median(run["kib_per_connection"] for run in server_runs), "rounds": server_runs}
        for name, server_runs in runs.items()
    }


def ratio(summary: dict[str, dict], chaos: str = CHAOS, bare: str = BARE) -> float:
    return round(summary[chaos]["kib_per_connection"] / summary[bare]["kib_per_connection"], 2)


async def profile(args: argparse.Namespace) -> None:
    """An Upstream in this process under tracemalloc; the allocation sites that grew from `warm` to
    `warm + n` held never-respond requests, by size, per connection."""
    import trio

    sys.path.insert(0, str(ROOT))  # this checkout's chaos_upstream, as `-m chaos_upstream` run from ROOT serves
    from chaos_upstream.model.catalogue import Catalogue
    from chaos_upstream.model.durations import Timing
    from chaos_upstream.server.upstream import Settings, Upstream

    upstream = Upstream(Catalogue.load(), Settings(host="127.0.0.1", port=0, timing=Timing(proxy_timeout=60.0)))

    async def held(count: int) -> None:
        with trio.fail_after(HOLD_TIMEOUT):
            while upstream.stats.requests["never-respond"] < count:
                await trio.sleep(POLL)

    tracemalloc.start(1)
    async with trio.open_nursery() as nursery:
        [(_, port)] = await nursery.start(upstream.run)
        with holding_client(port) as open_more:
            await trio.to_thread.run_sync(open_more, args.warm)
            await held(args.warm)
            gc.collect()
            before = tracemalloc.take_snapshot()
            await trio.to_thread.run_sync(open_more, args.connections)
            await held(args.warm + args.connections)
            gc.collect()
            after = tracemalloc.take_snapshot()
        upstream.stop()
        nursery.cancel_scope.cancel()
    print_profile(after.compare_to(before, "lineno"), after.compare_to(before, "filename"), args.connections)


def print_profile(lines: list[tracemalloc.StatisticDiff], files: list[tracemalloc.StatisticDiff], n: int) -> None:
    """Growth per connection: the total, the top TOP lines (with their source), the top files."""
    total = sum(stat.size_diff for stat in lines)
    print(f"tracemalloc, {n} held never-respond connections: {total / n / 1024:.2f} KiB of Python objects per connection")
    print(f"  {'bytes/conn':>10} {'blocks/conn':>11}  top {TOP} lines")
    for stat in sorted(lines, key=lambda stat: stat.size_diff, reverse=True)[:TOP]:
        frame = stat.traceback[0]
        source = linecache.getline(frame.filename, frame.lineno).strip()[:70]
        print(f"  {stat.size_diff / n:10.0f} {stat.count_diff / n:11.2f}  {short(frame.filename)}:{frame.lineno}  {source}")
    print(f"  {'bytes/conn':>10} {'blocks/conn':>11}  top {TOP} files")
    for stat in sorted(files, key=lambda stat: stat.size_diff, reverse=True)[:TOP]:
        print(f"  {stat.size_diff / n:10.0f} {stat.count_diff / n:11.2f}  {short(stat.traceback[0].filename)}")


def short(filename: str) -> str:
    """A file's name from the checkout's root or from site-packages, whichever it is under."""
    if filename.startswith(str(ROOT)):
        return os.path.relpath(filename, ROOT)
    return filename.split("site-packages/", 1)[-1]


if __name__ == "__main__":
    sys.exit(main())
