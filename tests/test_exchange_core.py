"""The sans-IO exchange: every ending, the one translation of OS errors, and bytes split anyhow."""

import errno
import random

import pytest

from chaos_upstream.verifier.attempts import SETTLE, settling
from chaos_upstream.verifier.classify import ResponseParser, classify
from chaos_upstream.verifier.exchange import Exchange, ending_of

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
CLOSE_DELIMITED = b"HTTP/1.1 200 OK\r\n\r\nuntil the FIN"


def test_a_fin_ends_it_with_every_piece_and_its_time():
    exchange = Exchange()
    exchange.received(0.1, b"HTTP/1.1 ")
    exchange.received(0.25, b"200 OK\r\n")
    assert not exchange.over
    exchange.received(0.3, b"")
    seen = exchange.capture(0.31)
    assert (seen.pieces, seen.ending, seen.elapsed) == (((0.1, b"HTTP/1.1 "), (0.25, b"200 OK\r\n")), "fin", 0.31)
    assert (seen.data, seen.first_byte) == (b"HTTP/1.1 200 OK\r\n", 0.1)


def test_done_ends_it_open_at_the_piece_that_completes_the_response():
    exchange = Exchange(ResponseParser("GET").feed)
    exchange.received(0.1, OK[:10])
    assert not exchange.over
    exchange.received(0.2, OK[10:])
    assert exchange.over
    assert (exchange.capture(0.2).ending, exchange.capture(0.2).data) == ("open", OK)


def test_the_time_limit_ends_it_with_what_came_so_far():
    exchange = Exchange()
    exchange.received(0.1, b"HTTP/1.1 200")
    exchange.timed_out()
    seen = exchange.capture(1.0)
    assert (seen.ending, seen.data, seen.elapsed) == ("timeout", b"HTTP/1.1 200", 1.0)


@pytest.mark.parametrize(("error", "ending"), [
    (OSError(errno.ECONNRESET, "Connection reset by peer"), "rst"),
    (OSError(errno.EPIPE, "Broken pipe"), "rst"),
    (OSError(errno.ECONNABORTED, "Software caused connection abort"), "rst"),
    (OSError(errno.ETIMEDOUT, "Connection timed out"), "timeout"),
    (TimeoutError("timed out"), "timeout"),  # a blocking socket's own limit: no errno
])
def test_os_errors_translate_into_endings(error, ending):
    assert ending_of(error) == ending
    exchange = Exchange()
    exchange.received(0.1, b"HTTP/1.1 200 OK\r\n")
    exchange.failed(error)
    assert (exchange.capture(0.2).ending, exchange.capture(0.2).data) == (ending, b"HTTP/1.1 200 OK\r\n")


def test_epipe_is_a_reset_whatever_class_carries_it():
    assert isinstance(OSError(errno.EPIPE, "Broken pipe"), BrokenPipeError)
    assert ending_of(BrokenPipeError(errno.EPIPE, "Broken pipe")) == ending_of(ConnectionResetError(errno.ECONNRESET, "reset")) == "rst"


@pytest.mark.parametrize("code", [errno.ENETDOWN, errno.EHOSTUNREACH, errno.ENOBUFS, errno.EBADF])
def test_an_error_that_is_no_ending_is_raised_again(code):
    error = OSError(code, "not a peer's doing")
    assert ending_of(error) is None
    exchange = Exchange()
    with pytest.raises(OSError) as raised:
        exchange.failed(error)
    assert raised.value is error and not exchange.over


def test_it_ends_exactly_once():
    exchange = Exchange()
    with pytest.raises(RuntimeError, match="only once it has ended"):
        exchange.capture(0.0)
    exchange.received(0.1, b"")
    for late in (lambda: exchange.received(0.2, b"x"), exchange.timed_out, lambda: exchange.failed(OSError(errno.EPIPE, "x"))):
        with pytest.raises(RuntimeError, match=r"already ended \(fin\)"):
            late()
    assert exchange.capture(0.3).ending == "fin"


def splits(data: bytes, rng: random.Random) -> list[list[bytes]]:
    """`data` whole, one byte at a time, and in ten random cuts."""
    cuts = [sorted(rng.sample(range(1, len(data)), rng.randint(1, min(8, len(data) - 1)))) for _ in range(10)]
    return [[data], [data[i : i + 1] for i in range(len(data))]] + [
        [data[a:b] for a, b in zip([0, *points], [*points, len(data)])] for points in cuts
    ]


@pytest.mark.parametrize(("response", "after", "ending"), [
    (OK, b"", "open"),
    (OK, b"HTTP/1.1 200 OK\r\n", "open"),  # bytes past a complete response, in the same piece or after
    (CHUNKED, b"", "open"),
    (CLOSE_DELIMITED, b"", "fin"),
    (OK[:-2], b"", "fin"),
    (b"<html>not HTTP</html>", b"", "open"),  # not a status line: nothing more to wait for, from its first piece
])
def test_bytes_split_anyhow_end_alike_and_classify_alike(response, after, ending):
    rng = random.Random(11)
    outcomes = set()
    for pieces in splits(response + after, rng):
        exchange = Exchange(ResponseParser("GET").feed)
        for n, piece in enumerate(pieces):
            if exchange.over:
                break
            exchange.received(0.01 * n, piece)
        if not exchange.over:
            exchange.received(1.0, b"")
        seen = exchange.capture(1.0)
        observed = classify(seen)
        assert response.startswith(seen.data) if not observed.status else seen.data.startswith(response)
        outcomes.add((seen.ending, observed.kind, observed.status, observed.body_bytes, observed.detail[:20]))
    assert len(outcomes) == 1, outcomes
    assert outcomes.pop()[0] == ending


def run(waits):
    """Drive a `settling` generator without sleeping: (the waits it asked for, what it returned)."""
    asked = []
    try:
        while True:
            asked.append(next(waits))
    except StopIteration as settled:
        return asked, settled.value


def test_settling_looks_until_an_attempt_beyond_the_earlier_ones_shows():
    journal = [[{"n": 0}], [{"n": 0}], [{"n": 0}, {"n": 1}]]
    asked, found = run(settling(lambda: journal.pop(0), earlier=1, poll=0.02))
    assert (asked, found) == ([0.02, 0.02], [{"n": 1}])


def test_settling_gives_up_after_settle_seconds_of_sleeps():
    looks = []
    asked, found = run(settling(lambda: looks.append(1) or [], poll=0.02))
    assert found == [] and sum(asked) == pytest.approx(SETTLE, abs=0.02) and len(looks) == len(asked) + 1
