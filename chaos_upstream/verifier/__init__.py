"""The verifier: probes through a proxy, what the client saw, and the verdict."""
