"""The layers: the verifier judges and never starts, drives or imports a server; the harness serves
upstreams and fleets for it and plays timelines on them, through the verifier's own protocols."""

import ast
import subprocess
import sys
from pathlib import Path

import trio

import chaos_upstream
from chaos_upstream.harness import serving
from chaos_upstream.model.durations import Timing
from chaos_upstream.plan.timeline import Change
from chaos_upstream.verifier.attempts import attempts, settled_attempts
from chaos_upstream.verifier.capture import capture
from chaos_upstream.verifier.classify import classify

from conftest import CATALOGUE, T, get

PACKAGE = Path(chaos_upstream.__file__).parent
VERIFIER = sorted((PACKAGE / "verifier").glob("*.py"))
TIMING = Timing(T)


def _imported(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_no_module_of_the_verifier_imports_the_server_anywhere_nor_the_harness_at_import_time():
    assert len(VERIFIER) >= 8
    for path in VERIFIER:
        tree = ast.parse(path.read_text(), str(path))
        everywhere = _imported(tree)
        at_import = [name for statement in tree.body for name in _imported(statement)
                     if not isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        assert not [name for name in everywhere if name.startswith("chaos_upstream.server")], path.name
        assert not [name for name in at_import if name.startswith("chaos_upstream.harness")], path.name


def test_importing_the_whole_verifier_loads_neither_the_server_nor_the_harness():
    modules = ", ".join(f"chaos_upstream.verifier.{path.stem}" for path in VERIFIER if path.stem != "__init__")
    script = (f"import sys, {modules}\n"
              "print(sorted(m for m in sys.modules if m.startswith(('chaos_upstream.server', 'chaos_upstream.harness'))))")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_no_module_of_the_verifier_or_the_harness_is_over_300_lines():
    modules = [*VERIFIER, *(PACKAGE / "harness").glob("*.py")]
    assert {path.name: len(path.read_text().splitlines()) for path in modules if len(path.read_text().splitlines()) > 300} == {}


async def test_the_servers_journal_answers_the_verifiers_reads_of_attempts():
    async with serving(CATALOGUE, [("127.0.0.1", 0)], timing=TIMING) as served:
        host, port = served.addresses[0]
        assert classify(await capture(host, port, get(probe="p-1"), limit=T)).status == 200
        found = await settled_attempts(served.journal, None, "p-1")
        assert [(record.probe, record.type) for record in found] == [("p-1", "request")]
        assert attempts(served.journal, None, "p-2") == []


async def test_a_fleet_plays_a_timeline_and_restores_every_member_listening_and_serving_its_default():
    async with serving(CATALOGUE, [("127.0.0.1", 0)] * 2, timing=TIMING) as served:
        fleet = served.members
        assert len(fleet) == 2 and fleet.addresses == served.addresses
        changes = [Change(0.0, 1, "stop"), Change(0.01, 0, "serve", scenario="upstream-502")]
        await fleet.play(changes, trio.current_time())
        host, port = fleet.addresses[0]
        assert classify(await capture(host, port, get(), limit=T)).status == 502
        assert not fleet[1].listening
        await fleet.restore()
        for host, port in fleet.addresses:
            assert classify(await capture(host, port, get(), limit=T)).status == 200
        done = [(record.member, record.do) for record in served.journal.records(type="change")]
        assert done == [(1, "stop"), (0, "serve")]
