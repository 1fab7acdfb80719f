"""chaos-upstream in a test suite: upstreams on free ports, probes judged, failures explained.

The pytest plugin (`chaos_upstream.pytest_plugin`) builds its fixtures on these; they work without
pytest too.  Nothing here imports pytest.
"""

from chaos_upstream.proxies.ports import free_port
from chaos_upstream.testing.failures import assert_verdict
from chaos_upstream.testing.in_loop import AsyncChaosUpstream, open_chaos_upstream
from chaos_upstream.testing.in_thread import ChaosUpstream, UpstreamCrashed, UpstreamStopped

__all__ = ["AsyncChaosUpstream", "ChaosUpstream", "UpstreamCrashed", "UpstreamStopped", "assert_verdict", "free_port",
           "open_chaos_upstream"]
