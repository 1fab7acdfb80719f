"""HTTP/2 frames as bytes, without the `h2` library: the preface, a frame's header, error codes by
name, and the lengths of the frames in a connection's bytes as they come. Pure."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from chaos_upstream.model.h2_steps import ERROR_CODES

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""The client connection preface (RFC 9113 §3.4): what tells h2c from HTTP/1.1 on one port."""

CODE_NAMES = {code: name for name, code in ERROR_CODES.items()}
MAX_STREAM = 0x7FFFFFFF
"""The largest stream id."""
GOAWAY, RST_STREAM = 7, 3
"""Frame types (RFC 9113 §6)."""


def begins_preface(data: bytes) -> bool:
    """Whether `data`, the first bytes of a connection, are (the start of) the HTTP/2 preface."""
    return PREFACE.startswith(data[:24]) and bool(data)


def code_name(code: int) -> str:
    return CODE_NAMES.get(code, f"0x{code:x}")


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    """One frame's bytes: its 9-octet header (RFC 9113 §4.1), then the payload."""
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream & MAX_STREAM) + payload


def goaway(last_stream: int, code: int) -> bytes:
    return frame(GOAWAY, 0, 0, struct.pack(">II", last_stream, code))


def rst_stream(stream: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream, struct.pack(">I", code))


@dataclass
class FrameLengths:
    """Reads the length of each frame in a connection's bytes as they come (after the preface), so a
    frame longer than allowed is refused at its header, not once its 16 MiB have been buffered."""

    skip: int = len(PREFACE)
    """Bytes still to pass over: the preface, then the rest of the frame whose header was read."""
    header: bytes = b""

    def oversized(self, data: bytes, limit: int) -> int | None:
        """The length a frame header in `data` declares past `limit`, if one does."""
        view = memoryview(data)
        while view:
            if self.skip:
                taken = min(self.skip, len(view))
                self.skip, view = self.skip - taken, view[taken:]
                continue
            needed = 9 - len(self.header)
            self.header, view = self.header + bytes(view[:needed]), view[needed:]
            if len(self.header) < 9:
                return None
            length, self.header = int.from_bytes(self.header[:3], "big"), b""
            if length > limit:
                return length
            self.skip = length
        return None
