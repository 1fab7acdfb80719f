"""What the planner knows of a request: a plain value, built by the server from h11's events."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestInfo:
    """One request as the upstream received it."""

    method: str
    target: str
    """The request target as sent (path and query)."""
    headers: tuple[tuple[str, str], ...] = ()
    """Fields with lower-case names, in order."""
    keep_alive: bool = True
    """The client allows the connection to be reused (HTTP/1.1 without `Connection: close`)."""
    on_connection: int = 1
    """Ordinal of this request on its connection, from 1."""
    ordinal: int = 1
    """Ordinal of this request among those its scenario handled, from 1."""
    path: str | None = None
    """The path rules match against (the target without `/_chaos/NAME` or the query); from target when None."""

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)

    @property
    def match_path(self) -> str:
        return self.path if self.path is not None else self.target.split("?", 1)[0]
