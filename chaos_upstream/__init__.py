"""chaos-upstream: an HTTP/1.1 upstream that misbehaves on purpose.

Data flows one way: scenario (model) -> plan of wire actions (planner) -> bytes on the wire (server)
-> journal.  The model, planner and byte builder are sans-IO: they never import trio or socket.
"""

from importlib import metadata

try:
    __version__ = metadata.version("chaos-upstream")
    """The installed distribution's version: pyproject.toml is its one source."""
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
