"""The harness, between the server and its users (check, matrix, the testing helpers and the pytest
plugin): it serves upstreams and fleets and plays timelines on them while the verifier's probes go
out. The verifier judges and never starts or drives a server; the server knows of neither."""

from chaos_upstream.harness.check import serve_and_check
from chaos_upstream.harness.serving import Members, Served, serving

__all__ = ["Members", "Served", "serve_and_check", "serving"]
