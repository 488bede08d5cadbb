"""The loopback lab: simulated OT devices on 127.x addresses for demos, tests and benchmarks."""
