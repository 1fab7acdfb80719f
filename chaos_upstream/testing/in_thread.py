"""A chaos upstream serving from a thread of its own, for synchronous code:

    with ChaosUpstream(proxy_timeout=0.5) as upstream:                # anywhere else
        result = upstream.probe(proxy_url, "slow-headers")

Invariants:
- Leaving the block (or `close()`) stops every listener and cuts every connection at once.
- Its loop runs in a thread of its own; every call into it goes through `_call`, which works from
  any thread, a trio loop's included (trio.from_thread refuses those).  The exception that ended
  its loop, if one did, is raised in the caller's thread exactly once, as UpstreamCrashed: by the
  next probe, by `raise_if_crashed()` or by `close()`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import trio
import trio.testing

from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.proxies.ports import LOOPBACK
from chaos_upstream.records import Record
from chaos_upstream.server.journal import Journal
from chaos_upstream.testing.in_loop import serving_upstream
from chaos_upstream.testing.upstream import BaseChaosUpstream, Proxy, announce, checked_options
from chaos_upstream.verifier.probe import Result

STOP_LIMIT = 10.0
"""Seconds a ChaosUpstream's thread has to end once told to stop: cancelling takes milliseconds."""


class UpstreamStopped(RuntimeError):
    """A call into a ChaosUpstream whose loop has ended."""


class UpstreamCrashed(RuntimeError):
    """A ChaosUpstream's loop ended with an exception (its cause): a bug, or a scenario it cannot serve."""


class ChaosUpstream(BaseChaosUpstream):
    """An upstream serving from a thread of its own, for synchronous code: running once constructed,
    stopped by `close()` or at the end of a `with` block.  Same options as `open_chaos_upstream`."""

    def __init__(
        self, *, scenarios: Iterable[str | Path] = (), proxy_timeout: float = 1.0, members: int = 1, host: str = LOOPBACK,
        tls: bool = False,
    ) -> None:
        catalogue, timing = checked_options(scenarios, proxy_timeout, members)
        self._error: BaseException | None = None
        self._reported = False
        ready = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(catalogue, timing, members, host, tls, ready),
                                        name="chaos-upstream", daemon=True)
        self._thread.start()
        ready.wait()
        if self._error is not None:  # it could not start
            self._thread.join()
            raise self._error
        inner = self._inner
        super().__init__(catalogue, timing, inner._served, inner.results, inner.tls)
        self.journal = _ThreadJournal(self, inner.journal)
        """Every connection and request the upstream handled: `.records(probe=..., type=...)`."""
        announce(self)

    def _main(self, catalogue: Catalogue, timing: Timing, members: int, host: str, tls: bool, ready: threading.Event) -> None:
        try:
            trio.run(self._serve, catalogue, timing, members, host, tls, ready)
        except BaseException as exc:  # noqa: BLE001: whatever ended the loop is raised in the caller's thread
            self._error = exc
        finally:
            ready.set()

    async def _serve(self, catalogue: Catalogue, timing: Timing, members: int, host: str, tls: bool, ready: threading.Event) -> None:
        async with serving_upstream(catalogue, timing, members, host, tls) as inner:
            self._inner, self._token, self._stopping = inner, trio.lowlevel.current_trio_token(), trio.Event()
            ready.set()
            await self._stopping.wait()

    def probe(self, proxy: Proxy, scenario: str | Scenario, **options: Any) -> Result:
        """As `AsyncChaosUpstream.probe`, blocking until judged."""
        try:
            return self._call(functools.partial(self._inner.probe, proxy, scenario, **options))
        except UpstreamStopped:
            self.raise_if_crashed()
            raise

    def in_rotation(self, proxy: Proxy, **options: Any) -> float | None:
        """As `AsyncChaosUpstream.in_rotation`, blocking until it knows."""
        return self._call(functools.partial(self._inner.in_rotation, proxy, **options))  # type: ignore[no-any-return]

    def raise_if_crashed(self) -> None:
        """Raise UpstreamCrashed from the exception that ended the upstream's loop, the first time
        it is asked."""
        __tracebackhide__ = True
        if self._thread.is_alive():
            with contextlib.suppress(UpstreamStopped):
                self._call(trio.testing.wait_all_tasks_blocked)  # a loop going down has ended after it
        if self._error is not None and not self._reported:
            self._reported = True
            raise UpstreamCrashed(f"the chaos upstream at {self.url} crashed: {self._error!r}") from self._error

    def close(self) -> None:
        """Stop serving, cut every connection, end the thread; raise what crashed the loop, if unreported."""
        if self._thread.is_alive():
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._stopping.set)
            self._thread.join(STOP_LIMIT)
            if self._thread.is_alive():
                raise RuntimeError(f"the chaos upstream at {self.url} did not stop within {STOP_LIMIT} s")
        self.raise_if_crashed()

    def __enter__(self) -> ChaosUpstream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, fn: Callable[[], Any]) -> Any:
        """`fn()` run in the upstream's loop (and awaited, if it returns an awaitable): its result or
        exception, here.  UpstreamStopped, once the thread is over, if the loop is not running."""
        done: Future[Any] = Future()

        async def run() -> None:
            try:
                value = fn()
                done.set_result(await value if inspect.isawaitable(value) else value)
            except trio.Cancelled:
                done.set_exception(UpstreamStopped(f"the chaos upstream at {self.url} stopped during the call"))
                raise
            except BaseException as exc:  # noqa: BLE001: the caller's, not the loop's
                done.set_exception(exc)

        def spawn() -> None:
            try:
                trio.lowlevel.spawn_system_task(run)
            except RuntimeError:  # the run is shutting down
                done.set_exception(UpstreamStopped(f"the chaos upstream at {self.url} is stopping"))

        try:
            self._token.run_sync_soon(spawn)
            return done.result()
        except (trio.RunFinishedError, UpstreamStopped):
            self._thread.join(STOP_LIMIT)
            raise UpstreamStopped(f"the chaos upstream at {self.url} is not running") from None


class _ThreadJournal:
    """A ChaosUpstream's journal, read from the upstream's own loop (never mid-write)."""

    def __init__(self, upstream: ChaosUpstream, journal: Journal) -> None:
        self._upstream = upstream
        self._journal = journal

    def records(self, *, probe: str | None = None, type: str | None = None, running: bool = False) -> list[Record]:
        read = functools.partial(self._journal.records, probe=probe, type=type, running=running)
        try:
            return self._upstream._call(read)
        except UpstreamStopped:
            return read()  # no writer is left
