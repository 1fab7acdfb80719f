"""TLS for the upstream (issue 12): certificate material, server contexts, the SNI rule, the
ClientHello read before any TLS library answers, the handshake faults, and the Transport of a
connection served over trio's SSLStream.

Layers: `handshake` (the bytes of the record layer) and `sni` (the naming rule) are pure;
`material` makes certificates, `contexts` makes ssl.SSLContext objects; `records` (the stream under
the SSLStream), `faults`, `transport` and `facts` touch the connection.
"""
