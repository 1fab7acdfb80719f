"""Scenario files: every problem reported as FILE:LINE: field.path: message, the catalogue valid."""

import json
import textwrap

import jsonschema
import pytest
import yaml

from chaos_upstream.errors import ConfigError
from chaos_upstream.model.catalogue import Catalogue, builtin_dir
from chaos_upstream.model.loading import parse
from chaos_upstream.model.schema import scenario_schema

GOOD = """\
name: demo
description: a demo
phase: body
expect:
  outcomes: [aborted, 502]
steps:
  - kind: status
    code: 200
  - kind: sleep
    duration: 2T
  - kind: close
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(textwrap.dedent(text), "demo.yaml")
    return [str(problem) for problem in caught.value.problems]


def test_a_good_file_parses():
    scenario = parse(GOOD, "demo.yaml")
    assert [step.kind for step in scenario.steps] == ["status", "sleep", "close"]


def test_unknown_step_kind_names_the_line_and_step():
    text = GOOD.replace("kind: sleep", "kind: snooze")
    assert problems(text) == [
        "demo.yaml:9: steps.1: Input tag 'snooze' found using 'kind' does not match any of the expected tags: "
        "'status', 'headers', 'body', 'chunked', 'raw', 'sleep', 'drip', 'close', 'reset', 'half-close', "
        "'hang', 'keep-alive'"
    ]


def test_negative_duration_names_the_field_line():
    [problem] = problems(GOOD.replace("duration: 2T", "duration: -2T"))
    assert problem.startswith("demo.yaml:10: steps.1.duration: ")
    assert "never negative" in problem


def test_missing_field_is_reported_at_its_parent():
    [problem] = problems(GOOD.replace("description: a demo\n", ""))
    assert problem == "demo.yaml:1: description: Field required"


def test_unknown_field_is_reported_on_its_own_line():
    [problem] = problems(GOOD.replace("    code: 200", "    code: 200\n    colour: red"))
    assert problem == "demo.yaml:9: steps.0.colour: Extra inputs are not permitted"


def test_every_problem_is_reported_at_once():
    text = GOOD.replace("phase: body", "phase: lunch").replace("code: 200", "code: 2000")
    found = problems(text)
    assert [p.split(": ")[0] + ": " + p.split(": ")[1] for p in found] == [
        "demo.yaml:3: phase",
        "demo.yaml:8: steps.0.code",
    ]


def test_bad_yaml_names_the_line():
    [problem] = problems(GOOD.replace("  outcomes: [aborted, 502]", "  outcomes: [aborted, 502"))
    assert problem.startswith("demo.yaml:6: (file): invalid YAML")


def test_a_terminal_step_must_be_last():
    [problem] = problems(GOOD.replace("  - kind: close", "  - kind: close\n  - kind: status"))
    assert "step 2 (close) ends the connection, so it must be the last step" in problem


def test_bytes_are_latin1_and_wider_characters_are_refused():
    [problem] = problems(GOOD.replace("    code: 200", '    raw: "HTTP/1.1 200 \\u20ac\\r\\n"'))
    assert "demo.yaml:8: steps.0.raw:" in problem and "not a byte" in problem


def test_a_rule_must_borrow_an_existing_scenario(tmp_path):
    (tmp_path / "a.yaml").write_text(GOOD + "rules:\n  - when: {request: {last: 3}}\n    scenario: nowhere\n")
    with pytest.raises(ConfigError, match="a.yaml:14: rules.0.scenario: no scenario named 'nowhere'"):
        Catalogue.load([tmp_path])


def test_a_name_defined_twice_by_the_user_is_a_problem(tmp_path):
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    with pytest.raises(ConfigError, match="b.yaml:1: name: scenario 'demo' is already defined"):
        Catalogue.load([tmp_path])


def test_a_user_scenario_replaces_the_builtin_of_the_same_name(tmp_path):
    (tmp_path / "healthy.yaml").write_text(GOOD.replace("name: demo", "name: healthy"))
    catalogue = Catalogue.load([tmp_path])
    assert catalogue.entry("healthy").source == tmp_path / "healthy.yaml"
    assert not catalogue.entry("healthy").builtin


CATALOGUE_NAMES = """
healthy close-before-response reset-before-response bad-status-line non-http-response invalid-status-code
headers-then-close invalid-header-name conflicting-content-length oversized-headers http09-response
truncated-content-length truncated-chunked malformed-chunk-size reset-mid-body slow-headers never-respond
stall-mid-body drip-body interim-then-final close-delimited-body upstream-502 keepalive-close-race
""".split()

CONNECTION_LEVEL = [
    "accept-then-close", "accept-then-hang", "accept-then-reset", "connection-refused", "tls-client-certificate-required",
    "tls-expired-certificate", "tls-handshake-alert", "tls-handshake-stall", "tls-protocol-mismatch", "tls-reset-in-handshake",
    "tls-untrusted-certificate", "tls-wrong-name",
]
"""Those of the promised interface: the TLS ones act at the handshake."""


def test_the_catalogue_has_every_request_level_scenario_of_the_interface():
    catalogue = Catalogue.load()
    assert set(CATALOGUE_NAMES) <= set(catalogue.names())


def test_the_connection_level_scenarios_of_the_interface_need_ports_of_their_own():
    catalogue = Catalogue.load()
    assert sorted(s.name for s in catalogue if s.connection_level) == CONNECTION_LEVEL
    assert catalogue.get("connection-refused").steps == []


def test_an_unknown_profile_is_named():
    text = GOOD.replace("  outcomes: [aborted, 502]\n", "  outcomes: [aborted, 502]\n  profiles:\n    traefik: [500]\n")
    assert problems(text) == ["demo.yaml:5: expect: profiles: 'traefik' is not a profile to override; known: varnish, haproxy, apache, envoy"]


@pytest.mark.parametrize(
    ("head", "steps", "message"),
    [
        ("trigger: refuse", "steps:\n  - kind: close", "steps: a refusing scenario, or a TLS fault at the ClientHello, has no steps; any other needs at least one"),
        ("trigger: accept", "", "steps: a refusing scenario, or a TLS fault at the ClientHello, has no steps; any other needs at least one"),
        ("trigger: hang", "steps:\n  - kind: close", "trigger: Input should be 'request', 'accept' or 'refuse'"),
        ("tls: handshake-stall", "steps:\n  - kind: close", "steps: a refusing scenario, or a TLS fault at the ClientHello, has no steps"),
        ("tls: wrong-name", "", "steps: a refusing scenario, or a TLS fault at the ClientHello, has no steps; any other needs at least one"),
        ("tls: valid\ntrigger: accept", "steps:\n  - kind: close", "tls: a TLS scenario is triggered by its handshake, not on accept"),
        ("tls: expired", "steps:\n  - kind: close", "tls: Input should be 'valid', 'handshake-stall'"),
    ],
)
def test_steps_must_fit_the_trigger(head, steps, message):
    text = f"name: demo\ndescription: a demo\nphase: connection\n{head}\nexpect:\n  outcomes: [502]\n{steps}\n"
    assert any(message in problem for problem in problems(text)), problems(text)


def test_every_builtin_file_is_named_for_its_scenario_and_carries_the_schema_line():
    for path in sorted(builtin_dir().glob("*.yaml")):
        text = path.read_text()
        assert text.startswith("# yaml-language-server: $schema=scenario.schema.json\n"), path
        assert parse(text, str(path)).name == path.stem


def test_every_builtin_file_passes_the_published_schema_as_an_editor_would_check_it():
    validator = jsonschema.Draft202012Validator(json.loads((builtin_dir() / "scenario.schema.json").read_text()))
    for path in sorted(builtin_dir().glob("*.yaml")):
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert errors == [], path


def test_the_published_schema_is_current():
    published = json.loads((builtin_dir() / "scenario.schema.json").read_text())
    assert published == scenario_schema(), "run: chaos-upstream schema > scenarios/scenario.schema.json"
