"""The probe without trio: one blocking socket, for callers with an I/O world of their own (locust,
whose gevent makes `socket` and `time.sleep` cooperative).

Invariant: the bytes sent, the Capture (decided by the same `Exchange`), the classification and the
judgement are those of `probe`; only the I/O differs. The attempts come from a `Journal` (a running
upstream's, through its admin API: `AdminJournal`) when one is given, and the verdict rests on what
the client saw alone when none is.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import RFC, Scenario
from chaos_upstream.records import Attempt
from chaos_upstream.verifier.attempts import POLL, Journal, attempts, settling
from chaos_upstream.verifier.classify import ResponseParser, classify
from chaos_upstream.verifier.exchange import RECEIVE_SIZE, Capture, Exchange
from chaos_upstream.verifier.probe import (
    Result, Sample, judged, outgoing, probe_defaults, probe_limit, unreachable,
)


def capture_blocking(
    host: str, port: int, request: bytes, *, limit: float, done: Callable[[bytes], bool] | None = None
) -> Capture:
    """`capture`, on a blocking socket: send `request`, record what comes back until FIN, RST,
    `limit` seconds, or `done(piece)`."""
    return capture_socket(socket.create_connection((host, port), timeout=limit), request, limit=limit, done=done)


def capture_socket(
    sock: socket.socket, request: bytes, *, limit: float, done: Callable[[bytes], bool] | None = None
) -> Capture:
    """`capture_blocking` on a socket already connected, which it closes."""
    with sock:
        exchange = Exchange(done)
        start = time.monotonic()
        try:
            sock.settimeout(limit)
            sock.sendall(request)
            while not exchange.over:
                if (left := limit - (time.monotonic() - start)) <= 0:
                    exchange.timed_out()
                    break
                sock.settimeout(left)
                data = sock.recv(RECEIVE_SIZE)
                exchange.received(time.monotonic() - start, data)
        except OSError as exc:
            exchange.failed(exc)
        return exchange.capture(time.monotonic() - start)


def probe_blocking(
    proxy_url: str,
    scenario: Scenario,
    *,
    timing: Timing,
    profile: str = RFC,
    journal: Journal | None = None,
    method: str | None = None,
    path: str | None = None,
    body: bytes | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> Result:
    """`probe`, blocking.  The journal is asked only for request-level scenarios (and a refusing
    port needs none): a connection-level scenario's accepted connections cannot be told apart by
    probe when other probes run at once, so its verdict rests on what the client saw."""
    method, body = probe_defaults(scenario, method, body)
    out = outgoing(proxy_url, scenario, method=method, path=path, body=body, headers=headers)
    asked = journal is not None and scenario.trigger == "request"
    parser = ResponseParser(method)
    unread = ""
    try:
        seen = capture_blocking(out.host, out.port, out.request, limit=probe_limit(timing), done=parser.feed)
    except OSError as exc:
        sample = unreachable(out.probe_id, proxy_url, exc, 0.0)
    else:
        try:
            reached = _settled(journal, out.probe_id) if asked and journal else []
        except OSError as exc:  # the admin API went away mid-run: judge from the client's side, and say so
            asked, reached, unread = False, [], f" (not joined with the upstream's journal, which could not be read: {exc})"
        sample = Sample(out.probe_id, classify(seen, method), seen, tuple(reached))
    result = judged(scenario, sample, method=method, profile=profile, timing=timing, joined=asked or scenario.trigger == "refuse")
    return replace(result, judgement=replace(result.judgement, reason=result.reason + unread)) if unread else result


def _settled(journal: Journal, probe_id: str) -> list[Attempt]:
    """The request-level probe's attempts, as `settled_attempts` waits for them; a look asks the admin
    API over the network, so it looks a quarter as often."""
    waits = settling(lambda: attempts(journal, None, probe_id), poll=4 * POLL)
    try:
        while True:
            time.sleep(next(waits))
    except StopIteration as settled:
        return settled.value  # type: ignore[no-any-return]
