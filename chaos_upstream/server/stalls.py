"""The stall reaper: resets connections whose send waits on a peer that reads nothing.

Invariant: a peer that stops reading holds its descriptor no longer than one that never writes: its
send is cut between 1 and 1 + 1/STALL_CHECKS idle timeouts after it began.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import trio

from chaos_upstream.server.connection import Live

STALL_CHECKS = 4
"""Looks per idle timeout for sends waiting on a peer that reads nothing."""


async def cut_stalled(live: Mapping[int, Live], timeout: float) -> None:
    """Reset each connection of `live` whose send has waited longer than `timeout` for a peer that
    reads nothing, looking every STALL_CHECKS-th of it, until cancelled.

    Strategy: one watch over every connection, not a cancel scope around every send, which
    cost a tenth of the healthy path's throughput.
    """
    while True:
        await trio.sleep(timeout / STALL_CHECKS)
        now = trio.current_time()
        for connection in list(live.values()):
            since = connection.wire.sending_since
            if since is not None and now - since > timeout:
                with contextlib.suppress(OSError):  # its plan has just closed it
                    await connection.wire.stall()
