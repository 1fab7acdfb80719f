"""Serving upstreams for a check, a matrix cell or a test: a fleet serving the catalogue and each
connection-level scenario at a port of its own, all writing one journal, for as long as a block runs.

Invariant: when the block ends, every server started here has stopped (they run in the block's own
nursery); an address that cannot be listened on is a ConfigError naming it, before the block runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from chaos_upstream.errors import ConfigError, unwrap
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.plan.selection import route_prefix
from chaos_upstream.plan.timeline import Change
from chaos_upstream.server.fleet import Fleet, Member, play
from chaos_upstream.server.journal import Journal
from chaos_upstream.server.upstream import Settings, Upstream
from chaos_upstream.tls.contexts import Contexts
from chaos_upstream.verifier.series import Address


class Members(list[Member]):
    """The fleet serving the catalogue, one member per address, in the order of the `member` index
    of the journal's records: the verifier's `series.Fleet`, which plays timelines on them."""

    @property
    def addresses(self) -> list[Address]:
        return [member.address for member in self]

    async def play(self, changes: Sequence[Change], start: float) -> None:
        """Carry out each change at its time (trio's clock, from `start`), in order."""
        await play(changes, self, start)

    async def restore(self) -> None:
        """Every member listening again and serving its default scenario, whatever was played."""
        for member in self:
            await member.start()
            member.serve(None)


@dataclass(frozen=True)
class Served:
    """Upstreams being served, sharing one journal: the catalogue at `addresses`, and each
    connection-level scenario at its own address in `ports`."""

    journal: Journal
    members: Members
    """The fleet serving the catalogue, one member per address."""
    ports: dict[str, Address]

    @property
    def addresses(self) -> list[Address]:
        return self.members.addresses

    @property
    def routes(self) -> dict[str, Address]:
        """What a proxy must route: each connection-level scenario's path prefix to its port."""
        return {route_prefix(name): address for name, address in self.ports.items()}


@asynccontextmanager
async def serving(
    catalogue: Catalogue, addresses: Sequence[Address], *, timing: Timing, ports: Mapping[str, Address] | None = None,
    tls: Contexts | None = None,
) -> AsyncIterator[Served]:
    """Serve until the block ends (over TLS with `tls`); port 0 in an address picks a free port
    (`Served` has the real ones)."""
    journal = Journal()
    async with trio.open_nursery() as nursery:

        async def start(server: Upstream | Fleet) -> Address:
            try:
                [address, *_] = await nursery.start(server.run)
            except (OSError, BaseExceptionGroup) as exc:  # a Member's own nursery wraps its Upstream's error
                failure = unwrap(exc, OSError)
                if failure is None:
                    raise
                where = failure.filename or "its address"
                raise ConfigError(f"cannot serve an upstream on {where}: {failure.strerror or failure}") from None
            return address

        fleet = Fleet(catalogue, [_settings(address, timing, tls=tls) for address in addresses], journal)
        await start(fleet)
        own = {name: await start(Upstream(catalogue, _settings(address, timing, tls, name), journal))
               for name, address in (ports or {}).items()}
        yield Served(journal, Members(fleet.members), own)
        nursery.cancel_scope.cancel()


def _settings(address: Address, timing: Timing, tls: Contexts | None, default: str = "healthy") -> Settings:
    return Settings(host=address[0], port=address[1], timing=timing, default=default, tls=tls)
