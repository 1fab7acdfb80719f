"""A raw HTTP/2 client for the tests: requests made with the `h2` library, what comes back read frame
by frame from the bytes (so a frame `h2` would refuse, DATA on stream 0 or an upper-case field, is
seen as it was sent)."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import h2.config
import h2.connection
import hpack
import trio

FRAME_TYPES = {0: "DATA", 1: "HEADERS", 3: "RST_STREAM", 4: "SETTINGS", 6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION"}
CODES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL"}


@dataclass(frozen=True)
class Frame:
    type: str
    flags: int
    stream: int
    payload: bytes
    fields: tuple[tuple[bytes, bytes], ...] = ()
    """A HEADERS frame's fields, decoded."""

    @property
    def end_stream(self) -> bool:
        return self.type in ("DATA", "HEADERS") and bool(self.flags & 0x1)

    @property
    def code(self) -> str:
        """An RST_STREAM's or a GOAWAY's error code, by name."""
        raw = self.payload[:4] if self.type == "RST_STREAM" else self.payload[4:8]
        value = struct.unpack(">I", raw)[0]
        return CODES.get(value, hex(value))

    @property
    def last_stream(self) -> int:
        return struct.unpack(">I", self.payload[:4])[0] & 0x7FFFFFFF


class Reader:
    """Frames from a connection's bytes as they come; a header block split over CONTINUATION frames
    comes out as one HEADERS frame, decoded, once its END_HEADERS has come."""

    def __init__(self) -> None:
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 24  # oversized-headers sends 256 KiB of them
        self.pending = b""
        self.block: tuple[int, int, bytes] | None = None
        """A header block begun: its HEADERS frame's flags and stream, and the fragments so far."""

    def feed(self, data: bytes) -> list[Frame]:
        frames, data = [], self.pending + data
        while len(data) >= 9:
            length = int.from_bytes(data[:3], "big")
            if len(data) < 9 + length:
                break
            kind, flags, stream = data[3], data[4], int.from_bytes(data[5:9], "big") & 0x7FFFFFFF
            payload, data = data[9 : 9 + length], data[9 + length :]
            name = FRAME_TYPES.get(kind, str(kind))
            if name in ("HEADERS", "CONTINUATION"):
                begun = (flags, stream, payload) if name == "HEADERS" else (self.block[0], self.block[1], self.block[2] + payload)
                if not flags & 0x4:  # END_HEADERS still to come
                    self.block = begun
                    continue
                self.block = None
                flags, stream, payload = begun[0] | 0x4, begun[1], begun[2]
                fields = tuple((n if isinstance(n, bytes) else n.encode(), v if isinstance(v, bytes) else v.encode())
                               for n, v in self.decoder.decode(payload, raw=True))
                frames.append(Frame("HEADERS", flags, stream, payload, fields))
                continue
            frames.append(Frame(name, flags, stream, payload))
        self.pending = data
        return frames


def request(scenario: str | None = None, *, method: str = "GET", path: str = "/", probe: str | None = None,
            extra: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    headers = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "upstream.test")]
    if scenario:
        headers.append(("x-chaos-scenario", scenario))
    if probe:
        headers.append(("x-chaos-probe", probe))
    return headers + list(extra)


async def exchange(
    address: tuple[str, int], requests: Sequence[list[tuple[str, str]]], *, body: bytes = b"",
    until: Callable[[list[Frame]], bool] | None = None, limit: float = 3.0,
) -> list[Frame]:
    """Open a connection, send each request on its own stream (1, 3, ...; with `body` when given),
    and read frames until the server closes, `until` them holds, or `limit` seconds pass."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    for index, headers in enumerate(requests):
        client.send_headers(2 * index + 1, headers, end_stream=not body)
        if body:
            client.send_data(2 * index + 1, body[:16384], end_stream=len(body) <= 16384)
    frames: list[Frame] = []
    reader = Reader()
    with trio.move_on_after(limit):
        async with await trio.open_tcp_stream(*address) as stream:
            await stream.send_all(client.data_to_send())
            while True:
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not data:
                    break
                frames += reader.feed(data)
                if until is not None and until(frames):
                    break
    return frames


def on_stream(frames: list[Frame], stream: int = 1) -> list[Frame]:
    return [frame for frame in frames if frame.stream == stream]


def ended(stream: int = 1) -> Callable[[list[Frame]], bool]:
    """Until the stream has ended (END_STREAM or RST_STREAM) or a GOAWAY came."""
    return lambda frames: any(
        frame.type == "GOAWAY" or (frame.stream == stream and (frame.end_stream or frame.type == "RST_STREAM")) for frame in frames
    )
