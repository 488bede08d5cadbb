"""The console script: each command group as a user runs it."""
