"""The byte builder: status lines, header blocks, chunk framing and filler, exactly as asked.

Nothing here checks or repairs what it is given: writing broken HTTP on purpose is the point.
Honest responses come out byte-identical to what a careful HTTP/1.1 server writes (the tests parse
them with h11).
"""

from __future__ import annotations

import re
from http import HTTPStatus

CRLF = b"\r\n"
HEAD_END = re.compile(rb"\r?\n\r?\n")
"""Where a head ends: its blank line (a bare LF read as CRLF, as lenient readers do)."""
FILLER_LINE = 64
"""Filler comes in 64-byte lines that name their offset, so a cut body shows where it was cut."""
PAD_LINE = 1024
"""Header padding comes in 1 KiB field lines: below every proxy's per-line limit, so only the total counts."""
PAD_MIN = len(b"X-Chaos-Pad-00000: p\r\n")
"""The shortest padding field line."""


def status_line(version: bytes, code: int, reason: bytes | None) -> bytes:
    if reason is None:
        reason = standard_reason(code).encode("latin-1")
    return version + b" " + str(code).encode() + b" " + reason + CRLF


def standard_reason(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"


def header_block(fields: list[tuple[bytes, bytes]], *, end: bool, pad_to: int | None) -> bytes:
    """`name: value\\r\\n` for each field, filler fields up to `pad_to` bytes, and the blank line."""
    block = b"".join(name + b": " + value + CRLF for name, value in fields)
    if pad_to is not None:
        block += padding(pad_to - len(block))
    return block + (CRLF if end else b"")


def padding(size: int) -> bytes:
    """Filler header fields totalling exactly `size` bytes (at least one minimal field line)."""
    full, rest = divmod(max(size, PAD_MIN), PAD_LINE)
    lengths = [PAD_LINE] * full
    if rest:
        if rest < PAD_MIN:  # borrow from the line before, so that the last can hold a whole field
            lengths[-1] -= PAD_MIN - rest
            rest = PAD_MIN
        lengths.append(rest)
    return b"".join(_pad_line(index, length) for index, length in enumerate(lengths))


def _pad_line(index: int, length: int) -> bytes:
    name = b"X-Chaos-Pad-%05d: " % index
    return name + b"p" * (length - len(name) - 2) + CRLF


def filler(start: int, size: int) -> bytes:
    """Bytes [start, start+size) of the endless filler: 64-byte lines `000000000064 chaos-upstream ...`."""
    first = start // FILLER_LINE
    count = (start + size + FILLER_LINE - 1) // FILLER_LINE - first
    text = b"".join(_filler_line(n * FILLER_LINE) for n in range(first, first + count))
    offset = start - first * FILLER_LINE
    return text[offset : offset + size]


def _filler_line(offset: int) -> bytes:
    head = b"%012d chaos-upstream filler " % offset
    return head + b"." * (FILLER_LINE - len(head) - 1) + b"\n"


def chunk(data: bytes) -> bytes:
    return b"%x" % len(data) + CRLF + data + CRLF


def last_chunk(trailers: list[tuple[bytes, bytes]]) -> bytes:
    return b"0" + CRLF + header_block(trailers, end=True, pad_to=None)
