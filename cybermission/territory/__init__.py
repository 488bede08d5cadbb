"""The territory: every organisation seen together, in aggregate, by the coordinator (README)."""
