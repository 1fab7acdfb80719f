"""Journal records: what the server writes and the verifier reads, one frozen dataclass per kind.

Records are typed from the moment they are made to the moment they are written or served; JSON is
their form in a file and in the admin API only (in memory the journal keeps them packed: `pack`).
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
from itertools import chain
from operator import attrgetter
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
    stream: int | None = None
    """Over HTTP/2: the request's stream id."""
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
    """A connection-level scenario run on a connection before a request was read: an accept-triggered
    one (before a byte of it was read), or a TLS fault at the handshake (`ended` says how the
    handshake ended: `handshake-done` when it did not fail)."""

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
    sni: str | None = None
    """Over TLS: the server name the client sent."""
    tls_version: str | None = None
    """Over TLS, once the handshake is done: what it settled (TLSv1.3...), the cipher, the ALPN
    protocol, the subject of the client's certificate (mTLS)."""
    tls_cipher: str | None = None
    alpn: str | None = None
    client_certificate: str | None = None
    protocol: str | None = None
    """HTTP/2: `h2c` (prior knowledge) or `h2` (TLS, ALPN); None: HTTP/1.1."""
    goaway: str | None = None
    """Over HTTP/2: the GOAWAY the upstream sent, "CODE last-stream N" (a plan's, a drain's, or
    for a peer that broke the protocol)."""
    peer_goaway: str | None = None
    """Over HTTP/2: the GOAWAY the peer sent, "CODE last-stream N"."""
    peer_close_notify: bool | None = None
    """Over TLS, when the peer ended the session: whether it sent close_notify (False: a bare FIN
    or a reset, which RFC 8446 §6.1 says leaves what came before unconfirmed)."""


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
    """stop, start, serve or restart."""
    in_flight: str | None = None
    """For a stop or a restart: what became of the requests in flight (finish or reset)."""
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
NAMES: dict[type, tuple[str, ...]] = {kind: tuple(attribute for _, attribute, _ in layout) for kind, layout in LAYOUTS.items()}
"""Each class's attributes in JSON order (PLAIN, the order of a packed record's values, leaves out a response and actions)."""
_RESPONSE_VALUES = attrgetter(*RESPONSE_FIELDS)
_ACTION_VALUES = attrgetter("do", "t", "bytes")
NO_RESPONSE = (None,) * len(RESPONSE_FIELDS)
"""A planned record's response packed when it has none (a Response packs its booleans as such)."""
PLAIN: dict[type, tuple[str, ...]] = {kind: tuple(n for n in names if n not in ("response", "actions")) for kind, names in NAMES.items()}
"""Each class's attributes of plain values (all but a planned record's response and actions), in NAMES' order."""
_PLAIN_VALUES = {kind: attrgetter(*names) for kind, names in PLAIN.items()}
PLANNED_KINDS = frozenset(kind for kind in NAMES if issubclass(kind, Planned))
RESPONSES_CACHED = 1024
"""Texts of distinct declared responses kept (a plan made once declares the same one every time)."""
_responses: dict[tuple[Any, ...], str] = {}

Packed = tuple[Any, ...]
"""A record as plain values only (strings, numbers, booleans, None): its PLAIN attributes, then for
a planned record its response's fields (NO_RESPONSE without one) and each action's do, t and bytes."""


def pack(record: Record) -> Packed:
    """The record as one flat tuple of plain values (see Packed), what the journal keeps in memory.

    Strategy: a tuple of plain values only is untracked by the garbage collector the first time a
    collection sees it, so a journal of a hundred thousand records adds nothing to its pauses (as
    objects they would add ~70 ms to every full collection; as nested tuples they would stay tracked
    until a full collection had seen each level); and packing costs a fraction of encoding."""
    kind = type(record)
    values = _PLAIN_VALUES[kind](record)
    if kind not in PLANNED_KINDS:
        return values  # type: ignore[no-any-return]
    response = NO_RESPONSE if record.response is None else _RESPONSE_VALUES(record.response)  # type: ignore[union-attr]
    return values + response + tuple(chain.from_iterable(map(_ACTION_VALUES, record.actions)))  # type: ignore[union-attr]


def unpack(kind: type[Record], values: Packed) -> Record:
    """The record `pack` made `values` of."""
    fields = _fields(kind, values)
    if kind in PLANNED_KINDS:
        fields["response"] = None if fields["response"] is None else Response(*fields["response"])
        fields["actions"] = tuple(ActionRecord(*action) for action in fields["actions"])
    return kind(**fields)


def _fields(kind: type[Record], values: Packed) -> dict[str, Any]:
    """A packed record's attributes: its response as a tuple of its fields (or None), its actions as
    (do, t, bytes) tuples."""
    plain = PLAIN[kind]
    fields = dict(zip(plain, values))
    if kind in PLANNED_KINDS:
        count = len(plain)
        response, actions = values[count : count + len(NO_RESPONSE)], values[count + len(NO_RESPONSE) :]
        fields["response"] = None if response == NO_RESPONSE else response
        fields["actions"] = tuple(zip(actions[0::3], actions[1::3], actions[2::3]))
    return fields


def encode(record: Record) -> str:
    """The record's JSON text, compact (no spaces), ASCII, `type` first, as written and served."""
    return encode_packed(type(record), pack(record))


def encode_packed(kind: type[Record], values: Packed) -> str:
    """The JSON text of the record of `kind` packed as `values` (see `encode`).

    Strategy: written by hand rather than as a dict through `json`, at half the cost of building the
    dict and encoding it: strings go through json's own escaping; a declared response's text is kept
    once made."""
    fields = _fields(kind, values)
    parts = ['{"type":"', kind.type, '"']
    for key, attribute, optional in LAYOUTS[kind]:
        value = fields[attribute]
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
        elif attribute == "response":
            parts += (key, _response(value))
        elif attribute == "actions":
            parts += (key, "[" + ",".join([_action(*action) for action in value]) + "]")
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


def _response(values: tuple[Any, ...]) -> str:
    text = _responses.get(values)
    if text is None:
        if len(_responses) >= RESPONSES_CACHED:
            _responses.clear()
        text = _responses[values] = json.dumps(dict(zip(RESPONSE_FIELDS, values)), separators=(",", ":"))
    return text


def _action(do: str, t: float, bytes: int | None) -> str:
    if bytes is None:
        return f'{{"do":{_string(do)},"t":{t!r}}}'
    return f'{{"do":{_string(do)},"t":{t!r},"bytes":{bytes}}}'
