"""TLS for the upstream: certificate material, server contexts, the SNI rule, the ClientHello read
before any TLS library answers, the handshake faults, the Transport of a connection served over
trio's SSLStream, and the opening of a TLS connection.

Layers: `handshake` (the bytes of the record layer) and `sni` (the naming rule) are pure;
`material` makes certificates, `contexts` makes ssl.SSLContext objects; `recordstream` (the stream
under the SSLStream), `faults`, `transport`, `facts` and `opening` touch the connection.
"""
