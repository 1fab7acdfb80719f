"""Healthy-path throughput of chaos-upstream, one worker and two, next to a bare trio + h11 server, on loopback.

What it measures: requests per second and latency percentiles (p50, p99) that `wrk` gets from
`chaos-upstream serve` answering the `healthy` scenario (a 200, Content-Length 24, keep-alive) to
`GET /`, the same from `chaos-upstream serve --workers 2`, and the same from
`benchmarks/bare_trio_h11.py`, the simplest trio + h11 server sending the same bytes. Same load
generator, same machine, same run: each round starts each server afresh as a subprocess, warms it
up, runs wrk once, stops it with SIGTERM; the rounds interleave the three servers (alternating the
order) and the report gives the median of each figure. Beside the rates, it reads from /proc the CPU
each server process used while wrk measured (in cores: CPU seconds per second; with --workers the
supervisor first, then each worker), from its own rusage what wrk used, and from /proc/stat what
the rest of the machine used (other processes, and kernel work charged to none): whether the load was
spread over the workers, what the load generator took from the servers' cores, and whether a run
was disturbed by others.

How to run it, from the repository root (needs `wrk`: `apt-get install -y wrk`):

    .venv/bin/python benchmarks/throughput.py                 # 3 rounds of wrk -t1 -c64 -d5s
    .venv/bin/python benchmarks/throughput.py --rounds 5 --connections 128 --json

The load: one wrk thread and 64 connections, the same for every server. One thread: wrk, in C,
spends a small fraction of the CPU per request that a Python server does, so one thread keeps two
workers busy while taking the least CPU from them (a second thread only adds scheduling on a machine
whose cores the servers need); the `wrk cores` column shows what it took. 64 connections: the
kernel spreads connections over the workers of an SO_REUSEPORT port by a hash of their addresses,
not by load, so with few connections one worker can get markedly more than the other; 64 keep each
worker's share large enough that neither runs dry (each always has a request to serve), and the
per-worker cores show the spread.

What the numbers mean: req/s is what one chaos-upstream process (one CPU core: trio is single
threaded) sustains on the happy path with keep-alive, so what a proxy under test can push through
it before the upstream, not the proxy, is the bottleneck. The ratio chaos-upstream / bare weighs
chaos-upstream's own work (scenario choice, planning, journalling) against what the bare loop does
and chaos-upstream does not: write its response through h11, and parse again a request head whose
exact bytes it parsed before (wrk sends the same request every time). With --distinct, every
request carries a counter of its own (benchmarks/distinct_requests.lua), so chaos-upstream parses
each one too: the case of a proxy that tags each request it relays. The ratio workers 2 / workers 1 is what a second worker
adds; 2.0 is the ceiling, and on a machine of two cores that wrk shares it cannot be reached (wrk
and the kernel's loopback work take their share of the two cores). Loopback figures are ceilings
and vary between machines and runs: compare figures from the same run, not across machines.
`Socket errors` or non-2xx responses, if any, are reported, since they make a figure suspect.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from server_process import bounded, cpu_seconds, machine_busy_seconds, process_tree, read_port, stop_server  # benchmarks/: run as scripts

ROOT = Path(__file__).resolve().parent.parent
CHAOS, WORKERS_2, BARE = "chaos-upstream healthy", "chaos-upstream --workers 2", "bare trio+h11"
SERVE = [sys.executable, "-m", "chaos_upstream", "serve", "--port", "0", "--host", "127.0.0.1"]
SERVERS = {
    CHAOS: SERVE,
    WORKERS_2: [*SERVE, "--workers", "2"],
    BARE: [sys.executable, str(ROOT / "benchmarks" / "bare_trio_h11.py")],
}
RATIOS = {"chaos-upstream / bare": (CHAOS, BARE), "workers 2 / workers 1": (WORKERS_2, CHAOS)}
"""Each ratio's name, and the servers whose median req/s it divides."""
WRK_SLACK = 30.0
"""Seconds wrk may run past its own duration before it is killed."""
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk not found: install it with `apt-get install -y wrk`", file=sys.stderr)
        return 2
    runs = measure_rounds(args)
    summary = summarise(runs)
    if args.json:
        print(json.dumps({"settings": settings_of(args), "servers": summary, "ratios": ratios(summary)}, indent=2))
    else:
        print_table(summary, args)
        print(summary_line(summary))
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Healthy-path throughput: chaos-upstream, one worker and two, vs bare trio+h11, with wrk.")
    parser.add_argument("--threads", type=bounded(1, 64), default=1, help="wrk threads (-t), default 1")
    parser.add_argument("--connections", type=bounded(1, 1000), default=64, help="wrk connections (-c), default 64")
    parser.add_argument("--duration", type=bounded(1, 120), default=5, help="seconds per measurement (-d), default 5")
    parser.add_argument("--warmup", type=bounded(0, 30), default=1, help="seconds of unmeasured load first, default 1")
    parser.add_argument("--rounds", type=bounded(1, 20), default=3, help="measurements per server, default 3")
    parser.add_argument("--distinct", action="store_true",
                        help="make every request's bytes distinct (an X-Request-Id counter), so none is known by its bytes")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = parser.parse_args(argv)
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads (wrk's rule)")
    return args


def measure_rounds(args: argparse.Namespace) -> dict[str, list[dict]]:
    """Each server once per round, the order reversed every other round; every run's figures."""
    runs: dict[str, list[dict]] = {name: [] for name in SERVERS}
    for round_ in range(args.rounds):
        order = list(SERVERS) if round_ % 2 == 0 else list(reversed(SERVERS))
        for name in order:
            print(f"round {round_ + 1}/{args.rounds}: {name} ...", file=sys.stderr, flush=True)
            runs[name].append(measure_once(SERVERS[name], args))
    return runs


def measure_once(command: list[str], args: argparse.Namespace) -> dict:
    """wrk's figures for one run, and the cores (CPU seconds per second of wrk's run) that each of
    the server's processes, wrk itself, and everything else on the machine used meanwhile."""
    with running_server(command) as (port, pid):
        url = f"http://127.0.0.1:{port}/"
        if args.warmup:
            run_wrk(url, args, args.warmup)
        processes = process_tree(pid)
        before, wrk_before, busy_before = [cpu_seconds(p) for p in processes], children_cpu_seconds(), machine_busy_seconds()
        started = time.monotonic()
        output = run_wrk(url, args, args.duration)
        elapsed = time.monotonic() - started
        server = [(cpu_seconds(p) - b) / elapsed for p, b in zip(processes, before)]
        wrk = (children_cpu_seconds() - wrk_before) / elapsed
        other = (machine_busy_seconds() - busy_before) / elapsed - sum(server) - wrk
    return parse_wrk(output) | {"server_cores": [round(c, 2) for c in server], "wrk_cores": round(wrk, 2),
                                "other_cores": round(other, 2)}


def children_cpu_seconds() -> float:
    """User plus system CPU time of this script's children that have been waited for (wrk's runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def running_server(command: list[str]) -> Iterator[tuple[int, int]]:
    """Start the server, yield its port and pid; SIGTERM it afterwards and insist that it exits 0."""
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        yield read_port(process), process.pid
    except BaseException:
        stop_server(process)
        raise
    if (code := stop_server(process)) != 0:
        raise SystemExit(f"{process.args} exited {code} after SIGTERM")


def run_wrk(url: str, args: argparse.Namespace, seconds: int) -> str:
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--latency", url]
    if args.distinct:
        command[1:1] = ["-s", str(ROOT / "benchmarks" / "distinct_requests.lua")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + WRK_SLACK)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def parse_wrk(output: str) -> dict:
    """Requests/s, p50 and p99 in ms, and the errors wrk counted, from `wrk --latency` output."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+[a-z]+)", output, re.M))
    if rate is None or set(latency) != {"50", "99"}:
        raise SystemExit(f"cannot read wrk's output:\n{output}")
    return {
        "requests_per_s": float(rate.group(1)),
        "p50_ms": to_ms(latency["50"]),
        "p99_ms": to_ms(latency["99"]),
        "errors": count_errors(output),
    }


def count_errors(output: str) -> int:
    """Socket errors (connect, read, write, timeout) plus non-2xx/3xx responses; wrk omits zeros."""
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    statuses = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return sum(map(int, sockets.groups() if sockets else ())) + (int(statuses.group(1)) if statuses else 0)


def to_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()
    return float(number) * UNITS_MS[unit]


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Per server: the median of each figure over the rounds (of each process's cores too), the
    total errors, and every round."""
    return {
        name: {
            "requests_per_s": statistics.median(run["requests_per_s"] for run in server_runs),
            "p50_ms": statistics.median(run["p50_ms"] for run in server_runs),
            "p99_ms": statistics.median(run["p99_ms"] for run in server_runs),
            "errors": sum(run["errors"] for run in server_runs),
            "server_cores": [statistics.median(cores) for cores in zip(*(run["server_cores"] for run in server_runs))],
            "wrk_cores": statistics.median(run["wrk_cores"] for run in server_runs),
            "other_cores": statistics.median(run["other_cores"] for run in server_runs),
            "rounds": server_runs,
        }
        for name, server_runs in runs.items()
    }


def ratios(summary: dict[str, dict]) -> dict[str, float]:
    """Each of RATIOS: one server's median req/s over another's."""
    return {
        name: round(summary[top]["requests_per_s"] / summary[bottom]["requests_per_s"], 3)
        for name, (top, bottom) in RATIOS.items()
    }


def settings_of(args: argparse.Namespace) -> dict:
    keys = ("threads", "connections", "duration", "warmup", "rounds", "distinct")
    return {key: getattr(args, key) for key in keys} | {"cpus": os.cpu_count(), "python": sys.version.split()[0]}


def print_table(summary: dict[str, dict], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    title = f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, median of {args.rounds} (127.0.0.1)"
    table = Table("server", "req/s", "p50 ms", "p99 ms", "errors", "server cores", "wrk cores", "other cores", "req/s per round", title=title)
    for name, figures in summary.items():
        table.add_row(
            name,
            f"{figures['requests_per_s']:.0f}",
            f"{figures['p50_ms']:.2f}",
            f"{figures['p99_ms']:.2f}",
            str(figures["errors"]),
            " + ".join(f"{cores:.2f}" for cores in figures["server_cores"]),
            f"{figures['wrk_cores']:.2f}",
            f"{figures['other_cores']:.2f}",
            ", ".join(f"{run['requests_per_s']:.0f}" for run in figures["rounds"]),
        )
    Console(width=None if sys.stdout.isatty() else 120).print(table)


def summary_line(summary: dict[str, dict]) -> str:
    servers = (
        f"{name}: {figures['requests_per_s']:.0f} req/s (p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms)"
        for name, figures in summary.items()
    )
    return "; ".join([*servers, *(f"{name} {value:.2f}" for name, value in ratios(summary).items())])


if __name__ == "__main__":
    sys.exit(main())
