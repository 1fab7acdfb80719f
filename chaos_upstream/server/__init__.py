"""The server: the only package that touches sockets. It executes plans and journals what it did."""
