"""Peers that hang up mid-fault are normal: hundreds of them leave the server serving and leak nothing."""

import os
import socket
import struct

import pytest
import trio

from chaos_upstream.verifier.capture import capture

from conftest import T, get, settled
from test_server import HEALTHY

FAULTS = ["never-respond", "slow-headers", "stall-mid-body", "drip-body", "truncated-chunked"]
PEERS = 200


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def hang_up(address, scenario: str, rst: bool, after: float) -> None:
    """Send a request for `scenario`, read for `after` seconds, then leave with a FIN or an RST."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        await sock.connect(address)
        await sock.send(get(scenario=scenario))
        with trio.move_on_after(after):
            while await sock.recv(65536):
                pass
        if rst:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.realtime
async def test_two_hundred_peers_hanging_up_mid_fault_leave_the_server_serving(start_upstream):
    upstream = await start_upstream()
    address = upstream.addresses[0]
    baseline = open_fds()
    async with trio.open_nursery() as nursery:
        for index in range(PEERS):
            scenario = FAULTS[index % len(FAULTS)]
            nursery.start_soon(hang_up, address, scenario, index % 2 == 0, (index % 4 + 1) * T / 4)
    connections = await settled(upstream.journal, type="connection", count=PEERS, limit=10 * T + 5)
    endings = {record.ended for record in connections}
    assert endings <= {"peer-closed", "peer-reset", "closed", "hung, peer-closed"}, endings
    assert "peer-reset" in endings and "peer-closed" in endings
    assert open_fds() == baseline
    for _ in range(3):
        assert (await capture(*address, get(), limit=T / 2)).data == HEALTHY
