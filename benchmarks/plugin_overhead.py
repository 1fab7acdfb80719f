"""What a fresh `chaos_upstream` costs a test: the pytest plugin's per-test overhead.

What it measures: pytest's own session time (the "N passed in X s" figure, which leaves out the
interpreter start and the imports) for N generated tests that each take a fresh `chaos_upstream`
fixture (an upstream on free ports, its thread and trio loop started and stopped), against the
same N tests without the fixture.  It runs both with N and with 2N tests, so that it can tell the
cost of each test from the one-time cost (the first upstream loads and validates the catalogue).
Each figure is the median of the rounds; the rounds interleave the runs.

How to run it, from the repository root:

    .venv/bin/python benchmarks/plugin_overhead.py               # 30 tests, 5 rounds
    .venv/bin/python benchmarks/plugin_overhead.py --tests 100 --rounds 3
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TEST = """\
import pytest

@pytest.mark.parametrize("n", range({count}))
def test_one(n{fixture}):
    pass
"""


def session_seconds(folder: Path, count: int, fixture: bool) -> float:
    """pytest's session time for `count` tests, each with a fresh chaos_upstream when `fixture`."""
    path = folder / f"test_{'fresh' if fixture else 'bare'}_{count}.py"
    path.write_text(TEST.format(count=count, fixture=", chaos_upstream" if fixture else ""))
    ran = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
                         cwd=folder, capture_output=True, text=True, check=False)
    found = re.search(rf"^{count} passed in ([\d.]+)s", ran.stdout, re.M)
    if ran.returncode != 0 or found is None:
        sys.exit(f"pytest failed on {path.name}:\n{ran.stdout}{ran.stderr}")
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=30, help="N, the number of tests of the smaller run (default 30)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each kind; the median is reported (default 5)")
    options = parser.parse_args()
    n = options.tests
    runs = [(count, fixture) for count in (n, 2 * n) for fixture in (True, False)]
    times: dict[tuple[int, bool], list[float]] = {run: [] for run in runs}
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "pytest.ini").write_text("[pytest]\n")  # none of the repository's settings
        for _ in range(options.rounds):
            for run in runs:
                times[run].append(session_seconds(Path(folder), *run))
    median = {run: statistics.median(values) for run, values in times.items()}
    fresh, bare = median[n, True], median[n, False]
    marginal = ((median[2 * n, True] - fresh) - (median[2 * n, False] - bare)) / n
    print(f"{n} tests, each with a fresh chaos_upstream: {fresh * 1000:.0f} ms in pytest "
          f"(the same tests without it: {bare * 1000:.0f} ms; median of {options.rounds} rounds)")
    print(f"per test: {(fresh - bare) / n * 1000:.1f} ms, the one-time catalogue load included; "
          f"each further test: {marginal * 1000:.1f} ms")


if __name__ == "__main__":
    main()
