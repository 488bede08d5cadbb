"""One route module per resource under /api/v1, plus the health probes."""
