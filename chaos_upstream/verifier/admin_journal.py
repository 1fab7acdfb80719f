"""A running upstream's journal, read through its admin API with the standard library alone: the
`Journal` of the blocking probe (locust's users, whose gevent makes `http.client` cooperative).

Invariant: it asks the admin API only `GET /journal` with the filters `Journal.records` takes, and
reads the one page that answers (a probe's records fit in one).
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse

from chaos_upstream.records import Record, parse


class AdminJournal:
    """A `Journal` read from a running `serve --admin-port` (`GET /journal?probe=ID&type=request&running=1`)
    on one keep-alive connection per thread (per greenlet under gevent), opened again when the server
    has closed it.  A read raises OSError when the admin API cannot be reached, refuses it, or answers
    what is not journal records (another program, another version).  `close`
    closes every kept connection."""

    def __init__(self, admin_url: str, token: str | None = None, *, timeout: float = 5.0) -> None:
        url = urllib.parse.urlsplit(admin_url)
        self.admin_url, self.timeout = admin_url, timeout
        self.address = (url.hostname or "127.0.0.1", url.port or 80)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.local = threading.local()
        self.kept: set[http.client.HTTPConnection] = set()

    def records(self, *, probe: str | None = None, type: str | None = None, running: bool = False) -> list[Record]:
        query = {"probe": probe, "type": type, "running": "1" if running else None}
        path = "/journal?" + urllib.parse.urlencode({key: value for key, value in query.items() if value is not None})
        try:
            return self._get(path)
        except ConnectionError:  # most often a kept connection the server had closed: once more, afresh
            return self._get(path)

    def _get(self, path: str) -> list[Record]:
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
        try:
            return [parse(data) for data in json.loads(body)]
        except (ValueError, TypeError, AttributeError) as exc:  # not JSON, not a list, not records
            raise OSError(f"the admin API at {self.admin_url} answered what is not journal records: {exc}") from None

    def close(self) -> None:
        for connection in list(self.kept):
            connection.close()
        self.kept.clear()
