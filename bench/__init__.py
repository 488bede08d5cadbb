"""Benchmarks (not timed tests): ratios against nmap and other peers, same targets, one run."""
