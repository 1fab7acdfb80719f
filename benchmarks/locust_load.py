"""How much load one locust process sends through a proxy with `ChaosUser`, and what judging costs.

What it measures: locust's aggregated requests per second, median and 99th percentile response time,
and failures, for the example locustfile's user (`examples/locustfile.py`) through a real nginx in
front of chaos-upstream (an upstream with its admin API, T = 1 s), all on 127.0.0.1. Four runs: a
healthy-only mix and the example's fault mix, each with the verdicts joined with the upstream's
journal over the admin API and without (the verdict then rests on what the client saw).

How to run it, from the repository root (needs nginx; each run ends after --seconds):

    .venv/bin/python benchmarks/locust_load.py                  # 20 users, 10 s per run
    .venv/bin/python benchmarks/locust_load.py --users 50 --seconds 20
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import trio

from chaos_upstream.matrix import running
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.proxies import require
from chaos_upstream.server.admin import Admin
from chaos_upstream.server.control import Local
from chaos_upstream.server.fleet import Fleet
from chaos_upstream.server.journal import Journal
from chaos_upstream.server.upstream import Settings

LOCUSTFILE = Path(__file__).resolve().parents[1] / "examples" / "locustfile.py"
T = 1.0
MIXES = {
    "healthy": "healthy=1",
    "example": "healthy=90,truncated-chunked=4,reset-before-response=3,bad-status-line=3",
}


async def locust_run(proxy_url: str, admin_url: str | None, mix: str, users: int, seconds: int, folder: Path) -> dict[str, str]:
    """The Aggregated row of locust's statistics for one headless run."""
    prefix = folder / f"run-{mix.split('=')[0]}-{bool(admin_url)}"
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
               "--users", str(users), "--spawn-rate", str(users), "--run-time", f"{seconds}s",
               "--host", proxy_url, "--chaos-proxy-timeout", str(T), "--chaos-mix", mix, "--csv", str(prefix),
               "--loglevel", "ERROR", "--chaos-admin", admin_url or ""]  # "": no journal, unlike the locustfile
    await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
    with open(f"{prefix}_stats.csv") as table:
        return next(row for row in csv.DictReader(table) if row["Name"] == "Aggregated")


async def main(users: int, seconds: int) -> None:
    catalogue, timing = Catalogue.load(), Timing(T)
    fleet = Fleet(catalogue, [Settings(port=0, timing=timing)], Journal())
    async with trio.open_nursery() as nursery:
        await nursery.start(fleet.run)
        [(host, port)] = await nursery.start(Admin(Local(fleet, "healthy", timing), None).run, "127.0.0.1", 0)
        with tempfile.TemporaryDirectory() as folder:
            async with running(require("nginx"), fleet.addresses, T, Path(folder)) as proxy:
                print(f"locust, {users} users, {seconds} s per run, through nginx {proxy.version} (T = {T} s)")
                print(f"{'mix':<9} {'journal':<8} {'requests':>9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'failures':>9}")
                for mix_name, mix in MIXES.items():
                    for admin_url in (f"http://{host}:{port}", None):
                        row = await locust_run(proxy.url, admin_url, mix, users, seconds, Path(folder))
                        print(f"{mix_name:<9} {'admin' if admin_url else 'none':<8} {row['Request Count']:>9} "
                              f"{float(row['Requests/s']):>8.0f} {row['50%']:>7} {row['99%']:>7} {row['Failure Count']:>9}")
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    trio.run(main, args.users, args.seconds)
