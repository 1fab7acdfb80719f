"""Journal records: what the server writes and the verifier reads, one frozen dataclass per kind.

Records are typed from the moment they are made to the moment they are written or served; JSON is
their form in a file, in the admin API and in memory (the journal keeps texts, see server/journal.py).
Invariants: `parse(to_json(record)) == record` for every record; a field that is None and optional
(a tag, an error, an action's byte count) is left out of the JSON, the others are always there (a
request's `probe`, `scenario` and `rule` are null when there were none); `parse` refuses, with a
ValueError naming it, a record of an unknown type or with a field its type does not have, so a
renamed key fails loudly instead of reading as absent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii as _string
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from chaos_upstream.plan.actions import Response


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One action of a plan as run: its name, when it ended (a send: when its bytes went out), its bytes."""

    do: str
    t: float
    bytes: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Tagged:
    """What every record of a worker (`serve --workers`) or a fleet member carries."""

    type: ClassVar[str]
    t: float
    """Seconds since the upstream (or fleet) started, on the monotonic clock."""
    worker: int | None = None
    member: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Planned(Tagged):
    """What a record of a plan's run carries: the plan, what was done, how it ended (written after
    the kind's own fields)."""

    rule: int | None
    """The scenario's rule that applied (None: its default steps; a refused request: no plan)."""
    response: Response | None = None
    actions: Sequence[ActionRecord] = ()
    ended: str | None = None
    duration: float | None = None
    running: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRecord(Planned):
    """A request: written when its plan has run or been cut short (`running` while it runs), or
    when it was refused (a scenario it named is unknown: `scenario` None, with `error` and `status`)."""

    type: ClassVar[str] = "request"
    conn: int
    seq: int
    """The request's number on its connection, from 1."""
    method: str
    target: str
    scenario: str | None
    chosen_by: str
    """How the scenario was chosen: header, path, active, mix or default."""
    probe: str | None
    body_bytes: int = 0
    continue_: str | None = None
    """With `Expect: 100-continue`: whether the 100 Continue was `sent` or `withheld` (JSON `continue`)."""
    body: str | None = None
    """The body's first 64 KiB (latin-1), when the scenario records bodies."""
    error: str | None = None
    status: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptRecord(Planned):
    """An accept-triggered scenario run on a connection before a byte of it was read."""

    type: ClassVar[str] = "accept"
    conn: int
    scenario: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionRecord(Tagged):
    """A connection: written when it has closed."""

    type: ClassVar[str] = "connection"
    conn: int
    peer: str | None = None
    ended: str
    requests: int = 0
    t_end: float
    bytes_in: int
    bytes_out: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BadRequestRecord(Tagged):
    """A request the upstream could not parse or refused before choosing a scenario (answered, closed)."""

    type: ClassVar[str] = "bad-request"
    conn: int
    error: str
    status: int
    ended: str = "closed"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeRecord(Tagged):
    """A change of a timeline played on a fleet, written once done, timed when it began."""

    type: ClassVar[str] = "change"
    do: str
    """stop, start or serve."""
    in_flight: str | None = None
    """For a stop: what became of the requests in flight (finish or reset)."""
    scenario: str | None = None
    """For a start or a serve: the scenario served from then on."""


Record = RequestRecord | AcceptRecord | ConnectionRecord | BadRequestRecord | ChangeRecord
Attempt = RequestRecord | AcceptRecord
"""A time a probe reached an upstream: a request, or a connection an accept-triggered scenario took."""
KINDS: dict[str, type[Record]] = {kind.type: kind for kind in (RequestRecord, AcceptRecord, ConnectionRecord, BadRequestRecord, ChangeRecord)}
RENAMED = {"continue_": "continue"}
"""Attributes whose JSON name is a Python keyword."""
RESPONSE_FIELDS = tuple(f.name for f in fields(Response))
PLANNED = {f.name for f in fields(Planned)} - {f.name for f in fields(Tagged)}
LAYOUTS: dict[type, tuple[tuple[str, str, bool], ...]] = {
    kind: tuple(
        (f',"{RENAMED.get(f.name, f.name)}":', f.name, f.default is None)
        for f in sorted(fields(kind), key=lambda f: f.name in PLANNED)  # stable: the kind's own fields, then the plan's
    )
    for kind in KINDS.values()
}
"""Each class's fields, in JSON order: (the JSON text before its value, the attribute, whether it is
left out when None). `running` is left out when false, so a finished record's JSON has no trace of it."""
ATTRIBUTES: dict[type, dict[str, str]] = {
    kind: {RENAMED.get(f.name, f.name): f.name for f in fields(kind)} for kind in KINDS.values()
}
"""Each class's attributes by their JSON names, for `parse`."""
RESPONSES_CACHED = 1024
"""Texts of distinct declared responses kept (a plan made once declares the same one every time)."""
_responses: dict[Response, str] = {}


def encode(record: Record) -> str:
    """The record's JSON text, compact (no spaces), ASCII, `type` first, as written and served.

    Strategy: written by hand rather than as a dict through `json`, at half the cost of building the
    dict and encoding it (a request record costs ~6 us, against ~12): strings go through json's own
    escaping; a declared response's text is kept once made."""
    parts = ['{"type":"', record.type, '"']
    for key, attribute, optional in LAYOUTS[type(record)]:
        value = getattr(record, attribute)
        if value is None:
            if not optional:
                parts += (key, "null")
        elif value.__class__ is str:
            parts += (key, _string(value))
        elif value is True:
            parts += (key, "true")
        elif value is False:
            if attribute != "running":
                parts += (key, "false")
        elif value.__class__ is Response:
            parts += (key, _response(value))
        elif isinstance(value, (tuple, list)):
            parts += (key, "[" + ",".join([_action(action) for action in value]) + "]")
        else:
            parts += (key, repr(value))
    parts.append("}")
    return "".join(parts)


def to_json(record: Record) -> dict[str, Any]:
    """The record as the JSON object written and served (the rare reader's form: the journal writes `encode`'s text)."""
    return json.loads(encode(record))  # type: ignore[no-any-return]


def parse(data: dict[str, Any]) -> Record:
    """The record a JSON object (from `to_json`, a file or the admin API) is. ValueError when it is not one."""
    kind = KINDS.get(data.get("type"))  # type: ignore[arg-type]
    if kind is None:
        raise ValueError(f"not a journal record: type {data.get('type')!r} is none of {', '.join(KINDS)}")
    layout = ATTRIBUTES[kind]
    unknown = sorted(set(data) - layout.keys() - {"type"})
    if unknown:
        raise ValueError(f"not a {kind.type} record: unknown fields {', '.join(unknown)}")
    values = {layout[name]: value for name, value in data.items() if name != "type"}
    try:
        if values.get("response") is not None:
            values["response"] = Response(**values["response"])
        if "actions" in values:
            values["actions"] = tuple(ActionRecord(**action) for action in values["actions"])
        return kind(**values)
    except TypeError as exc:
        raise ValueError(f"not a {kind.type} record: {exc}") from None


def _response(response: Response) -> str:
    text = _responses.get(response)
    if text is None:
        if len(_responses) >= RESPONSES_CACHED:
            _responses.clear()
        text = _responses[response] = json.dumps({name: getattr(response, name) for name in RESPONSE_FIELDS}, separators=(",", ":"))
    return text


def _action(action: ActionRecord) -> str:
    if action.bytes is None:
        return f'{{"do":{_string(action.do)},"t":{action.t!r}}}'
    return f'{{"do":{_string(action.do)},"t":{action.t!r},"bytes":{action.bytes}}}'
