"""Relaying: whether the complete response a client got is the one the upstream's steps sent (its
status, its fields but those a proxy sets for its own connection, its body as its framing delimits
it), as a scenario's `Relay` reads it, and how it differs in words.

Pure: a function of the scenario, the client's Observation, the method and the timing settings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from chaos_upstream.model.durations import Timing
from chaos_upstream.model.scenario import RELAYED, Scenario
from chaos_upstream.plan.sent import Sent, sent
from chaos_upstream.verifier.classify import STATUS, Observation

HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
"""Fields a proxy sets for its own connection to the client (RFC 9110 §7.6.1): a relayed response
need not carry the upstream's."""


def relay_problems(scenario: Scenario, observation: Observation, method: str = "GET", timing: Timing = Timing()) -> list[str]:
    """How the complete response the client got differs from the one the scenario's steps sent, as
    `Relay` reads it; empty when it is that response, intact. Names in words are as the upstream
    sent them (or the client got them)."""
    upstream = sent(scenario, method, timing)
    if observation.status != upstream.status:
        return [f"its status is {observation.status}, the upstream's {upstream.status}"]
    without = {name.lower(): name for name in scenario.expect.relay.without}
    spelled = {name.lower(): name for name, _ in reversed((*observation.fields, *upstream.fields))}
    got, want = _by_name(observation.fields), _by_name(f for f in upstream.fields if f[0].lower() not in without)
    exempt = HOP_BY_HOP | (set() if observation.framing == "content-length" else {b"content-length"})
    problems = [f"the field {quoted(name)} is there, which the proxy should have rejected or removed"
                for low, name in without.items() if low in got]
    squashed = {_squashed(name): name for name in without.values()}
    problems += [f"the field {quoted(squashed[_squashed(low)])} is there renamed {quoted(spelled[low])}, which the proxy "
                 "should have rejected or removed" for low in got if low not in without and _squashed(low) in squashed]
    missing = [low for low in want if low not in exempt and low not in got]
    if missing:
        problems.append(f"{len(missing)} of the {len(want)} field names the upstream sent are missing (first {quoted(spelled[missing[0]])})")
    altered = [low for low in want if low not in exempt and low in got and got[low] != want[low]]
    if altered:
        low = altered[0]
        problems.append(f"{len(altered)} field(s) altered (first {quoted(spelled[low])}: {b', '.join(want[low])!r} became "
                        f"{b', '.join(got[low])[:80]!r})")
    payload = _payload(upstream)
    if observation.body_digest != hashlib.sha256(payload).hexdigest():
        problems.append(f"its {observation.body_bytes}-byte body is not the upstream's {len(payload)} bytes")
    return problems


def _by_name(fields: Iterable[tuple[bytes, bytes]]) -> dict[bytes, list[bytes]]:
    """Field values per lower-cased name, in order."""
    values: dict[bytes, list[bytes]] = {}
    for name, value in fields:
        values.setdefault(name.lower(), []).append(value)
    return values


def _squashed(name: bytes) -> bytes:
    """A field name with its case and every character but letters and digits gone: 'Bad Header' and
    'bad-header' are the same field under it, renamed."""
    return bytes(c for c in name.lower() if chr(c).isalnum())


def quoted(name: bytes) -> str:
    """A field name in words, as it was spelled: 'Bad Header'."""
    return repr(name.decode("latin-1"))


def _payload(upstream: Sent) -> bytes:
    """The body the upstream's framing delimits: Content-Length bytes, or all it sent."""
    lengths = {value for name, value in upstream.fields if name.lower() == b"content-length"}
    if len(lengths) == 1 and (length := lengths.pop()).isdigit():
        return upstream.body[: int(length)]
    return upstream.body


def describe_relayed(scenario: Scenario, observation: Observation, method: str, timing: Timing) -> str:
    """A response relayed intact, in words: "the upstream's complete 200 relayed intact without its
    'Bad Header' field (its 2 other fields byte for byte, and its 24-byte body)"."""
    without = {name.lower() for name in scenario.expect.relay.without}
    count = sum(name.lower() not in without for name, _ in sent(scenario, method, timing).fields)
    dropped = f" without its {' and '.join(map(quoted, scenario.expect.relay.without))} field" if without else ""
    return (f"the upstream's complete {observation.status} relayed intact{dropped} (its {count}{' other' if without else ''} "
            f"fields byte for byte, and its {observation.body_bytes}-byte body)")


def relay_note(scenario: Scenario, observation: Observation, kind: str, method: str, timing: Timing) -> str:
    """For a scenario that allows `relayed`: what of the upstream's response was lost or kept that
    should not have been, in words ("" when nothing, or nothing relayed)."""
    if not scenario.expect.relays or kind == RELAYED:
        return ""
    if kind == STATUS:  # another status is the proxy's own answer, not a relay
        problems = relay_problems(scenario, observation, method, timing)
        same = observation.status == sent(scenario, method, timing).status
        return ", not the upstream's response intact: " + "; ".join(problems) if same and problems else ""
    without = {name.lower() for name in scenario.expect.relay.without}
    kept = [(name, value) for name, value in observation.fields if name.lower() in without]
    if kept:
        name, value = kept[0]
        return f", its head relaying the field the proxy should have rejected or removed ({(name + b': ' + value).decode('latin-1')!r})"
    return ""
