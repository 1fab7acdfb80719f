"""`serve` settles the garbage collector once it has loaded, so that collections while serving stay short."""

import gc

import pytest

from chaos_upstream.cli import main
from chaos_upstream.commands import serve as serve_command
from chaos_upstream.serving import settle_collector


@pytest.fixture
def collector():
    """Nothing frozen before, nor afterwards, and the thresholds as they were: settling the
    collector is for good in a process."""
    thresholds = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_settling_freezes_what_was_loaded_out_of_the_collectors_sight(collector):
    loaded = [[index] for index in range(1000)]  # containers the collector tracks
    assert gc.get_freeze_count() == 0
    settle_collector()
    assert gc.get_freeze_count() >= len(loaded)
    in_sight = {id(one) for one in gc.get_objects()}  # what collections scan: the frozen are not there
    assert all(gc.is_tracked(one) and id(one) not in in_sight for one in loaded)


@pytest.mark.parametrize("argv", [["serve", "--port", "0"], ["serve", "--port", "0", "--worker", "0"]])
def test_serve_settles_the_collector_after_loading_and_before_it_serves(collector, monkeypatch, argv):
    seen = []

    def run(function, server, *args):  # what trio.run would serve, and the collector at that moment
        in_sight = {id(one) for one in gc.get_objects()}
        seen.append((type(server).__name__, id(server) in in_sight, id(server.catalogue) in in_sight))
        return 0

    monkeypatch.setattr(serve_command.trio, "run", run)
    monkeypatch.setattr("chaos_upstream.cli.from_supervisor", lambda: {})  # a worker's settings: none sent
    assert main(argv, environ={}) == 0
    assert len(seen) == 1
    assert seen == [("Upstream" if "--worker" in argv else "Fleet", False, False)]  # built, then frozen
