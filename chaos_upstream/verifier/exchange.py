"""One probe's exchange, sans-IO: what came back, when, and how the connection ended.

The two backends (`capture.capture` on trio, `blocking.capture_blocking` on a blocking socket) only
move bytes and report what happened to an `Exchange`: bytes read (b"" for the peer's FIN), an OS
error, or their time limit. Everything that decides the Capture lives in this file: when there is
nothing more to wait for, and the one translation of OS errors into endings (`ending_of`), so the
backends cannot disagree. Invariants: an exchange ends exactly once and takes no event after that;
it never reads a clock (the backends pass the times) and imports neither trio nor socket.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

RECEIVE_SIZE = 65536
"""Bytes per read the backends ask for: a full socket buffer's worth."""

Ending = Literal["fin", "rst", "timeout", "open"]


@dataclass(frozen=True)
class Capture:
    """What one connection delivered."""

    pieces: tuple[tuple[float, bytes], ...]
    """(seconds since the request was sent, bytes) for every read, in order."""
    ending: Ending
    """fin: the peer closed; rst: it reset; timeout: still open when the limit came; open: still open
    when the caller's `done` said there was nothing more to wait for."""
    elapsed: float
    """Seconds from sending the request to the ending."""

    @property
    def data(self) -> bytes:
        return b"".join(piece for _, piece in self.pieces)

    @property
    def first_byte(self) -> float | None:
        return self.pieces[0][0] if self.pieces else None


RESETS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})
"""The errnos that mean the peer (or the network on its behalf) tore the connection down: "rst"."""


def ending_of(error: OSError) -> Ending | None:
    """The ending an OS error on a read or a write of an exchange means; None when it means none
    (the error is then the caller's to raise: nothing a proxy does should cause it).

    - ECONNRESET: the peer's RST, seen by a read or by the first write after it: "rst".
    - EPIPE: "rst" too. An exchange never shuts its own side down, so a write fails with EPIPE
      only because the connection is already gone: on Linux the first call after a peer's RST
      reports ECONNRESET and every write after that EPIPE (and on a Unix socket a write to a
      closed peer is EPIPE at once). A write that fails because the peer reset is a reset, whichever
      call happened to see it first.
    - ECONNABORTED: the connection was torn down under an established exchange (BSD and Windows
      report a peer's abort so): "rst".
    - ETIMEDOUT (Python's TimeoutError, which a blocking socket's own time limit raises too): the
      answer did not come in time: "timeout".
    """
    if isinstance(error, TimeoutError):
        return "timeout"
    return "rst" if error.errno in RESETS else None


class Exchange:
    """The record of one exchange, fed by a backend: `received` for every read, `failed` for an OS
    error, `timed_out` when the backend's limit came first; `over` says when to stop reading, and
    `capture` gives the result once it is.

    `done`, when given, is called with every piece as it arrives; once it returns True there is
    nothing more to wait for, and the exchange ends "open".
    """

    def __init__(self, done: Callable[[bytes], bool] | None = None) -> None:
        self.done = done
        self.pieces: list[tuple[float, bytes]] = []
        self.ending: Ending | None = None

    @property
    def over(self) -> bool:
        return self.ending is not None

    def received(self, at: float, data: bytes) -> None:
        """`data` was read `at` seconds after the request went out; b"" is the peer's FIN."""
        self._end_once()
        if not data:
            self.ending = "fin"
            return
        self.pieces.append((at, data))
        if self.done is not None and self.done(data):
            self.ending = "open"

    def failed(self, error: OSError) -> None:
        """A read or a write failed with `error`: the exchange ends as `ending_of` says, or `error`
        is raised again when it is no ending."""
        self._end_once()
        ending = ending_of(error)
        if ending is None:
            raise error
        self.ending = ending

    def timed_out(self) -> None:
        """The backend's time limit came before the exchange ended."""
        self._end_once()
        self.ending = "timeout"

    def capture(self, elapsed: float) -> Capture:
        """The Capture of the ended exchange, which took `elapsed` seconds from the request's sending."""
        if self.ending is None:
            raise RuntimeError("an exchange is captured only once it has ended")
        return Capture(tuple(self.pieces), self.ending, elapsed)

    def _end_once(self) -> None:
        if self.ending is not None:
            raise RuntimeError(f"the exchange already ended ({self.ending}): a backend reported on past it")
