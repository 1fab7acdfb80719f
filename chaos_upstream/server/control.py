"""What the admin API drives: one Upstream in this process, or the workers of `serve --workers N`.

Both give the same calls, so the admin API is written once. Invariant: `set_active` is applied to
every process that serves requests before it returns.
"""

from __future__ import annotations

from typing import Any, Protocol

from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.server.upstream import Stats, Upstream


class Control(Protocol):
    """The calls the admin API makes."""

    catalogue: Catalogue
    default: str
    active: str | None

    def readiness(self) -> tuple[bool, list[tuple[str, int]]]:
        """Whether every listener accepts, and the addresses."""

    async def set_active(self, name: str | None) -> None: ...

    async def stats(self) -> Stats: ...

    async def journal(self, probe: str | None, type: str | None) -> list[dict[str, Any]]: ...


class Local:
    """Control of an Upstream running in this process."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.catalogue = upstream.catalogue
        self.default = upstream.settings.default

    @property
    def active(self) -> str | None:
        return self.upstream.active

    def readiness(self) -> tuple[bool, list[tuple[str, int]]]:
        return self.upstream.accepting, list(self.upstream.addresses)

    async def set_active(self, name: str | None) -> None:
        self.upstream.active = name

    async def stats(self) -> Stats:
        return self.upstream.stats

    async def journal(self, probe: str | None, type: str | None) -> list[dict[str, Any]]:
        return self.upstream.journal.records(probe=probe, type=type)
