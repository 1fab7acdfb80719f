"""A started proxy process: where it listens, its error log, and how it is stopped.

Invariants:
- The proxy runs in the foreground, in a session of its own, so `stop` ends it and every process
  it forked as a whole: SIGTERM, then SIGKILL to the session after STOP_GRACE_S; then it is reaped.
- `wait_ready` returns only once the launcher's `ready` holds (by default: the port accepts a
  connection); a proxy that exits first raises `ProxyFailed` with its error log (`PortTaken` when
  another process had its port).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chaos_upstream.errors import PortTaken, ProxyFailed
from chaos_upstream.proxies.ports import LOOPBACK, STARTUP_TIMEOUT_S, host_port, poll

STOP_GRACE_S = 3.0
"""How long SIGTERM may take before SIGKILL: both proxies stop in milliseconds when healthy."""

ADDRESS_IN_USE = os.strerror(errno.EADDRINUSE)
"""strerror(EADDRINUSE), which nginx and HAProxy both quote when their bind fails."""


@dataclass
class RunningProxy:
    """A started proxy process; `stop` ends it (and every process it forked) and reaps it."""

    name: str
    version: str
    port: int
    config_text: str
    log_path: Path
    process: subprocess.Popen[bytes]
    proxy_timeout: float
    """The upstream timeout the proxy was configured with, in seconds (see `effective_timeout`)."""

    @property
    def url(self) -> str:
        return f"http://{host_port(LOOPBACK, self.port)}"

    def error_log(self) -> str:
        """The proxy's error log so far, for failure reports."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to the whole session if it lingers; idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # not reaped yet: the group id is still ours
            self.process.wait()

    def wait_ready(self, ready: Callable[[], bool]) -> None:
        """Return once `ready()` holds (see `Launcher.ready`); raise with the error log if the proxy
        exits first or it never does."""
        if not poll(lambda: self._running() and ready()):
            raise ProxyFailed(f"{self.name} was not ready on {self.url} within {STARTUP_TIMEOUT_S} s; "
                              f"error log:\n{self.error_log()}")

    def _running(self) -> bool:
        if self.process.poll() is not None:
            self._exited()
        return True

    def _exited(self) -> None:
        log = self.error_log()
        error = PortTaken if ADDRESS_IN_USE in log else ProxyFailed
        raise error(f"{self.name} exited with status {self.process.returncode} while starting "
                    f"on {self.url}; error log:\n{log}")
