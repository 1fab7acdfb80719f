"""Real proxies speaking HTTP/2 to the upstream (`matrix --h2`, the HTTP/2 wire tests): the
launchers that can, switched to it, and the names of those that cannot.

Invariant: every launcher returned has `h2` set and keeps everything else it was given (variant,
`tls`): over TLS it speaks h2 by ALPN, over plain TCP h2c with prior knowledge.  A product that
cannot speak HTTP/2 to an upstream (`upstream_h2` False) is left out, and said to be.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from chaos_upstream.proxies.launcher import Launcher


def h2_launchers(launchers: Sequence[Launcher]) -> tuple[list[Launcher], list[str]]:
    """(the launchers of the HTTP/2 section, the keys of those that cannot speak HTTP/2 to an upstream)."""
    chosen = [dataclasses.replace(launcher, h2=True) for launcher in launchers if launcher.upstream_h2]
    return chosen, [launcher.key for launcher in launchers if not launcher.upstream_h2]
