"""What the planner knows of a request: a plain value, built by the server from h11's events."""

from __future__ import annotations

import re
from dataclasses import dataclass

ABSOLUTE_FORM = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")
"""The scheme and authority of an absolute-form target (RFC 9112 §3.2.2), which proxies may send."""


def request_path(target: str) -> str:
    """The path of a request target, in origin or absolute form, without its query: what selection
    and rules see. An absolute form with an empty path has the path "/" (RFC 9110 §4.2.3)."""
    authority = ABSOLUTE_FORM.match(target)
    path = target[authority.end() :] if authority else target
    return path.split("?", 1)[0] or "/"


def header(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    """The first value of field `name` (any case) among `headers` (names in lower case), if any."""
    name = name.lower()
    return next((value for key, value in headers if key == name), None)


@dataclass(frozen=True)
class RequestInfo:
    """One request as the upstream received it."""

    method: str
    target: str
    """The request target as sent: path and query, or a whole absolute URI."""
    headers: tuple[tuple[str, str], ...] = ()
    """Fields with lower-case names, in order."""
    keep_alive: bool = True
    """The client allows the connection to be reused (HTTP/1.1 without `Connection: close`)."""
    on_connection: int = 1
    """Ordinal of this request on its connection, from 1."""
    ordinal: int = 1
    """Ordinal of this request among those its scenario handled, from 1."""
    attempt: int = 1
    """Ordinal of this request among those that carried its probe id, from 1 (1 without one)."""
    path: str | None = None
    """The path rules match against (the target without `/_chaos/NAME` or the query); from target when None."""

    def header(self, name: str) -> str | None:
        return header(self.headers, name)

    @property
    def match_path(self) -> str:
        return self.path if self.path is not None else request_path(self.target)
