"""Classification of recorded byte streams: every kind, whole and one byte at a time."""

import pytest

from chaos_upstream.verifier.exchange import Capture
from chaos_upstream.verifier.classify import classify

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def recorded(data: bytes, ending: str = "fin", *, one_byte: bool = False) -> Capture:
    pieces = [data[i : i + 1] for i in range(len(data))] if one_byte else ([data] if data else [])
    return Capture(tuple((0.001 * n, piece) for n, piece in enumerate(pieces)), ending, 1.0)


CASES = [
    # (bytes, ending, kind, status, body bytes)
    (OK, "fin", "status", 200, 5),
    (OK, "timeout", "status", 200, 5),
    (OK, "rst", "status", 200, 5),
    (b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", "fin", "status", 502, 0),
    (CHUNKED_HEAD + b"5\r\nhello\r\n0\r\n\r\n", "fin", "status", 200, 5),
    (b"HTTP/1.1 100 Continue\r\n\r\n" + OK, "fin", "status", 200, 5),
    (b"HTTP/1.1 200 OK\r\n\r\nclose-delimited", "fin", "status", 200, 15),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", "fin", "aborted", 200, 5),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", "rst", "aborted", 200, 5),
    (CHUNKED_HEAD + b"5\r\nhello\r\n", "fin", "aborted", 200, 5),
    (CHUNKED_HEAD + b"5\r\nhello\r\n1", "fin", "aborted", 200, 5),
    (CHUNKED_HEAD + b"5\r\nhel", "fin", "aborted", 200, 3),
    (b"HTTP/1.1 200 OK\r\n\r\nclose-delimited", "rst", "aborted", 200, 15),
    (b"HTTP/1.1 200 OK\r\nContent-Le", "fin", "aborted", None, 0),
    (b"HTT", "fin", "aborted", None, 0),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", "timeout", "timeout", 200, 5),
    (CHUNKED_HEAD + b"5\r\nhello\r\nzz\r\n", "fin", "malformed", 200, 5),
    (b"HTTP/1.1 abc OK\r\nContent-Length: 5\r\n\r\nhello", "fin", "malformed", None, 0),
    (b"HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 5\r\n\r\nhello", "fin", "malformed", None, 0),
    (b"\x15\x03\x03\x00\x02\x02\x46\x00\r\n\r\n", "fin", "malformed", None, 0),
    (b"<html>0.9</html>\n", "fin", "malformed", None, 0),
    (b"<html>0.9</html>\n", "timeout", "malformed", None, 0),
    (b"", "fin", "closed", None, 0),
    (b"", "rst", "reset", None, 0),
    (b"", "timeout", "timeout", None, 0),
]


@pytest.mark.parametrize("one_byte", [False, True], ids=["whole", "one-byte"])
@pytest.mark.parametrize(("data", "ending", "kind", "status", "body"), CASES)
def test_classification(data, ending, kind, status, body, one_byte):
    seen = classify(recorded(data, ending, one_byte=one_byte))
    assert (seen.kind, seen.status, seen.body_bytes) == (kind, status, body)
    assert seen.ending == ending


def test_trailing_bytes_after_a_complete_response_are_counted():
    seen = classify(recorded(OK + b"HTTP/1.1 200 OK\r\n"))
    assert (seen.kind, seen.trailing_bytes) == ("status", 17)


def test_interim_codes_and_framing_are_reported():
    seen = classify(recorded(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n" + OK))
    assert seen.interim == (100, 103) and seen.framing == "content-length"
    assert classify(recorded(CHUNKED_HEAD + b"0\r\n\r\n")).framing == "chunked"
    assert classify(recorded(b"HTTP/1.1 200 OK\r\n\r\nx")).framing == "close-delimited"


def test_a_head_request_needs_no_body():
    seen = classify(recorded(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", "timeout"), method="HEAD")
    assert (seen.kind, seen.body_bytes) == ("status", 0)


def test_the_parser_complaint_is_kept_for_malformed_responses():
    seen = classify(recorded(CHUNKED_HEAD + b"zz\r\n"))
    assert seen.kind == "malformed" and "chunk" in seen.detail


def test_the_final_heads_fields_are_kept_as_they_arrived_even_those_h11_refuses():
    data = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nBad Header: x\r\nX-Case:  v a l \r\nContent-Length: 5\r\n\r\nhello"
    for one_byte in (False, True):
        seen = classify(recorded(data, one_byte=one_byte))
        assert seen.kind == "malformed"
        assert seen.fields == ((b"Bad Header", b"x"), (b"X-Case", b"v a l"), (b"Content-Length", b"5"))


def test_the_body_is_digested_without_its_chunk_framing():
    import hashlib

    chunked = classify(recorded(CHUNKED_HEAD + b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n"))
    assert chunked.body_digest == classify(recorded(OK)).body_digest == hashlib.sha256(b"hello").hexdigest()
    assert classify(recorded(OK.replace(b"hello", b"hellO"))).body_digest != chunked.body_digest


def test_bytes_that_are_not_http_have_no_fields():
    assert classify(recorded(b"<html>0.9</html>\n\n: x\r\n\r\n")).fields == ()
    assert classify(recorded(b"HTTP/1.1 200 OK\r\nContent-Le", "fin")).fields == ()
