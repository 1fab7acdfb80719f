"""chaos-upstream: an HTTP/1.1 upstream that misbehaves on purpose.

Data flows one way: scenario (model) -> plan of wire actions (planner) -> bytes on the wire (server)
-> journal.  The model, planner and byte builder are sans-IO: they never import trio or socket.
"""

__version__ = "0.1.0"
