"""Loopback ports for a proxy to listen on, and the probes that tell when it is ready.

Invariants:
- Everything listens on 127.0.0.1 only; the proxy's port is picked by the kernel (bind to port 0).
- Readiness is "a TCP connect to the port succeeds", which cannot tell our proxy from another
  process that bound the port between `free_port` and the proxy's own bind; `free_port` makes
  that unlikely, and a proxy that then fails to bind exits, which later requests will show.
- A wait for readiness polls every READY_POLL_S and gives up after STARTUP_TIMEOUT_S.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

LOOPBACK = "127.0.0.1"
"""The only address anything here listens on: a test harness must not be reachable from outside."""

STARTUP_TIMEOUT_S = 5.0
"""How long a started proxy has to accept a connection: both take ~50 ms; the rest absorbs a loaded
CI machine and nginx's own bind retries (5 tries, 0.5 s apart) when its port was taken."""

READY_POLL_S = 0.02
"""Pause between two readiness probes: short, because startup is the bulk of a fast test's time."""

PROBE_TIMEOUT_S = 0.5
"""One readiness probe's connect timeout; a loopback connect answers at once or is refused."""


def free_port() -> int:
    """A loopback port nobody listens on, parked in TIME_WAIT.

    The kernel does not hand a port in TIME_WAIT to other `bind(("127.0.0.1", 0))` callers (such
    as a test's upstream) for a minute, while a SO_REUSEADDR bind, which both proxies make, takes
    it at once: the window in which another process can grab the port nearly closes.
    """
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, 0))
        listener.listen(1)
        with socket.create_connection(listener.getsockname()):
            listener.accept()[0].close()  # the side that closes first is left in TIME_WAIT
        return listener.getsockname()[1]


def host_port(host: str, port: int) -> str:
    """`host:port` as both proxies write an address, with IPv6 literals in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def accepts(port: int) -> bool:
    """Whether a TCP connect to 127.0.0.1:port succeeds within PROBE_TIMEOUT_S."""
    try:
        socket.create_connection((LOOPBACK, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def poll(ready: Callable[[], bool]) -> bool:
    """Call `ready` every READY_POLL_S until it returns True (then True), or until STARTUP_TIMEOUT_S
    have passed (then False); an exception of `ready` ends the wait."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready():
            return True
        time.sleep(READY_POLL_S)
    return False
