"""The ``cybermission`` console script: the root Typer app and its command groups.

One module per group (``cybermission/cli/<group>.py``); each imports the domain it drives inside
its commands, so ``cybermission --help`` loads Typer and these modules only.
"""

from cybermission.cli import (
    advisories,
    allocations,
    assets,
    capture,
    config,
    db,
    exports,
    findings,
    health,
    lab,
    layer2,
    listen,
    probes,
    rules,
    scan,
    scans,
    scopes,
    sensors,
    service,
    sites,
    territory,
    tokens,
    zones,
)
from cybermission.cli.runtime import command_group

app = command_group("Safe inventory and exposure of OT devices.")
# Registration order is the order of `cybermission --help`: commands, then groups.
app.command("sensor")(sensors.sensor)
app.command("central")(sensors.central)
app.command()(scan.scan)
app.command()(listen.listen)
app.command("discover-l2")(layer2.discover_l2)
app.command()(probes.probes)
app.command()(exports.export)
app.command()(service.serve)
app.command()(service.demo)
app.command()(health.health)
app.add_typer(scans.app, name="scans")
app.add_typer(scopes.app, name="scopes")
app.add_typer(allocations.app, name="allocations")
app.add_typer(lab.app, name="lab")
app.add_typer(db.app, name="db")
app.add_typer(config.app, name="config")
app.add_typer(tokens.app, name="tokens")
app.add_typer(rules.app, name="rules")
app.add_typer(advisories.app, name="advisories")
app.add_typer(findings.app, name="findings")
app.add_typer(assets.app, name="assets")
app.add_typer(zones.app, name="zones")
app.add_typer(sites.app, name="sites")
app.add_typer(sensors.app, name="sensors")
app.add_typer(capture.app, name="import")
app.add_typer(territory.app, name="territory")


def main() -> None:
    app()
