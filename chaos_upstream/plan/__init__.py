"""Planning: scenario + request -> a plan of wire actions. Pure: no sockets, no clock, seeded randomness."""
