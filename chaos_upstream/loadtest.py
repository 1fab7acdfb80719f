"""Load tests with locust: every request is a chaos-upstream probe through the proxy, named for its
scenario in locust's statistics, and a success exactly when its verdict is pass.

So an expected fault outcome (the 502 for an upstream that resets, the aborted body for one that
truncates) counts as a success, and what a correct proxy must not do (a masked truncation, a
malformed response, a replayed POST, a 504 long after the timeout) counts as a failure named by
what was expected and what was seen.

    from chaos_upstream.loadtest import ChaosUser

    class ThroughNginx(ChaosUser):
        host = "http://127.0.0.1:8080"          # the proxy under test
        mix = "healthy=90,truncated-chunked=5,reset-before-response=5"
        admin = "http://127.0.0.1:9901"          # `serve --admin-port 9901`: verdicts joined with the journal

Every class attribute can be overridden on locust's command line (`--chaos-mix`, `--chaos-admin`, ...).

Invariant: importing this module imports locust, which patches the standard library for gevent:
import it from a locustfile, never from a trio program.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

try:
    from locust import User, events, task
    from locust.env import Environment
except ModuleNotFoundError as exc:  # the one optional dependency: say how to get it
    raise ModuleNotFoundError(f"chaos_upstream.loadtest needs locust ({exc}): pip install 'chaos-upstream[locust]'") from exc

from chaos_upstream.errors import ConfigError, UnknownScenario
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import PROFILES, RFC
from chaos_upstream.plan.selection import Mix
from chaos_upstream.verifier.admin_journal import AdminJournal
from chaos_upstream.verifier.blocking import probe_blocking
from chaos_upstream.verifier.judge import INCONCLUSIVE, PASS
from chaos_upstream.verifier.probe import Result

log = logging.getLogger("chaos_upstream.loadtest")


class Misjudged(Exception):
    """A probe whose verdict is not pass; locust groups failures by this message, so it names only
    what was expected and what was seen, never timings or ids."""


@dataclass(frozen=True)
class LoadSettings:
    """What a ChaosUser class probes with, resolved once per class."""

    catalogue: Catalogue
    mix: Mix
    timing: Timing
    profile: str
    seed: int | None
    journal: AdminJournal | None

    @classmethod
    def resolve(cls, user: type[ChaosUser], options: Any) -> LoadSettings:
        """The class's attributes, each overridden by its `--chaos-*` option when given; ConfigError
        when something is wrong, before any request goes out."""

        def option(name: str, default: Any) -> Any:
            value = getattr(options, f"chaos_{name}", None)
            return default if value is None or value == [] else value

        catalogue = Catalogue.load([Path(path) for path in option("scenarios", list(user.scenarios))])
        mix = Mix.parse(option("mix", user.mix))
        for name, _ in mix.weights:
            try:
                scenario = catalogue.get(name)
            except UnknownScenario as exc:
                raise ConfigError(f"mix: {exc}: `chaos-upstream list` shows the loaded ones") from None
            if scenario.timeline:
                raise ConfigError(f"mix: {name!r} is a timeline of members stopping and starting, which one request "
                                  "cannot play: run it with `chaos-upstream check`")
        profile = option("profile", user.profile)
        if profile not in PROFILES:
            raise ConfigError(f"profile: {profile!r} is none of {', '.join(PROFILES)}")
        timeout = float(option("proxy_timeout", user.proxy_timeout))
        if not timeout > 0:
            raise ConfigError(f"proxy timeout: {timeout} is not a positive number of seconds")
        admin = option("admin", user.admin)
        journal = AdminJournal(admin, option("admin_token", user.admin_token)) if admin else None
        if journal is not None:
            try:
                journal.records(probe="chaos-upstream-loadtest-start", type="request", running=True)
            except OSError as exc:
                raise ConfigError(f"admin: cannot read the upstream's journal at {admin} ({exc}); give `serve` "
                                  "--admin-port, or judge from the client's side alone with --chaos-admin ''") from None
        return cls(catalogue, mix, Timing(timeout), profile, option("seed", user.seed), journal)


class ChaosUser(User):
    """A locust user whose every task is one probe of a scenario drawn from `mix`.

    The upstream behind the proxy must be a chaos-upstream (`serve`) with the same scenarios; with
    `admin` set, each verdict is joined with its journal (attempts, retries, masked truncation),
    otherwise it rests on what the client saw alone."""

    abstract = True
    mix: ClassVar[str] = "healthy=1"
    """NAME=WEIGHT,...: the scenarios to draw from, by weight."""
    admin: ClassVar[str | None] = None
    """The upstream's admin API (`serve --admin-port`), e.g. http://127.0.0.1:9901."""
    admin_token: ClassVar[str | None] = None
    proxy_timeout: ClassVar[float] = 1.0
    """The proxy's read timeout (the `--proxy-timeout` the upstream serves with)."""
    profile: ClassVar[str] = RFC
    seed: ClassVar[int | None] = None
    """Seed of the draws: user K (of worker W, in a distributed run) draws the same scenarios in the
    same order every time."""
    scenarios: ClassVar[Sequence[str]] = ()
    """Scenario files or folders added to the built-in catalogue (the upstream must serve them too)."""

    _numbers = itertools.count()

    @classmethod
    def settings(cls, environment: Environment) -> LoadSettings:
        """This class's settings, resolved on first use (ConfigError when wrong)."""
        if "_resolved" not in cls.__dict__:
            if not (environment.host or cls.host):
                raise ConfigError("no host: set `host` or --host to the URL of the proxy under test")
            cls._resolved = LoadSettings.resolve(cls, environment.parsed_options)
        return cls._resolved  # type: ignore[no-any-return]

    def on_start(self) -> None:
        self.chosen = self.settings(self.environment)
        seed = self.chosen.seed
        worker = getattr(self.environment.runner, "worker_index", 0)  # a distributed run's workers draw apart
        self.rng = random.Random(None if seed is None else f"{seed}:{worker}:{next(self._numbers)}")

    @task
    def probe(self) -> None:
        name = self.chosen.mix.pick(self.rng)
        result = probe_blocking(self.host, self.chosen.catalogue.get(name), timing=self.chosen.timing,
                                profile=self.chosen.profile, journal=self.chosen.journal)
        failure = None if result.verdict == PASS else Misjudged(_failure_message(result))
        if failure is not None:
            _explain_once(result, str(failure))
        self.environment.events.request.fire(
            request_type=result.method, name=name, response_time=result.observation.elapsed * 1000,
            response_length=result.observation.body_bytes, response=None, exception=failure,
            context={"probe": result.probe_id, "verdict": result.verdict, "seen": result.seen},
        )


def _failure_message(result: Result) -> str:
    """"fail: expected a 502, saw malformed"; "inconclusive: could not connect to the proxy at ..."."""
    if result.verdict == INCONCLUSIVE:
        return f"{INCONCLUSIVE}: {result.reason.split(': ')[0]}"
    return f"{result.verdict}: expected {result.judgement.expected}, saw {result.seen}"


_explained: set[str] = set()


def _explain_once(result: Result, message: str) -> None:
    """Log the whole account of the first probe to fail with each message."""
    if message not in _explained:
        _explained.add(message)
        log.warning("first probe with %s:\n%s", message, result.explain())


@events.init_command_line_parser.add_listener
def _options(parser: Any, **_: Any) -> None:
    parser.add_argument("--chaos-mix", default=None, metavar="NAME=WEIGHT,...", help="chaos-upstream: the scenarios to probe, by weight")
    parser.add_argument("--chaos-admin", default=None, metavar="URL", help="chaos-upstream: the upstream's admin API, to join verdicts with its journal")
    parser.add_argument("--chaos-admin-token", default=None, metavar="TOKEN", is_secret=True, help="chaos-upstream: the admin API's token")
    parser.add_argument("--chaos-proxy-timeout", type=float, default=None, metavar="SECONDS", help="chaos-upstream: the proxy's read timeout")
    parser.add_argument("--chaos-profile", default=None, choices=PROFILES, help="chaos-upstream: the expectations' profile")
    parser.add_argument("--chaos-seed", type=int, default=None, help="chaos-upstream: seed of the scenario draws")
    parser.add_argument("--chaos-scenarios", action="append", default=None, metavar="PATH", help="chaos-upstream: more scenario files")


@events.init.add_listener
def _check_settings(environment: Environment, **_: Any) -> None:
    """Resolve every ChaosUser class's settings at start-up: a wrong one stops the run, exit 2."""
    for user in environment.user_classes:
        if issubclass(user, ChaosUser):
            try:
                user.settings(environment)
            except ConfigError as exc:
                log.error("chaos-upstream: %s: %s", user.__name__, exc)
                raise SystemExit(2) from None
