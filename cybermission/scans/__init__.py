"""Scan runs: scopes and targets, the TCP sweep, discovery engines, probing to findings, schedules,
and passive import from captures."""
