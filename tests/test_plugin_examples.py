"""The example test files of examples/ (those docs/pytest.md shows), run by pytest as a user runs them, through real
nginx and HAProxy: they pass and fail exactly where the proxies are right and wrong, and say why."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from chaos_upstream.proxies import require

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SHOWN_IN = {
    **{name: "pytest.md" for name in ("test_nginx_example.py", "test_own_proxy_example.py", "test_trio_example.py",
                                      "pytest.ini", "scenarios/slow-login.yaml")},
    "locustfile.py": "locust.md",
}
"""Each example file, by the page of docs/ that shows it verbatim."""

WRONG = {
    "test_a_broken_status_line_becomes_a_502[nginx-bad-status-line]",
    "test_a_broken_status_line_becomes_a_502[nginx-invalid-status-code]",
    "test_a_broken_status_line_becomes_a_502[haproxy-invalid-status-code]",
}
"""Where the proxies are wrong (docs/proxies.md, "Real proxies, as measured"): nginx 1.22 forwards a broken
status line, and both forward a four-digit status code."""

OUTCOMES = {
    "test_nginx_example.py": {"passed": 15, "failed": 3},
    "test_own_proxy_example.py": {"passed": 4, "xfailed": 1},
    "test_trio_example.py": {"passed": 2},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each example file's pytest output (with -rA), all run at once, each in a process of its own."""
    require("nginx"), require("haproxy")
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA",
             "--basetemp", str(tmp_path_factory.mktemp(name)), str(EXAMPLES / name)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for name in OUTCOMES
    }
    return {name: process.communicate(timeout=120)[0] for name, process in processes.items()}


def outcomes(output: str) -> dict[str, str]:
    """Test name -> PASSED, FAILED, XFAIL..., from the short test summary."""
    return {name: outcome for outcome, name in re.findall(r"^(PASSED|FAILED|XFAIL|XPASS|ERROR|SKIPPED) \S+::(\S+)", output, re.M)}


def report_of(output: str, test: str) -> str:
    """The failure report of one test: from its title line to the next title or summary."""
    return output.split(f" {test} _")[1].split("\n__")[0].split("short test summary info")[0]


@pytest.mark.proxy
@pytest.mark.parametrize("name", OUTCOMES)
def test_each_example_file_ends_as_expected(runs, name):
    last = runs[name].rstrip().splitlines()[-1]
    assert {outcome: int(count) for count, outcome in re.findall(r"(\d+) (\w+)", last)} == OUTCOMES[name], runs[name]


@pytest.mark.proxy
def test_the_nginx_example_fails_exactly_where_a_proxy_is_wrong(runs):
    seen = outcomes(runs["test_nginx_example.py"])
    assert {test for test, outcome in seen.items() if outcome == "FAILED"} == WRONG
    assert set(seen.values()) == {"PASSED", "FAILED"} and len(seen) == 18


@pytest.mark.proxy
def test_a_failure_tells_what_happened_without_opening_a_log(runs):
    report = report_of(runs["test_nginx_example.py"], "test_a_broken_status_line_becomes_a_502[nginx-bad-status-line]")
    for line in [
        "E       AssertionError: verdict 'fail', expected 'pass':",
        "E       bad-status-line: FAIL (rfc profile, probe bad-status-line-",
        "E         expected:     a 502",
        "E         client saw:   malformed (illegal status line: b'HTTP/1.1 abc OK')",
        "E         upstream:     1 attempt(s)",
        " nginx 1.22.1 error log (http://127.0.0.1:",
        "[error] ",
        "upstream sent no valid HTTP/1.0 header while reading response header from upstream",
    ]:
        assert line in report, report
    haproxy = report_of(runs["test_nginx_example.py"], "test_a_broken_status_line_becomes_a_502[haproxy-invalid-status-code]")
    assert "invalid-status-code: FAIL (haproxy profile" in haproxy and " haproxy 2.6" in haproxy


@pytest.mark.proxy
def test_the_own_proxy_example_shows_its_proxy_log_through_pytest(runs):
    output = runs["test_own_proxy_example.py"]
    assert outcomes(output)["test_an_invalid_status_code_becomes_a_502"] == "XFAIL"
    assert re.search(r'app/app1 .* 504 .* sH-- .* "GET /api/orders HTTP/1.1"', output)  # -rA shows captured stderr


def test_every_example_file_is_shown_in_the_documentation():
    shown = {str(path.relative_to(EXAMPLES)) for path in EXAMPLES.rglob("*")
             if path.is_file() and not any(part == "__pycache__" or part.startswith(".") for part in path.relative_to(EXAMPLES).parts)}
    assert shown == set(SHOWN_IN)


@pytest.mark.parametrize("name", SHOWN_IN)
def test_the_documentation_shows_each_example_file_as_it_is_run(name):
    text = (EXAMPLES / name).read_text()
    assert text in (ROOT / "docs" / SHOWN_IN[name]).read_text(), f"examples/{name} differs from its copy in docs/{SHOWN_IN[name]}"
