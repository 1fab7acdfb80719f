"""Hostile scenario files: whatever a path holds, loading ends at once in one FILE:LINE line, exit 2.

The files that hang or exhaust a wrong loader (a FIFO, /dev/zero) are run through the CLI in a child
process with a timeout and an address-space cap, so a regression fails the test instead of the suite.
"""

import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from chaos_upstream.cli import main
from chaos_upstream.errors import ConfigError
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.loading import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES, load_file, parse

ROOT = Path(__file__).resolve().parents[1]
HEALTHY = (ROOT / "scenarios" / "healthy.yaml").read_text()
CHILD_TIMEOUT = 15
"""Seconds a child CLI may take: it needs under one; a loader that blocks on a FIFO never ends."""
CHILD_MEMORY = 2 * 1024**3
"""Address-space cap of a child: ten times what it needs, far below what /dev/zero would take."""

HEAD = "name: demo\ndescription: a demo\nphase: body\nexpect: {outcomes: [200]}\n"
LAUGHS = HEAD + "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)
) + "steps: *a9\n"
"""The classic "billion laughs": ten lines, 9**10 values once the aliases are expanded."""
WIDE = 1000
PRODUCT = HEAD + f"p: &p [a, b]\nf: &f [{', '.join(['*p'] * WIDE)}]\ns: &s {{kind: headers, fields: *f}}\n" + (
    f"steps: [{', '.join(['*s'] * WIDE)}]\n"
)
"""8 KB whose validation would build a million header fields: every step is the same 1000 fields."""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chaos_upstream", *args],
        capture_output=True, text=True, timeout=CHILD_TIMEOUT, cwd=ROOT, preexec_fn=_limit_memory,
    )


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """`chaos-upstream validate PATH` in this process: its exit code must be 2; its output lines."""
    assert main(["validate", str(path)]) == 2
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        pytest.param(b"[" * 100_000, 1, f"invalid YAML: nested deeper than {MAX_DEPTH} levels", id="deep-flow"),
        pytest.param(b"a: " + b"{b: " * 50_000, 1, f"invalid YAML: nested deeper than {MAX_DEPTH} levels", id="deep-mapping"),
        pytest.param(HEAD.encode() + b"steps: \xff\xfe\n", 5, "not UTF-8 text: byte 0xff", id="not-utf8"),
        pytest.param(b"name: demo\n\x7fELF\x02\x01\x01\x00\x00\n", 2, "invalid YAML: unacceptable character #x007f", id="binary"),
        pytest.param(b"", 1, "empty: a scenario file holds one mapping", id="empty"),
        pytest.param(HEAD.encode() + b"when: 2024-13-45\n", 5, "invalid YAML: cannot read this value: month must be in 1..12", id="bad-date"),
        pytest.param(b"name: " + b"9" * 5000 + b"\n", 1, "invalid YAML: cannot read this value: Exceeds the limit", id="huge-integer"),
        pytest.param(LAUGHS.encode(), 5, f"invalid YAML: more than {MAX_NODES:,} values once aliases are expanded", id="billion-laughs"),
    ],
)
def test_validate_says_what_is_wrong_in_one_line_with_its_line(tmp_path, capsys, content, line, message):
    path = tmp_path / "hostile.yaml"
    path.write_bytes(content)
    [printed] = validate(path, capsys)
    assert printed.startswith(f"{path}:{line}: (file): {message}"), printed


def test_aliases_that_multiply_into_a_million_values_are_refused_before_validation():
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=f"more than {MAX_NODES:,} values once aliases are expanded"):
        parse(PRODUCT, "product.yaml")
    assert time.perf_counter() - started < 0.5


def test_the_costliest_file_under_the_size_cap_is_refused_in_well_under_a_second():
    """Half a million numbers in 1 MiB: composing them all took 30 s and 400 MB."""
    flat = "[" + "1," * (MAX_FILE_BYTES // 2 - 1) + "1]"
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=f"flat.yaml:1: .*more than {MAX_NODES:,} values"):
        parse(flat, "flat.yaml")
    assert time.perf_counter() - started < 1.0


def test_an_alias_inside_its_own_anchor_is_refused():
    with pytest.raises(ConfigError, match=f"cyclic.yaml:5: .*nested deeper than {MAX_DEPTH} levels once aliases"):
        parse(HEAD + "steps: &loop [*loop]\n", "cyclic.yaml")


def test_a_50_mb_file_is_refused_at_once_without_being_read(tmp_path):
    path = tmp_path / "huge.yaml"
    with path.open("wb") as file:
        file.truncate(50 * 1024 * 1024)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ConfigError, match=f"huge.yaml:1: .*larger than {MAX_FILE_BYTES:,} bytes"):
            load_file(path)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 0.2
    assert peak < 1024 * 1024


def test_a_file_just_over_the_cap_is_refused_and_one_at_the_cap_is_read(tmp_path):
    path = tmp_path / "padded.yaml"
    text = HEALTHY + "#" * (MAX_FILE_BYTES - len(HEALTHY.encode()) - 1) + "\n"
    path.write_text(text)
    assert load_file(path).name == "healthy"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        load_file(path)


def test_a_permission_denied_file_is_one_line(capsys):
    denied = Path("/proc/sys/vm/drop_caches")  # mode 0200: unreadable even for root
    try:
        denied.open("rb").close()
    except PermissionError:
        pass
    else:
        pytest.skip(f"{denied} is readable here")
    assert validate(denied, capsys) == [f"{denied}:1: (file): cannot read: Permission denied"]


def test_a_symlink_loop_is_named_as_one(tmp_path, capsys):
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a.yaml")
    loop = tmp_path / "a.yaml"
    assert validate(loop, capsys) == [f"{loop}:1: (file): cannot read: Too many levels of symbolic links"]


def test_dev_zero_is_refused_without_reading_it():
    result = run_cli("validate", "/dev/zero")
    assert (result.returncode, result.stdout.splitlines()) == (
        2, ["/dev/zero:1: (file): not a regular file (a character device): scenarios are read from regular files only"]
    )


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """A FIFO named like a scenario file, which nobody ever writes to."""
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["validate"],
        ["serve", "--port", "0", "--scenarios"],
        ["list", "--scenarios"],
        ["check", "--proxy", "http://127.0.0.1:9", "--upstream", "127.0.0.1:9", "--scenarios"],
    ],
    ids=lambda command: command[0],
)
def test_every_command_refuses_a_fifo_at_once_in_one_line_with_exit_2(fifo, command):
    """`validate` reports on stdout; the others, which start nothing, on stderr."""
    result = run_cli(*command, str(fifo))
    assert result.returncode == 2
    report = result.stdout if command == ["validate"] else result.stderr
    assert report.splitlines() == [f"{fifo}:1: (file): not a regular file (a FIFO): scenarios are read from regular files only"]
    assert "listening" not in result.stdout


def test_a_folder_reads_only_its_regular_scenario_files(tmp_path, fifo, capsys):
    """The documented choice: in a folder, what is not a regular *.yaml/*.yml file is skipped."""
    (tmp_path / "healthy.yaml").write_text(HEALTHY)
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    (tmp_path / "loop.yml").symlink_to(tmp_path / "loop.yml")
    assert main(["validate", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "1 scenario file valid\n"


def test_each_file_is_parsed_once_even_when_a_problem_shows_after_loading(tmp_path, monkeypatch):
    composed = []
    original = yaml.composer.Composer.compose_document
    monkeypatch.setattr(yaml.composer.Composer, "compose_document", lambda self: composed.append(1) or original(self))
    (tmp_path / "a.yaml").write_text(HEAD + "steps: [{kind: close}]\nrules:\n  - when: {request: {last: 3}}\n    scenario: nowhere\n")
    with pytest.raises(ConfigError, match="a.yaml:8: rules.0.scenario: no scenario named 'nowhere'"):
        Catalogue.load([tmp_path], builtins=False)
    assert len(composed) == 1
