"""HTTP/2 frames as bytes, pure: a frame's header, and the lengths read across reads split anyhow."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chaos_upstream.server.h2_frames import PREFACE, FrameLengths, begins_preface, frame, goaway, rst_stream


def test_a_frame_is_its_nine_octet_header_then_its_payload():
    assert frame(0, 1, 3, b"abc") == b"\x00\x00\x03\x00\x01\x00\x00\x00\x03abc"
    assert goaway(5, 2) == b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" + b"\x00\x00\x00\x05\x00\x00\x00\x02"
    assert rst_stream(1, 7) == b"\x00\x00\x04\x03\x00\x00\x00\x00\x01\x00\x00\x00\x07"


def test_the_preface_is_told_apart_from_its_first_byte():
    assert begins_preface(b"P") and begins_preface(PREFACE + b"more") and not begins_preface(b"GET / HTTP/1.1\r\n")
    assert not begins_preface(b"")


@given(st.lists(st.integers(0, 40), min_size=1, max_size=6), st.integers(0, 40), st.lists(st.integers(1, 30), max_size=20))
def test_the_first_frame_past_the_limit_is_found_however_the_bytes_are_split(lengths, limit, cuts):
    data = PREFACE + b"".join(frame(0, 0, 1, b"x" * length) for length in lengths)
    expected = next((length for length in lengths if length > limit), None)
    reader, found, offset = FrameLengths(), None, 0
    for cut in [*cuts, len(data)]:
        piece, offset = data[offset : offset + cut], offset + cut
        if found is None and piece:
            found = reader.oversized(piece, limit)
    assert found == expected
