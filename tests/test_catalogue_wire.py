"""Every catalogue scenario, read raw off a real socket: exact bytes, FIN or RST, and timing (T = 0.2 s)."""

import pytest

from chaos_upstream.plan.wirebytes import filler, padding
from chaos_upstream.verifier.capture import capture

from conftest import T, get

OK_HEAD = b"HTTP/1.1 200 OK\r\n"
TEXT_24 = b"Content-Type: text/plain\r\nContent-Length: 24\r\n"
OCTETS = b"Content-Type: application/octet-stream\r\n"

# name -> (exact bytes the client receives, how the connection ends, (earliest, latest) time in T of
# the connection's end, or of the last byte when the connection stays open)
EXPECTED = {
    "healthy": (OK_HEAD + TEXT_24 + b"\r\nchaos-upstream: healthy\n", "timeout", (0, 0.5)),
    "close-before-response": (b"", "fin", (0, 0.5)),
    "reset-before-response": (b"", "rst", (0, 0.5)),
    "bad-status-line": (b"HTTP/1.1 abc OK\r\n" + TEXT_24 + b"\r\nchaos-upstream: badline\n", "fin", (0, 0.5)),
    "non-http-response": (b"\x15\x03\x03\x00\x02\x02\x46\x00\x00\xff\xfe\x80\x81\x00\r\n\r\n", "fin", (0, 0.5)),
    "invalid-status-code": (b"HTTP/1.1 1000 Nope\r\n" + TEXT_24 + b"\r\nchaos-upstream: badcode\n", "fin", (0, 0.5)),
    "headers-then-close": (OK_HEAD + TEXT_24, "fin", (0, 0.5)),
    "invalid-header-name": (
        OK_HEAD + b"Bad Header: chaos\r\n" + TEXT_24 + b"\r\nchaos-upstream: badname\n",
        "fin",
        (0, 0.5),
    ),
    "conflicting-content-length": (
        OK_HEAD + b"Content-Type: text/plain\r\nContent-Length: 24\r\nContent-Length: 48\r\n\r\nchaos-upstream: two CLs\n",
        "fin",
        (0, 0.5),
    ),
    "oversized-headers": (
        OK_HEAD + TEXT_24 + padding(262144 - len(TEXT_24)) + b"\r\nchaos-upstream: bighead\n",
        "fin",
        (0, 0.5),
    ),
    "http09-response": (b"<html><body>chaos-upstream: HTTP/0.9</body></html>\n", "fin", (0, 0.5)),
    "truncated-content-length": (OK_HEAD + OCTETS + b"Content-Length: 100000\r\n\r\n" + filler(0, 1000), "fin", (0, 0.5)),
    "truncated-chunked": (
        OK_HEAD + OCTETS + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"1f4\r\n" + filler(0, 500) + b"\r\n1f4\r\n" + filler(500, 500) + b"\r\n",
        "fin",
        (0, 0.5),
    ),
    "malformed-chunk-size": (
        OK_HEAD + OCTETS + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"1f4\r\n" + filler(0, 500) + b"\r\nzz\r\nchaos-upstream\r\n0\r\n\r\n",
        "fin",
        (0, 0.5),
    ),
    "reset-mid-body": (None, "rst", (0, 0.5)),
    "slow-headers": (OK_HEAD + TEXT_24 + b"\r\nchaos-upstream: toolate\n", "timeout", (4, 4.6)),
    "never-respond": (b"", "timeout", None),
    "stall-mid-body": (OK_HEAD + OCTETS + b"Content-Length: 100000\r\n\r\n" + filler(0, 1000), "fin", (4, 4.6)),
    "drip-body": (OK_HEAD + OCTETS + b"Content-Length: 704\r\n\r\n" + filler(0, 704), "timeout", (3, 3.6)),
    "interim-then-final": (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n"
        + OK_HEAD + TEXT_24 + b"\r\nchaos-upstream: interim\n",
        "timeout",
        (0, 0.5),
    ),
    "close-delimited-body": (OK_HEAD + OCTETS + b"Connection: close\r\n\r\n" + filler(0, 1000), "fin", (0, 0.5)),
    "upstream-502": (
        b"HTTP/1.1 502 Bad Gateway\r\n" + TEXT_24 + b"X-Chaos-Upstream-Status: 502\r\n\r\nchaos-upstream: our 502\n",
        "timeout",
        (0, 0.5),
    ),
    "keepalive-close-race": (OK_HEAD + TEXT_24 + b"\r\nchaos-upstream: racing!\n", "timeout", (0, 0.5)),
    "starting-unavailable": (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 25\r\nRetry-After: 1\r\n\r\n"
        b"chaos-upstream: starting\n",
        "timeout",
        (0, 0.5),
    ),
    "slow-response": (OK_HEAD + TEXT_24.replace(b"24", b"25") + b"\r\nchaos-upstream: slowpoke\n", "timeout", (0.5, 1.0)),
    "post-not-retried": (b"", "rst", (0, 0.5)),
}

LIMIT = 5 * T
"""The client's own time limit: past the slowest scenario's last byte (slow-headers' and
stall-mid-body's, at 4T)."""


def limit(window: tuple[float, float] | None) -> float:
    """How long to watch: 0.5T past the window's end (a connection kept open is seen to stay open),
    or LIMIT for a scenario that never ends."""
    return LIMIT if window is None else (window[1] + 0.5) * T


@pytest.mark.realtime
@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_scenario_bytes_on_a_real_socket(name, start_upstream):
    upstream = await start_upstream()
    host, port = upstream.addresses[0]
    expected, ending, window = EXPECTED[name]
    seen = await capture(host, port, get(scenario=name), limit=limit(window))
    assert seen.ending == ending
    if expected is not None:
        assert seen.data == expected
    if window is not None:
        when = seen.pieces[-1][0] if seen.ending == "timeout" else seen.elapsed
        assert window[0] * T <= when <= window[1] * T, f"at {when:.3f}s"


@pytest.mark.realtime
async def test_reset_mid_body_sends_at_most_the_head_and_half_the_body_before_the_rst(start_upstream):
    upstream = await start_upstream()
    seen = await capture(*upstream.addresses[0], get(scenario="reset-mid-body"), limit=LIMIT)
    sent = OK_HEAD + OCTETS + b"Content-Length: 2000\r\n\r\n" + filler(0, 1000)
    assert seen.ending == "rst"
    assert sent.startswith(seen.data)


@pytest.mark.realtime
async def test_keepalive_close_race_closes_a_reused_connection_without_a_byte(start_upstream):
    upstream = await start_upstream()
    request = get(scenario="keepalive-close-race")
    seen = await capture(*upstream.addresses[0], request + request, limit=LIMIT)
    assert (seen.data, seen.ending) == (OK_HEAD + TEXT_24 + b"\r\nchaos-upstream: racing!\n", "fin")


def test_every_catalogue_scenario_has_its_expected_bytes(catalogue):
    request_level = [s.name for s in catalogue if s.trigger == "request" and not s.timeline and s.tls is None  # TLS: test_tls_serve.py
                     and not s.http2]  # HTTP/2: test_h2_serve.py
    assert sorted(request_level) == sorted(EXPECTED)
