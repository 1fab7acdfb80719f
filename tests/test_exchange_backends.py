"""The exchange's two I/O backends, trio's and the blocking socket's, on real sockets: given the same
peer they make the same Capture, EPIPE and a reset alike."""

import errno
import socket
import struct
import threading
from functools import partial

import pytest
import trio

from chaos_upstream.verifier.blocking import capture_blocking, capture_socket
from chaos_upstream.verifier.capture import capture, capture_on

REQUEST = b"GET / HTTP/1.1\r\nHost: peer\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


async def both(make, request=REQUEST, *, limit=2.0, done=None):
    """(trio's capture, the blocking one's) of a fresh connection from `make()` each."""
    trio_seen = await capture_on(trio.SocketStream(trio.socket.from_stdlib_socket(make())), request, limit=limit, done=done)
    blocking_seen = await trio.to_thread.run_sync(partial(capture_socket, make(), request, limit=limit, done=done))
    return trio_seen, blocking_seen


def closed_peer() -> socket.socket:
    """One end of a Unix socket pair whose other end is closed: a write to it fails with EPIPE."""
    mine, peer = socket.socketpair()
    peer.close()
    return mine


async def test_epipe_is_a_reset_in_both_backends():
    with closed_peer() as probe, pytest.raises(OSError) as raised:
        probe.send(b"x")
    assert raised.value.errno == errno.EPIPE  # the OS does give EPIPE here
    trio_seen, blocking_seen = await both(closed_peer)
    assert (trio_seen.ending, trio_seen.pieces) == (blocking_seen.ending, blocking_seen.pieces) == ("rst", ())


class Peer:
    """A TCP peer on threads: accepts `connections` connections and on each, at once, reads the
    request, answers with `answer` and ends by `how` (fin, rst, or hold until the test is over)."""

    def __init__(self, answer: bytes, how: str, connections: int = 2) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.answer, self.how, self.over = answer, how, threading.Event()
        self.threads = [threading.Thread(target=self._serve, daemon=True) for _ in range(connections)]
        for thread in self.threads:
            thread.start()

    def connect(self) -> socket.socket:
        return socket.create_connection(self.listener.getsockname(), timeout=2.0)

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(self.answer)
            if self.how == "rst":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a RST
            elif self.how == "hold":
                self.over.wait(5.0)

    def close(self) -> None:
        self.over.set()
        for thread in self.threads:
            thread.join(5.0)
        self.listener.close()


@pytest.mark.parametrize(("answer", "how", "ending"), [
    (OK, "fin", "fin"),
    (b"", "rst", "rst"),  # the reset reaches a read (or the write, if it came first): rst either way
    (OK[:20], "hold", "timeout"),
])
async def test_both_backends_capture_a_peer_alike(answer, how, ending):
    peer = Peer(answer, how)
    try:
        trio_seen, blocking_seen = await both(peer.connect, limit=0.3)
    finally:
        peer.close()
    assert (trio_seen.ending, trio_seen.data) == (blocking_seen.ending, blocking_seen.data) == (ending, answer)
    assert trio_seen.elapsed < 2.0 and blocking_seen.elapsed < 2.0


async def test_done_leaves_the_connection_open_in_both_backends():
    peer = Peer(OK, "hold")
    try:
        seen = [await capture(*peer.listener.getsockname(), REQUEST, limit=2.0, done=lambda piece: True),
                await trio.to_thread.run_sync(partial(capture_blocking, *peer.listener.getsockname(), REQUEST, limit=2.0,
                                                      done=lambda piece: True))]
    finally:
        peer.close()
    assert [(s.ending, s.data) for s in seen] == [("open", OK)] * 2
    assert all(s.elapsed < 1.0 for s in seen)


class Failing(trio.abc.Stream):
    """A stream whose every call fails as trio reports an OS error: BrokenResourceError from it."""

    def __init__(self, error: OSError) -> None:
        self.error = error

    async def send_all(self, data):
        raise trio.BrokenResourceError(f"socket connection broken: {self.error}") from self.error

    async def receive_some(self, max_bytes=None):
        raise AssertionError("not reached")

    async def wait_send_all_might_not_block(self):
        pass

    async def aclose(self):
        pass


class FailingSocket:
    """A blocking socket whose every send fails with `error`."""

    def __init__(self, error: OSError) -> None:
        self.error = error

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        pass

    def settimeout(self, seconds):
        pass

    def sendall(self, data):
        raise self.error


@pytest.mark.parametrize("code", [errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED])
async def test_every_reset_errno_is_rst_in_both_backends(code):
    trio_seen = await capture_on(Failing(OSError(code, "gone")), REQUEST, limit=1.0)
    blocking_seen = capture_socket(FailingSocket(OSError(code, "gone")), REQUEST, limit=1.0)
    assert trio_seen.ending == blocking_seen.ending == "rst"


async def test_an_error_that_is_no_ending_comes_out_of_both_backends_as_itself():
    error = OSError(errno.ENETDOWN, "Network is down")
    with pytest.raises(OSError) as from_trio:
        await capture_on(Failing(error), REQUEST, limit=1.0)
    with pytest.raises(OSError) as from_blocking:
        capture_socket(FailingSocket(error), REQUEST, limit=1.0)
    assert from_trio.value is from_blocking.value is error
