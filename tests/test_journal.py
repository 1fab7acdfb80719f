"""The journal in memory: a probe's records found through its index, and forgotten with the oldest."""

from chaos_upstream.server.journal import Journal


def test_a_probes_records_are_the_ones_still_in_memory_in_order():
    journal = Journal(keep=3)
    for n, probe in enumerate(["a", "b", "a", None, "a"]):
        journal.write({"type": "request", "probe": probe, "n": n})
    assert [r["n"] for r in journal.records(probe="a")] == [2, 4]
    assert journal.records(probe="b") == []
    assert [r["n"] for r in journal.records()] == [2, 3, 4] and journal.total == 5


def test_running_records_of_a_probe_come_after_the_written_ones():
    journal = Journal()
    journal.write({"type": "request", "probe": "a", "n": 0})
    running = {"type": "request", "probe": "a", "n": 1}
    journal.begin(running)
    assert [(r["n"], r.get("running")) for r in journal.records(probe="a", running=True)] == [(0, None), (1, True)]
    journal.write(running)
    assert [r["n"] for r in journal.records(probe="a", running=True)] == [0, 1]
