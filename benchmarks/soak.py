"""Soak: `chaos-upstream serve` under a steady mix of faults for minutes, its RSS and fds sampled.

What it does: starts `chaos-upstream serve` as a subprocess on 127.0.0.1 with the journal on, a
small `--journal-memory` (so the in-memory journal fills early and memory should then stay flat), a
`--journal-max-bytes` (so the file rotates) and the admin API; then sends ~200 requests per second
straight at it (no proxy), each on its own connection, each naming a scenario drawn from a seeded
mix of healthy and faulty ones (truncated, reset, bad status line, closed, slow) and a probe id of
its own. Every few seconds it samples the server's RSS (/proc/PID/status VmRSS), its open fds
(/proc/PID/fd) and /metrics. The run is bounded: `--minutes` (default 10) or `--seconds`, and at
most `--rate` x duration requests, at most CONCURRENCY at once.

How to run it, from the repository root:

    .venv/bin/python benchmarks/soak.py                  # 10 minutes at 200 requests/s
    .venv/bin/python benchmarks/soak.py --seconds 60     # a short check

What it prints: requests done and the rate reached, how they ended per scenario, the RSS at start,
when the memory journal was full (the first record dropped from memory) and at the end, the RSS
slope in MiB per 10 minutes (least squares over the samples taken after the memory journal was
full: memory held by the journal is bounded, so this is what leaks), the same from twice the fill
time (once the journal has turned over and the allocator settled: right after filling, RSS still
rises by ~15% of --journal-memory over about one fill time), the fd slope, the journal files
(rotated ones too) with their sizes, and the journal counts from /metrics. A healthy server shows
an RSS slope well under 1 MiB per 10 minutes and an fd slope near 0. It exits 0 whatever the
figures, and 1 only when the run itself broke (the server would not start or died).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent

MIX = {
    "healthy": 50, "truncated-chunked": 10, "reset-before-response": 8, "bad-status-line": 8,
    "close-before-response": 8, "slow-response": 6, "slow-headers": 4, "drip-body": 3, "stall-mid-body": 3,
}
"""Scenario -> weight: half healthy, as a sidecar beside a staging proxy mostly sees, the rest the
faults a proxy meets most (truncations, resets, garbage, closes) and the slow ones that hold a
connection open for a while (T = --proxy-timeout)."""

PROXY_TIMEOUT = "0.2"
"""The server's T: slow scenarios take up to 3T, so a connection lives at most ~0.6 s."""

CONCURRENCY = 512
"""Requests in flight at most: 200/s x 0.6 s for the slowest needs ~120; room for hiccups."""

REQUEST_TIMEOUT = 5.0
"""Seconds one request may take before the client gives up on it (none of the mix should need 1)."""

START_TIMEOUT = 20.0
"""Seconds the server gets to print its addresses."""

STOP_TIMEOUT = 15.0
"""Seconds the server gets to exit after SIGTERM (its grace is 5 s)."""

MIB = 1024 * 1024


@dataclass
class Sample:
    t: float
    rss: int
    fds: int
    connections: float
    """Connections open then, by /metrics (each holds an fd)."""
    dropped: float


@dataclass
class Run:
    ended: Counter[tuple[str, str]] = field(default_factory=Counter)
    samples: list[Sample] = field(default_factory=list)
    full_at: float | None = None
    """Seconds into the run when the memory journal first dropped a record."""
    idle: Sample | None = None
    """The sample taken once the load stopped and every request ended."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    duration = args.seconds if args.seconds is not None else args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="chaos-soak-") as scratch:
        folder = Path(args.dir or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        journal = folder / "soak.jsonl"
        command = [
            sys.executable, "-m", "chaos_upstream", "serve", "--host", "127.0.0.1", "--port", "0", "--admin-port", "0",
            "--proxy-timeout", PROXY_TIMEOUT, "--journal", str(journal), "--journal-memory", args.journal_memory,
            "--journal-max-bytes", args.journal_max_bytes, "--journal-keep", str(args.journal_keep),
        ]
        with open(folder / "serve.stderr", "w+") as stderr:
            server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT)
            try:
                broke = soak_server(server, args, duration, journal)
            finally:
                print(f"server exit status {stop(server)}")
                stderr.seek(0)
                said = stderr.read().strip().splitlines()
            if said:
                print("server stderr (last 20 lines):\n  " + "\n  ".join(said[-20:]))
    return 1 if broke else 0


def soak_server(server: subprocess.Popen, args: argparse.Namespace, duration: float, journal: Path) -> bool:
    """Run the soak against `server` and report; True when the run broke (the server would not start or died)."""
    ports = addresses(server)
    if ports is None:
        print("soak: the server did not start")
        return True
    print(f"soak: serve pid {server.pid} on 127.0.0.1:{ports['data']}, admin {ports['admin']}, "
          f"{args.rate:g}/s for {duration:g} s, journal in {journal.parent}", flush=True)
    run = Run()
    try:
        trio.run(soak, server.pid, ports, args, duration, run)
    except OSError as exc:  # /proc/PID or the admin port gone: the server died
        print(f"soak: the server died during the run ({exc})")
        return True
    report(run, duration, journal, ports["admin"])
    if args.show_samples:
        for taken in run.samples:
            print(f"  t {taken.t:6.1f} s  RSS {taken.rss / MIB:7.2f} MiB  fds {taken.fds:4}  "
                  f"connections {taken.connections:4.0f}  dropped {taken.dropped:.0f}")
    return False


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    parser.add_argument("--seconds", type=float, default=None, help="how long to run, for short checks (wins over --minutes)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    parser.add_argument("--seed", type=int, default=9, help="seed of the scenario mix")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples of RSS and fds (default 5)")
    parser.add_argument("--journal-memory", default="4MiB", help="the server's --journal-memory (default 4MiB: full in ~12 s)")
    parser.add_argument("--journal-max-bytes", default="16MiB", help="the server's --journal-max-bytes (default 16MiB)")
    parser.add_argument("--journal-keep", type=int, default=3, help="the server's --journal-keep (default 3)")
    parser.add_argument("--show-samples", action="store_true", help="also print every sample (t, RSS, fds, dropped)")
    parser.add_argument("--dir", default=None, help="keep the journal files here (default: a temporary folder, removed)")
    return parser.parse_args(argv)


def addresses(server: subprocess.Popen) -> dict[str, int] | None:
    """The data and admin ports the server prints, once it has printed both; None if it does not."""
    ports: dict[str, int] = {}
    deadline = time.monotonic() + START_TIMEOUT
    while len(ports) < 2 and time.monotonic() < deadline:
        line = server.stdout.readline()  # type: ignore[union-attr]
        if not line:
            break
        found = re.search(r"(admin API|listening) on http://127\.0\.0\.1:(\d+)", line)
        if found:
            ports["admin" if found.group(1) == "admin API" else "data"] = int(found.group(2))
    return ports if len(ports) == 2 else None


async def soak(pid: int, ports: dict[str, int], args: argparse.Namespace, duration: float, run: Run) -> None:
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample, pid, ports["admin"], args.sample, start, run)
        await drive(ports["data"], args, start, start + duration, run)
        nursery.cancel_scope.cancel()
    run.idle = await measure(pid, ports["admin"], trio.current_time() - start)


async def drive(port: int, args: argparse.Namespace, start: float, end: float, run: Run) -> None:
    """Send requests at `args.rate` per second until `end`, a scenario from the seeded MIX each."""
    rng = random.Random(args.seed)
    names, weights = list(MIX), list(MIX.values())
    limiter = trio.CapacityLimiter(CONCURRENCY)
    async with trio.open_nursery() as nursery:
        for n in range(int(args.rate * (end - start))):
            await trio.sleep_until(start + n / args.rate)
            if trio.current_time() >= end:
                break
            await limiter.acquire_on_behalf_of(n)
            nursery.start_soon(one, port, n, rng.choices(names, weights)[0], limiter, run)


async def one(port: int, n: int, scenario: str, limiter: trio.CapacityLimiter, run: Run) -> None:
    request = (f"GET /soak/{n} HTTP/1.1\r\nHost: soak\r\nX-Chaos-Scenario: {scenario}\r\n"
               f"X-Chaos-Probe: soak-{n}\r\nConnection: close\r\n\r\n").encode()
    ended = "timeout"
    try:
        with trio.move_on_after(REQUEST_TIMEOUT):
            try:
                async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                    await stream.send_all(request)
                    while await stream.receive_some(65536):
                        pass
                ended = "closed"
            except (trio.BrokenResourceError, OSError) as exc:
                ended = "refused" if isinstance(exc, ConnectionRefusedError) else "reset"
    finally:
        limiter.release_on_behalf_of(n)
        run.ended[scenario, ended] += 1


async def sample(pid: int, admin: int, every: float, start: float, run: Run) -> None:
    while True:
        taken = await measure(pid, admin, trio.current_time() - start)
        run.samples.append(taken)
        if run.full_at is None and taken.dropped > 0:
            run.full_at = taken.t
        await trio.sleep(every)


async def measure(pid: int, admin: int, t: float) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1)) * 1024  # type: ignore[union-attr]
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    metrics = await trio.to_thread.run_sync(scrape, admin)
    connections = metrics.get("chaos_upstream_connections_open", 0.0)
    return Sample(t, rss, fds, connections, metrics.get("chaos_upstream_journal_dropped_total", 0.0))


def scrape(admin: int) -> dict[str, float]:
    """The unlabelled figures of /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {name: float(value) for name, value in re.findall(r"^(\w+) (\S+)$", text, re.MULTILINE)}


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x; None with fewer than two points."""
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else None


def report(run: Run, duration: float, journal: Path, admin: int) -> None:
    done = sum(run.ended.values())
    print(f"requests done: {done} in {duration:g} s ({done / duration:.1f}/s)")
    for scenario in MIX:
        endings = ", ".join(f"{ended} {n}" for (name, ended), n in sorted(run.ended.items()) if name == scenario)
        print(f"  {scenario:24} {endings}")
    samples = run.samples
    full = [s for s in samples if run.full_at is not None and s.t >= run.full_at]
    at_full = f"{full[0].rss / MIB:.1f} MiB at {full[0].t:.0f} s" if full else "never full (run longer or lower --journal-memory)"
    idle = run.idle or samples[-1]
    print(f"RSS: start {samples[0].rss / MIB:.1f} MiB, memory journal full: {at_full}, "
          f"end of load {samples[-1].rss / MIB:.1f} MiB, after it {idle.rss / MIB:.1f} MiB")
    print(f"fds: start {samples[0].fds}, max under load {max(s.fds for s in samples)}, after the load {idle.fds}")
    rss = slope([(s.t, s.rss / MIB) for s in full])
    fds = slope([(s.t, s.fds - s.connections) for s in full])
    per = 600.0  # seconds in 10 minutes
    print(f"RSS slope under load after full: {'n/a' if rss is None else f'{rss * per:+.2f} MiB per 10 minutes'} "
          f"({len(full)} samples)")
    print(f"fd slope under load after full: {'n/a' if fds is None else f'{fds * per:+.2f} fds per 10 minutes'} "
          "(of the fds that are not open connections)")
    own = [s.fds - s.connections for s in full]
    if own:
        print(f"fds that are not open connections, after full: {min(own):.0f} to {max(own):.0f}")
    turned = [s for s in full if run.full_at is not None and s.t >= 2 * run.full_at]
    settled = slope([(s.t, s.rss / MIB) for s in turned])
    print(f"RSS slope under load once the memory journal turned over (from {2 * (run.full_at or 0):.0f} s, twice the fill "
          f"time): {'n/a' if settled is None else f'{settled * per:+.2f} MiB per 10 minutes'} ({len(turned)} samples)")
    for path in sorted(journal.parent.glob(journal.name + "*")):
        print(f"journal file {path.name}: {path.stat().st_size / MIB:.2f} MiB")
    metrics = scrape(admin)
    names = ("journal_dropped_total", "journal_memory_bytes", "journal_unwritten_total")
    print("metrics: " + ", ".join(f"{name} {metrics.get('chaos_upstream_' + name, float('nan')):.0f}" for name in names))


def stop(server: subprocess.Popen) -> int:
    """SIGTERM the server (SIGKILL if it outstays STOP_TIMEOUT); its exit status."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    try:
        server.communicate(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        server.kill()
        server.communicate()
    return server.returncode


if __name__ == "__main__":
    sys.exit(main())
