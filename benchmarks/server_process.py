"""A server under measurement as a child process: its port read from its listening line, its stop
(SIGTERM, then SIGKILL if it lingers), what it costs as Linux's /proc shows it (its processes, the
CPU time and resident memory of each); the file descriptor limit of many connections; and the
bounded integer options of the scripts. Shared by the benchmark scripts of this folder, which run as
scripts (`python benchmarks/NAME.py`), so this module is imported by its bare name."""

from __future__ import annotations

import argparse
import os
import re
import resource
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

LISTENING = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")
START_TIMEOUT = 15.0
"""Seconds a server gets to print its listening line."""
STOP_TIMEOUT = 15.0
"""Seconds a server gets to exit after SIGTERM (chaos-upstream's grace is 5 s) before SIGKILL."""


def read_port(process: subprocess.Popen) -> int:
    """The port from the server's `listening on http://127.0.0.1:PORT` line."""
    return int(read_until(process, LISTENING, START_TIMEOUT).group(1))


def read_until(process: subprocess.Popen, pattern: re.Pattern[bytes], timeout: float) -> re.Match[bytes]:
    """The first match of `pattern` in what the process writes to its stdout from now on, within
    `timeout` seconds. What it wrote after the match, in the same read, is not kept."""
    deadline, output = time.monotonic() + timeout, b""
    while (match := pattern.search(output)) is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([process.stdout], [], [], remaining)[0]:
            raise SystemExit(f"{process.args} did not print {pattern.pattern!r} within {timeout:.0f} s")
        chunk = os.read(process.stdout.fileno(), 4096)
        if not chunk:
            raise SystemExit(f"{process.args} exited ({process.wait()}) before printing {pattern.pattern!r}: {output!r}")
        output += chunk
    return match


def stop_server(process: subprocess.Popen) -> int:
    """SIGTERM, wait, SIGKILL if it lingers; its exit code."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        print(f"{process.args} ignored SIGTERM for {STOP_TIMEOUT:.0f} s; killing it", file=sys.stderr)
        process.kill()
        return process.wait()
    finally:
        process.stdout.close()


def bounded(low: int, high: int):
    """An argparse type: an integer from `low` to `high`."""
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value

    return parse


def raise_fd_limit(wanted: int) -> None:
    """Raise this process's soft limit of open files to `wanted` (children started after inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            raise SystemExit(f"need {wanted} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def process_tree(pid: int) -> list[int]:
    """`pid` and every process descended from it, alive now, parents before children (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):  # it exited while we looked
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, index = [pid], 0
    while index < len(tree):
        tree.extend(sorted(children.get(tree[index], [])))
        index += 1
    return tree


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time process `pid` has used so far (its own threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14 and 15


def machine_busy_seconds() -> float:
    """CPU time all the machine's cores have spent busy (neither idle nor waiting for I/O) since boot."""
    ticks = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = ticks[3], ticks[4]
    return (sum(ticks[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")  # user .. steal; guest is within user


def rss_kib(pid: int) -> int:
    """Process `pid`'s resident memory now (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit(f"/proc/{pid}/status has no VmRSS line")
