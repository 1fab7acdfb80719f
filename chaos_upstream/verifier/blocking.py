"""The probe without trio: one blocking socket, for callers with an I/O world of their own (locust,
whose gevent makes `socket` and `time.sleep` cooperative).

Invariant: the bytes sent, the classification and the judgement are those of `probe`; only the I/O
differs. The attempts come from `attempts_of` (a running upstream's journal, through its admin API)
when one is given, and the verdict rests on what the client saw alone when none is.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import RFC, Scenario
from chaos_upstream.verifier.attempts import POLL, SETTLE
from chaos_upstream.verifier.capture import RECEIVE_SIZE, Capture, Ending
from chaos_upstream.verifier.classify import ResponseParser, classify
from chaos_upstream.verifier.probe import (
    Result, Sample, judged, outgoing, probe_defaults, probe_limit, unreachable,
)

AttemptsOf = Callable[[str], list[dict[str, Any]]]
"""A probe id -> the journal's request records of it, those still running included."""


def capture_blocking(host: str, port: int, request: bytes, *, limit: float, done: Callable[[bytes], bool]) -> Capture:
    """`capture`, on a blocking socket: send `request`, record what comes back until FIN, RST,
    `limit` seconds, or `done(piece)`."""
    with socket.create_connection((host, port), timeout=limit) as sock:
        start = time.monotonic()
        pieces: list[tuple[float, bytes]] = []
        ending: Ending = "timeout"
        try:
            sock.sendall(request)
            while (left := limit - (time.monotonic() - start)) > 0:
                sock.settimeout(left)
                data = sock.recv(RECEIVE_SIZE)
                if not data:
                    ending = "fin"
                    break
                pieces.append((time.monotonic() - start, data))
                if done(data):
                    ending = "open"
                    break
        except TimeoutError:
            pass
        except (ConnectionResetError, BrokenPipeError):
            ending = "rst"
        return Capture(tuple(pieces), ending, time.monotonic() - start)


def probe_blocking(
    proxy_url: str,
    scenario: Scenario,
    *,
    timing: Timing,
    profile: str = RFC,
    attempts_of: AttemptsOf | None = None,
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
    asked = attempts_of is not None and scenario.trigger == "request"
    parser = ResponseParser(method)
    unread = ""
    try:
        seen = capture_blocking(out.host, out.port, out.request, limit=probe_limit(timing), done=parser.feed)
    except OSError as exc:
        sample = unreachable(out.probe_id, proxy_url, exc, 0.0)
    else:
        try:
            attempts = _settled(attempts_of, out.probe_id) if asked and attempts_of else []
        except OSError as exc:  # the admin API went away mid-run: judge from the client's side, and say so
            asked, attempts, unread = False, [], f" (not joined with the upstream's journal, which could not be read: {exc})"
        sample = Sample(out.probe_id, classify(seen, method), seen, tuple(attempts))
    result = judged(scenario, sample, method=method, profile=profile, timing=timing, joined=asked or scenario.trigger == "refuse")
    return replace(result, judgement=replace(result.judgement, reason=result.reason + unread)) if unread else result


def _settled(attempts_of: AttemptsOf, probe_id: str) -> list[dict[str, Any]]:
    """The probe's attempts, once at least one shows or SETTLE passes (see `settled_attempts`)."""
    deadline = time.monotonic() + SETTLE
    while not (found := attempts_of(probe_id)) and time.monotonic() < deadline:
        time.sleep(4 * POLL)
    return found


class AdminJournal:
    """AttemptsOf, read from a running `serve --admin-port`
    (`GET /journal?probe=ID&type=request&running=1`) on one keep-alive connection per thread (per
    greenlet under gevent), opened again when the server has closed it.  A call raises OSError when
    the admin API cannot be reached or refuses it.  `close` closes every kept connection."""

    def __init__(self, admin_url: str, token: str | None = None, *, timeout: float = 5.0) -> None:
        url = urllib.parse.urlsplit(admin_url)
        self.admin_url, self.timeout = admin_url, timeout
        self.address = (url.hostname or "127.0.0.1", url.port or 80)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.local = threading.local()
        self.kept: set[http.client.HTTPConnection] = set()

    def __call__(self, probe_id: str) -> list[dict[str, Any]]:
        path = "/journal?" + urllib.parse.urlencode({"probe": probe_id, "type": "request", "running": "1"})
        try:
            return self._get(path)
        except ConnectionError:  # most often a kept connection the server had closed: once more, afresh
            return self._get(path)

    def _get(self, path: str) -> list[dict[str, Any]]:
        connection = getattr(self.local, "connection", None) or http.client.HTTPConnection(*self.address, timeout=self.timeout)
        self.local.connection = None
        self.kept.discard(connection)
        try:
            connection.request("GET", path, headers=self.headers)
            reply = connection.getresponse()
            body = reply.read()
        except BaseException:
            connection.close()
            raise
        if reply.status != 200:
            connection.close()
            raise OSError(f"the admin API at {self.admin_url} answered {reply.status}: {body[:200].decode('utf-8', 'replace')}")
        self.local.connection = connection
        self.kept.add(connection)
        return json.loads(body)  # type: ignore[no-any-return]

    def close(self) -> None:
        for connection in list(self.kept):
            connection.close()
        self.kept.clear()
