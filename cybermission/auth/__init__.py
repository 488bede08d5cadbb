"""Who may call the service: API tokens (stored hashed), roles and organisation scoping."""
