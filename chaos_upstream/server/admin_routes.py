"""What the admin API's calls do: its routes, the models that validate their bodies and queries, and
the handlers, which touch no socket.

Invariants:
- every body and query is validated by a model (`extra="forbid"`, limits in `Field`) before any
  handler sees it: a body must be `Content-Type: application/json` (a page cannot send that without
  a CORS preflight, which is never answered) and at most MAX_BODY bytes;
- a handler answers with a Reply, never an exception, for anything a caller can send;
- the journal is served in pages of at most MAX_LIMIT records, streamed in batches of BATCH, so
  that the data ports of the same process keep being served while a page goes out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from chaos_upstream.errors import ConfigError
from chaos_upstream.model.scenario import NAME_PATTERN
from chaos_upstream.server.admin_http import JSON, MAX_BODY, Reply
from chaos_upstream.server.admin_metrics import CONTENT_TYPE, exposition
from chaos_upstream.server.control import Control, JournalPage

DEFAULT_LIMIT = 1000
"""Records in a journal page unless `?limit=` says otherwise: hundreds of KB, served in milliseconds."""

MAX_LIMIT = 10_000
"""The largest `?limit=`: a few MB of JSON; more records come with `?since=` in further pages."""

BATCH = 500
"""Journal records per chunk of a streamed page: each send is a checkpoint, so the data ports of the
process are served between batches."""

class _Call(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActiveCall(_Call):
    """The body of `PUT /active`."""

    scenario: str = Field(pattern=NAME_PATTERN)
    """The scenario to serve to requests that name none."""
    member: int | None = Field(None, ge=0, le=1_000_000, strict=True)
    """Only this fleet member (0-based); all of them when absent."""


class TimelineCall(_Call):
    """The body of `POST /timeline`."""

    scenario: str = Field(pattern=NAME_PATTERN)
    """The deploy scenario whose timeline to play on the fleet."""


def _cursor(value: Any) -> Any:
    """`?since=N` or `?since=N,M,...` (one per worker) as a tuple of ints."""
    return tuple(value.split(",")) if isinstance(value, str) else value


class JournalQuery(_Call):
    """The query of `GET /journal`."""

    probe: str | None = Field(None, max_length=1024)
    """Only this probe's records."""
    type: str | None = Field(None, max_length=64)
    """Only records of this type (`request`, `connection`, ...)."""
    running: bool = False
    """On the last page, also the records still in progress."""
    since: Annotated[tuple[Annotated[int, Field(ge=0)], ...], BeforeValidator(_cursor)] = Field((0,), min_length=1, max_length=1024)
    """Records written after this cursor (`X-Chaos-Journal-Next` of the previous page)."""
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    """Records in the page at most."""


Handler = Callable[[Control, Any, str], Awaitable[Reply]]


@dataclass(frozen=True)
class Route:
    """What a call runs, and the model of its body (None: the body is ignored)."""

    handler: Handler
    model: type[_Call] | None = None
    usage: str = ""


def validated(route: Route, content_types: list[str], body: bytes) -> _Call | Reply:
    """The body as the route's model, or the reply that refuses it: 415, 413, 400 or 422."""
    assert route.model is not None
    if len(content_types) != 1 or content_types[0].partition(";")[0].strip().lower() != JSON:
        return Reply.error(415, f"send the body as Content-Type: {JSON}: {route.usage}")
    if len(body) > MAX_BODY:
        return Reply.error(413, f"the body is over {MAX_BODY} bytes: {route.usage}")
    try:
        return route.model.model_validate_json(body)
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_input=False, include_context=False)
        unparsed = [p["msg"] for p in problems if p["type"] == "json_invalid"]
        if unparsed:
            return Reply.error(400, f"the body is not JSON ({unparsed[0]}): {route.usage}")
        listed = [{"loc": list(p["loc"]), "msg": p["msg"], "type": p["type"]} for p in problems]
        return Reply.error(422, route.usage, problems=listed)


async def _healthz(control: Control, call: None, query: str) -> Reply:
    return Reply.json(200, {"status": "ok"})


async def _readyz(control: Control, call: None, query: str) -> Reply:
    ready, addresses = control.readiness()
    return Reply.json(200 if ready else 503, {"ready": ready, "addresses": [list(a) for a in addresses]})


async def _metrics(control: Control, call: None, query: str) -> Reply:
    return Reply(200, exposition(await control.stats(), control.members_listening()), CONTENT_TYPE)


async def _scenarios(control: Control, call: None, query: str) -> Reply:
    scenarios = [scenario.model_dump(mode="json") for scenario in control.catalogue]
    return Reply.json(200, {"active": control.active, "default": control.default, "scenarios": scenarios})


async def _put_active(control: Control, call: ActiveCall, query: str) -> Reply:
    if call.scenario not in control.catalogue:
        return Reply.error(404, f"no scenario named {call.scenario!r}")
    try:
        await control.set_active(call.scenario, call.member)
    except ConfigError as exc:
        return Reply.error(400, str(exc))
    return Reply.json(200, call.model_dump(exclude_none=True, include={"member"}) | {"active": call.scenario})


async def _post_timeline(control: Control, call: TimelineCall, query: str) -> Reply:
    if call.scenario not in control.catalogue:
        return Reply.error(404, f"no scenario named {call.scenario!r}")
    try:
        changes = await control.play(call.scenario)
    except ConfigError as exc:
        return Reply.error(409, str(exc))
    return Reply.json(202, {"playing": call.scenario, "changes": [vars(change) for change in changes]})


async def _delete_active(control: Control, call: None, query: str) -> Reply:
    await control.set_active(None)
    return Reply.json(200, {"active": None, "default": control.default})


async def _journal(control: Control, call: None, query: str) -> Reply:
    """A page of records, streamed; the cursor in `X-Chaos-Journal-Next`, a `Link` to the next page
    when more remain, and in `X-Chaos-Journal-Skipped` the records that left memory unread."""
    fields = parse_qsl(query, keep_blank_values=True)
    if len({name for name, _ in fields}) != len(fields):
        return Reply.error(400, "bad query: give each parameter once", usage=JOURNAL_USAGE)
    try:
        wanted = JournalQuery.model_validate(dict(fields))
        page = await control.journal(wanted.probe, wanted.type, wanted.running, wanted.since, wanted.limit)
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in exc.errors(include_url=False)]
        return Reply.error(400, f"bad query: {'; '.join(problems)}", usage=JOURNAL_USAGE)
    except ConfigError as exc:
        return Reply.error(400, f"bad query: {exc}", usage=JOURNAL_USAGE)
    return Reply(200, b"", headers=_paging(wanted, page), chunks=_batches(page.texts))


JOURNAL_USAGE = (f"GET /journal?since=CURSOR&limit=N (1 to {MAX_LIMIT}, default {DEFAULT_LIMIT})"
                 "&probe=ID&type=TYPE&running=1; CURSOR is the last page's X-Chaos-Journal-Next")


def _paging(wanted: JournalQuery, page: JournalPage) -> tuple[tuple[str, str], ...]:
    cursor = ",".join(map(str, page.next))
    headers = [("X-Chaos-Journal-Next", cursor), ("X-Chaos-Journal-Skipped", str(page.skipped))]
    if page.more:
        query = wanted.model_dump(exclude_defaults=True, exclude={"since"}) | {"since": cursor, "limit": wanted.limit}
        headers.append(("Link", f'</journal?{urlencode(query)}>; rel="next"'))
    return tuple(headers)


def _batches(texts: list[str]) -> Iterator[bytes]:
    """The JSON list of `texts`, in chunks of BATCH records."""
    yield b"["
    for start in range(0, len(texts), BATCH):
        yield ((",\n" if start else "\n") + ",\n".join(texts[start : start + BATCH])).encode()
    yield b"\n]\n"


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/healthz"): Route(_healthz),
    ("GET", "/readyz"): Route(_readyz),
    ("GET", "/metrics"): Route(_metrics),
    ("GET", "/scenarios"): Route(_scenarios),
    ("PUT", "/active"): Route(_put_active, ActiveCall, 'send {"scenario": NAME}, or {"scenario": NAME, "member": K} for one member'),
    ("DELETE", "/active"): Route(_delete_active),
    ("POST", "/timeline"): Route(_post_timeline, TimelineCall, 'send {"scenario": NAME} naming a deploy scenario'),
    ("GET", "/journal"): Route(_journal),
}
