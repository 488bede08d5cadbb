"""The roles a token carries and what each role may do (no table: cheap to import)."""

from enum import StrEnum


class Role(StrEnum):
    """What a token is for (api/README.md has the table of permissions)."""

    ADMIN = "admin"  # scopes, organisations, tokens, alert channels, and everything below
    OPERATOR = "operator"  # triggers and cancels scans, edits schedules
    ANALYST = "analyst"  # triages findings, sets asset criticality
    VIEWER = "viewer"  # reads
    INTEGRATION = "integration"  # reads and follows the event stream (SIEM, dashboards)
    # The metropolitan team: the territory in aggregate and campaigns, never an organisation's
    # rows (no READ); what organisations chose to share (cybermission/territory/README.md).
    COORDINATOR = "coordinator"


class Permission(StrEnum):
    READ = "read"
    STREAM = "stream"
    TRIAGE = "triage"  # finding states, asset criticality
    SCAN = "scan"  # trigger and cancel scans
    SCHEDULE = "schedule"
    MANAGE_SCOPES = "manage-scopes"
    MANAGE_TOKENS = "manage-tokens"
    MANAGE_ORGANIZATIONS = "manage-organizations"  # organisations, sites, zones
    MANAGE_CHANNELS = "manage-channels"  # alert channels and policies
    TERRITORY = "territory"  # the territory's aggregates, campaigns, shared devices (global only)
    COORDINATE = "coordinate"  # open and close campaigns (global only)


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.OPERATOR: frozenset(
        {Permission.READ, Permission.STREAM, Permission.SCAN, Permission.SCHEDULE}
    ),
    Role.ANALYST: frozenset({Permission.READ, Permission.STREAM, Permission.TRIAGE}),
    Role.VIEWER: frozenset({Permission.READ}),
    Role.INTEGRATION: frozenset({Permission.READ, Permission.STREAM}),
    Role.COORDINATOR: frozenset({Permission.TERRITORY, Permission.COORDINATE}),
}

# Permissions that only a token of no organisation may use: they span every organisation.
GLOBAL_PERMISSIONS: frozenset[Permission] = frozenset({Permission.TERRITORY, Permission.COORDINATE})
