"""HTTP/2 healthy-path throughput of chaos-upstream (h2c) next to a bare trio + h2 server, on loopback.

What it measures: requests per second that `h2load` (Debian's nghttp2-client) gets from
`chaos-upstream serve` answering the `healthy` scenario over h2c (prior knowledge), and the same
from `benchmarks/bare_trio_h2.py`, the simplest trio + h2 server sending the same frames. Each round
starts each server afresh as a subprocess, warms it up, runs h2load once with a fixed count of
requests, stops it with SIGTERM; the rounds alternate the order, and the report gives the median.

How to run it, from the repository root (needs h2load: `apt-get install -y nghttp2-client`):

    .venv/bin/python benchmarks/h2_throughput.py                       # 3 rounds of 20000 requests
    .venv/bin/python benchmarks/h2_throughput.py --rounds 5 --requests 50000

The load: 16 connections, each with up to 10 streams at once (`h2load -c16 -m10`), one h2load
thread. The ratio chaos-upstream / bare weighs chaos-upstream's own work per stream (scenario
choice, planning, journalling, a task per stream, a writer task per connection) against what the
bare loop does; both parse with the same `h2` library. Loopback figures vary between machines and
runs: compare figures from the same run.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from server_process import bounded, read_port, stop_server  # benchmarks/: run as scripts

ROOT = Path(__file__).resolve().parent.parent
SERVERS = {
    "chaos-upstream h2c healthy": [sys.executable, "-m", "chaos_upstream", "serve", "--port", "0", "--host", "127.0.0.1"],
    "bare trio+h2": [sys.executable, str(ROOT / "benchmarks" / "bare_trio_h2.py")],
}
RATE = re.compile(r"finished in [\d.]+m?s, ([\d.]+) req/s")
DONE = re.compile(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded")
H2LOAD_LIMIT = 120
"""Seconds one h2load run may take before it is killed."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="HTTP/2 healthy-path throughput: chaos-upstream h2c vs bare trio+h2, with h2load.")
    parser.add_argument("--rounds", type=bounded(1, 20), default=3)
    parser.add_argument("--requests", type=bounded(1000, 1_000_000), default=20_000)
    args = parser.parse_args(argv)
    if shutil.which("h2load") is None:
        print("h2load not found: install it with `apt-get install -y nghttp2-client`", file=sys.stderr)
        return 2
    rates: dict[str, list[float]] = {name: [] for name in SERVERS}
    for round_ in range(args.rounds):
        order = list(SERVERS) if round_ % 2 == 0 else list(reversed(SERVERS))
        for name in order:
            rates[name].append(measure(SERVERS[name], args.requests))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, values in rates.items():
        print(f"{name:28} {medians[name]:8.0f} req/s   (rounds: {', '.join(f'{v:.0f}' for v in values)})")
    ratio = medians["chaos-upstream h2c healthy"] / medians["bare trio+h2"]
    print(f"ratio chaos-upstream / bare trio+h2: {ratio:.2f}")
    return 0


def measure(command: list[str], requests: int) -> float:
    """Requests per second h2load got from a fresh server running `command`, after a warm-up."""
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{read_port(process)}/"
        h2load(url, max(1000, requests // 10))
        return h2load(url, requests)
    finally:
        stop_server(process)


def h2load(url: str, requests: int) -> float:
    output = subprocess.run(["h2load", "-n", str(requests), "-c", "16", "-m", "10", url],
                            capture_output=True, text=True, timeout=H2LOAD_LIMIT, check=True).stdout
    done, rate = DONE.search(output), RATE.search(output)
    if done is None or rate is None or int(done.group(2)) != requests:
        raise SystemExit(f"h2load did not get {requests} successes:\n{output}")
    return float(rate.group(1))


if __name__ == "__main__":
    sys.exit(main())
