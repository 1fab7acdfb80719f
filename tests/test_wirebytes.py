"""The byte builder: filler, padding and framing exactly as documented; honest output parses with h11."""

import h11
import pytest

from chaos_upstream.plan import wirebytes

from conftest import CATALOGUE
from test_planner import plan_for


def test_filler_lines_name_their_offsets_and_slices_agree():
    whole = wirebytes.filler(0, 256)
    assert whole[:64] == b"000000000000 chaos-upstream filler " + b"." * 28 + b"\n"
    assert whole[64:76] == b"000000000064"
    assert wirebytes.filler(100, 90) == whole[100:190]
    assert wirebytes.filler(5, 0) == b""


@pytest.mark.parametrize("size", [22, 30, 1024, 1025, 1045, 1046, 262144, 262144 + 17])
def test_padding_is_exactly_the_asked_size(size):
    pad = wirebytes.padding(size)
    assert len(pad) == size
    lines = pad.split(b"\r\n")[:-1]
    assert all(line.startswith(b"X-Chaos-Pad-") and len(line) <= 1022 for line in lines)
    assert len(lines) == -(-size // 1024)


def test_padding_below_one_field_line_is_one_minimal_line():
    assert wirebytes.padding(1) == b"X-Chaos-Pad-00000: p\r\n"


def test_oversized_headers_put_256_kib_of_fields_on_the_wire():
    data = plan_for(CATALOGUE.get("oversized-headers")).actions[0].data
    head = data.split(b"\r\n\r\n")[0]
    fields = head.split(b"\r\n", 1)[1]
    assert len(fields) + 2 == 262144


def test_chunk_framing():
    assert wirebytes.chunk(b"hello") == b"5\r\nhello\r\n"
    assert wirebytes.chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
    assert wirebytes.last_chunk([]) == b"0\r\n\r\n"
    assert wirebytes.last_chunk([(b"Checksum", b"abc")]) == b"0\r\nChecksum: abc\r\n\r\n"


def test_status_lines_use_the_standard_reason_unless_told():
    assert wirebytes.status_line(b"HTTP/1.1", 504, None) == b"HTTP/1.1 504 Gateway Timeout\r\n"
    assert wirebytes.status_line(b"HTTP/1.0", 299, b"Odd") == b"HTTP/1.0 299 Odd\r\n"
    assert wirebytes.status_line(b"HTTP/1.1", 599, None) == b"HTTP/1.1 599 Unknown\r\n"


def parse_response(data: bytes, *, one_byte_at_a_time: bool):
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    pieces = [data[i : i + 1] for i in range(len(data))] if one_byte_at_a_time else [data]
    events = []
    for piece in pieces:
        client.receive_data(piece)
        while (event := client.next_event()) is not h11.NEED_DATA:
            events.append(event)
            if isinstance(event, h11.EndOfMessage):
                return events
    return events


@pytest.mark.parametrize("name", ["healthy", "interim-then-final", "upstream-502", "drip-body", "slow-headers"])
@pytest.mark.parametrize("one_byte_at_a_time", [False, True])
def test_honest_responses_parse_as_valid_http(name, one_byte_at_a_time):
    data = b"".join(a.data for a in plan_for(CATALOGUE.get(name)).actions if hasattr(a, "data"))
    events = parse_response(data, one_byte_at_a_time=one_byte_at_a_time)
    finals = [e for e in events if isinstance(e, h11.Response)]
    body = b"".join(e.data for e in events if isinstance(e, h11.Data))
    assert len(finals) == 1 and isinstance(events[-1], h11.EndOfMessage)
    assert len(body) == int(dict(finals[0].headers)[b"content-length"])
    interim = [e.status_code for e in events if isinstance(e, h11.InformationalResponse)]
    assert interim == ([100, 103] if name == "interim-then-final" else [])
