"""A server under measurement as a child process: its port read from its listening line, and its
stop (SIGTERM, then SIGKILL if it lingers); and the bounded integer options of the scripts. Shared by the benchmark scripts of this folder, which
run as scripts (`python benchmarks/NAME.py`), so this module is imported by its bare name."""

from __future__ import annotations

import argparse
import os
import re
import select
import signal
import subprocess
import sys
import time

LISTENING = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")
START_TIMEOUT = 15.0
"""Seconds a server gets to print its listening line."""
STOP_TIMEOUT = 15.0
"""Seconds a server gets to exit after SIGTERM (chaos-upstream's grace is 5 s) before SIGKILL."""


def read_port(process: subprocess.Popen) -> int:
    """The port from the server's `listening on http://127.0.0.1:PORT` line."""
    deadline, output = time.monotonic() + START_TIMEOUT, b""
    while (match := LISTENING.search(output)) is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([process.stdout], [], [], remaining)[0]:
            raise SystemExit(f"{process.args} did not report a port within {START_TIMEOUT:.0f} s")
        chunk = os.read(process.stdout.fileno(), 4096)
        if not chunk:
            raise SystemExit(f"{process.args} exited ({process.wait()}) before listening: {output!r}")
        output += chunk
    return int(match.group(1))


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
