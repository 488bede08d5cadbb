"""The ``cybermission`` console script: scopes, scans, the service, the lab, the store."""

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine

from cybermission.auth.commands import tokens_app
from cybermission.config import Settings, load_settings
from cybermission.db import create_db_engine, session_scope
from cybermission.errors import CybermissionError
from cybermission.extras import require_extra
from cybermission.findings.commands import advisories_app
from cybermission.findings.triage import findings_app
from cybermission.inventory.commands import assets_app
from cybermission.logs import configure_logging
from cybermission.migrations import upgrade_database
from cybermission.probes import load_probes
from cybermission.rules.commands import rules_app
from cybermission.scans.models import ScopeBase
from cybermission.scans.passive import load_capture_reader, passive_decoders
from cybermission.scans.pipeline import (
    ScanProgress,
    build_scan_report,
    execute_scan,
    import_observations,
)
from cybermission.scans.scopes import build_guard, create_scope, delete_scope, list_scopes
from cybermission.scans.service import create_scan_run
from cybermission.sensors.commands import central, sensor, sensors_app, sites_app
from cybermission.sites.commands import zones_app

app = typer.Typer(help="Safe inventory and exposure of OT devices.", no_args_is_help=True)
scopes_app = typer.Typer(help="Authorised networks.", no_args_is_help=True)
lab_app = typer.Typer(help="Simulated OT devices on loopback.", no_args_is_help=True)
db_app = typer.Typer(help="The store.", no_args_is_help=True)
app.add_typer(scopes_app, name="scopes")
app.add_typer(lab_app, name="lab")
app.add_typer(db_app, name="db")
app.add_typer(tokens_app, name="tokens")
app.add_typer(rules_app, name="rules")
app.add_typer(advisories_app, name="advisories")
app.add_typer(findings_app, name="findings")
app.add_typer(assets_app, name="assets")
app.add_typer(zones_app, name="zones")
app.add_typer(sites_app, name="sites")
app.add_typer(sensors_app, name="sensors")
app.command("sensor")(sensor)
app.command("central")(central)
import_app = typer.Typer(help="Passive discovery from recorded traffic.", no_args_is_help=True)
app.add_typer(import_app, name="import")

err = Console(stderr=True)
out = Console(soft_wrap=True)

VAR = Path("var")
LAB_STATE = VAR / "lab.json"
LAB_PID = VAR / "lab.pid"
LAB_LOG = VAR / "lab.log"


def _settings() -> Settings:
    settings = load_settings()
    configure_logging(settings.log_level)
    return settings


def _engine(settings: Settings) -> Engine:
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    return engine


def _fail(exc: CybermissionError) -> typer.Exit:
    # escape: a message may hold brackets ("ports: [70000]", "cybermission[lab]") Rich would eat.
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
    return typer.Exit(code=2)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration to the configured database."""
    settings = _settings()
    _engine(settings)
    err.print(f"database at head: {settings.database_url.split('@')[-1]}")


@scopes_app.command("add")
def scopes_add(
    name: str,
    cidrs: Annotated[list[str], typer.Argument(help="Networks to authorise, in CIDR form.")],
    exclude: Annotated[list[str] | None, typer.Option(help="Networks to keep out.")] = None,
    valid_until: Annotated[datetime | None, typer.Option(help="Authorisation end.")] = None,
    reference: Annotated[str, typer.Option(help="Ticket or contract reference.")] = "",
) -> None:
    """Authorise networks for scanning."""
    settings = _settings()
    try:
        with session_scope(_engine(settings)) as session:
            scope = create_scope(
                session,
                data=ScopeBase(
                    name=name,
                    cidrs=cidrs,
                    excludes=exclude or [],
                    valid_until=valid_until.replace(tzinfo=valid_until.tzinfo or UTC)
                    if valid_until
                    else None,
                    reference=reference,
                ),
            )
            err.print(f"scope {scope.name} authorises {', '.join(scope.cidrs)}")
    except CybermissionError as exc:
        raise _fail(exc) from exc


@scopes_app.command("list")
def scopes_list() -> None:
    """Show authorised scopes (the default loopback scope applies when none is stored)."""
    settings = _settings()
    with session_scope(_engine(settings)) as session:
        scopes = list_scopes(session)
        table = Table("name", "cidrs", "excludes", "valid until", "reference")
        for s in scopes:
            table.add_row(
                s.name,
                ", ".join(s.cidrs),
                ", ".join(s.excludes),
                s.valid_until.isoformat() if s.valid_until else "-",
                s.reference,
            )
        if not scopes:
            table.add_row(
                "(default)",
                ", ".join(settings.default_scope_cidrs),
                "",
                "-",
                "settings.default_scope_cidrs",
            )
        out.print(table)


@scopes_app.command("remove")
def scopes_remove(name: str) -> None:
    """Withdraw an authorisation."""
    settings = _settings()
    try:
        with session_scope(_engine(settings)) as session:
            delete_scope(session, name=name)
    except CybermissionError as exc:
        raise _fail(exc) from exc


def _parse_ports(text: str | None) -> list[int] | None:
    if not text:
        return None
    ports: list[int] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise typer.BadParameter(
                f"{part!r} is not a port or a port range", param_hint="--ports"
            )
        ports.extend(range(int(low), int(high or low) + 1))
    return ports


@app.command()
def scan(
    targets: Annotated[list[str], typer.Argument(help="Addresses, CIDRs, ranges, names.")],
    ports: Annotated[str | None, typer.Option(help="e.g. 502,102,20000-20010")] = None,
    udp_ports: Annotated[
        str | None, typer.Option(help="UDP ports to probe on every target; 'none' for none.")
    ] = None,
    output: Annotated[str, typer.Option("--format", help="json or table")] = "table",
    engine_name: Annotated[
        str | None, typer.Option("--engine", help="sweep (built in) or nmap (optional extra)")
    ] = None,
) -> None:
    """Scan now: progress on stderr, the result on stdout."""
    if output not in ("json", "table"):
        raise typer.BadParameter("use json or table", param_hint="--format")
    settings = _settings()
    if engine_name:
        settings = settings.model_copy(update={"discovery_engine": engine_name})
    engine = _engine(settings)
    try:
        with session_scope(engine) as session:
            run = create_scan_run(
                session,
                guard=build_guard(session, settings),
                targets=targets,
                ports=_parse_ports(ports),
                udp_ports=[] if udp_ports == "none" else _parse_ports(udp_ports),
                settings=settings,
                requested_by="cli",
            )
            run_id, total = run.id, run.hosts_total
    except CybermissionError as exc:
        raise _fail(exc) from exc
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[live]} live, {task.fields[obs]} observations"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("scanning", total=total, live=0, obs=0)

        def show(p: ScanProgress) -> None:
            bar.update(task, completed=p.hosts_swept, live=p.hosts_live, obs=p.observations)

        asyncio.run(
            execute_scan(engine=engine, settings=settings, scan_run_id=run_id, progress=show)
        )
    with session_scope(engine) as session:
        report = build_scan_report(session, run_id)
    if output == "json":
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        _print_report(report)
    if report["scan"]["status"] == "failed":
        raise typer.Exit(code=1)


def _print_report(report: dict[str, Any]) -> None:
    scan_ = report["scan"]
    out.print(
        f"scan {scan_['id']} {scan_['status']}: {scan_['hosts_probed']} live of "
        f"{scan_['hosts_total']} hosts, {scan_['open_ports']} open ports"
    )
    assets = Table(
        "address", "vendor", "product", "model", "firmware", "serial", "services", title="assets"
    )
    for a in report["assets"]:
        assets.add_row(
            ", ".join(a["addresses"]),
            a["vendor"] or "",
            a["product"] or "",
            a["model"] or "",
            a["firmware"] or "",
            a["serial"] or "",
            ", ".join(f"{s['port']}/{s['protocol']}" for s in a["services"]),
        )
    out.print(assets)
    findings = Table("severity", "score", "rule", "port", "title", title="findings")
    for f in report["findings"]:
        findings.add_row(
            f["severity"], f"{f['score']:.1f}", f["rule_id"], str(f["port"]), f["title"]
        )
    out.print(findings)
    for e in scan_["errors"][:20]:
        err.print(
            f"[yellow]{e.get('stage')}[/] {e.get('target')}: {e.get('error')}", highlight=False
        )


@import_app.command("pcap")
def import_pcap(
    path: Annotated[Path, typer.Argument(help="A pcap or pcapng capture.")],
    output: Annotated[str, typer.Option("--format", help="json or table")] = "table",
) -> None:
    """Build observations and assets from a capture, without sending a packet."""
    settings = _settings()
    engine = _engine(settings)
    try:
        reader = load_capture_reader("pcap")
        run = import_observations(
            engine=engine,
            settings=settings,
            source=f"pcap:{path.name}",
            observations=reader.observations(path, passive_decoders()),
        )
    except CybermissionError as exc:
        raise _fail(exc) from exc
    with session_scope(engine) as session:
        report = build_scan_report(session, run.id)
    if output == "json":
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        _print_report(report)


@app.command()
def probes(
    output: Annotated[str, typer.Option("--format", help="json or table")] = "table",
) -> None:
    """The packet manifest: every probe, how intrusive it is, and exactly what it may send."""
    found = sorted(load_probes().items())
    if output == "json":
        manifests = {
            name: {
                "protocol": probe.protocol,
                "transport": str(probe.transport),
                "ports": list(probe.default_ports),
                "intrusiveness": str(probe.intrusiveness),
                "optional": probe.optional,
                **probe.manifest.as_dict(),
            }
            for name, probe in found
        }
        sys.stdout.write(json.dumps(manifests, indent=2) + "\n")
        return
    table = Table("probe", "ports", "intrusiveness", "opt-in", "request", "max/device", "what")
    for name, probe in found:
        head = [
            name,
            f"{','.join(map(str, probe.default_ports))}/{probe.transport}",
            str(probe.intrusiveness),
            "yes" if probe.optional else "no",
        ]
        for i, entry in enumerate(probe.manifest.entries):
            cells = head if i == 0 else ["", "", "", ""]
            table.add_row(*cells, entry.request, str(entry.max_per_device), entry.description)
    out.print(table)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Run the API (and the in-process scheduler)."""
    import uvicorn

    from api.app import create_app

    settings = _settings()
    _engine(settings).dispose()
    uvicorn.run(
        create_app(settings, background=True),
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level.lower(),
    )


# --- lab ---------------------------------------------------------------------------------------


def _lab_pid() -> int | None:
    try:
        pid = int(LAB_PID.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def lab_start(*, base: str = "127.0.10.0", wait_s: float = 30.0) -> list[dict[str, Any]]:
    """Start the lab in its own process (``python -m scanners.lab``) and wait until it listens."""
    require_extra("lab", feature="cybermission lab")
    VAR.mkdir(exist_ok=True)
    if _lab_pid() is None:
        LAB_STATE.unlink(missing_ok=True)
        with LAB_LOG.open("ab") as log:
            proc = subprocess.Popen(  # noqa: S603  (our own module, fixed arguments)
                [
                    sys.executable,
                    "-m",
                    "scanners.lab",
                    "--base",
                    base,
                    "--state-file",
                    str(LAB_STATE),
                ],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        LAB_PID.write_text(str(proc.pid))
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if LAB_STATE.exists():
            devices: list[dict[str, Any]] = json.loads(LAB_STATE.read_text())["devices"]
            return devices
        if _lab_pid() is None:
            break
        time.sleep(0.2)
    raise CybermissionError(f"the lab did not start; see {LAB_LOG}")


@lab_app.command("up")
def lab_up(
    base: Annotated[str, typer.Option(help="First address of the lab.")] = "127.0.10.0",
) -> None:
    """Start simulated OT devices on loopback."""
    try:
        devices = lab_start(base=base)
    except CybermissionError as exc:
        raise _fail(exc) from exc
    err.print(f"lab up: {len(devices)} devices (pid {_lab_pid()})")


@lab_app.command("down")
def lab_down() -> None:
    """Stop the lab."""
    pid = _lab_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
    LAB_PID.unlink(missing_ok=True)
    LAB_STATE.unlink(missing_ok=True)
    err.print("lab down")


@lab_app.command("status")
def lab_status() -> None:
    """List the lab's devices."""
    pid = _lab_pid()
    if pid is None or not LAB_STATE.exists():
        err.print("lab is down")
        raise typer.Exit(code=1)
    table = Table("name", "address", "port", "protocol", "identity")
    for d in json.loads(LAB_STATE.read_text())["devices"]:
        table.add_row(
            d["name"],
            d["address"],
            str(d["port"]),
            d["protocol"],
            json.dumps(d.get("identity", {}))[:80],
        )
    out.print(table)


@app.command()
def demo(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """What `make run` does: the lab, the store under ./var, a first scan, and the service."""
    import uvicorn

    from api.app import create_app

    settings = _settings()
    if settings.admin_token is None:
        token_file = VAR / "admin-token"
        VAR.mkdir(exist_ok=True)
        if not token_file.exists():
            token_file.write_text(secrets.token_urlsafe(32))
            token_file.chmod(0o600)
        settings = settings.model_copy(update={"admin_token": _secret(token_file.read_text())})
    engine = _engine(settings)
    started_lab = _lab_pid() is None  # a lab someone started by hand stays up after the demo
    devices = lab_start()
    lab_hosts = sorted({d["address"] for d in devices})
    with session_scope(engine) as session:
        run = create_scan_run(
            session,
            guard=build_guard(session, settings),
            targets=lab_hosts,
            ports=None,
            settings=settings,
            requested_by="demo",
        )
        run_id = run.id
    err.print(f"lab: {len(devices)} devices on {len(lab_hosts)} addresses; first scan {run_id}")
    err.print(
        f"API: http://{host}:{port}/docs  token: {VAR / 'admin-token'} "
        "(Authorization: Bearer <token>)"
    )
    application = create_app(settings, background=True)

    async def main() -> None:
        server = uvicorn.Server(uvicorn.Config(application, host=host, port=port, log_level="info"))
        scan_task = asyncio.create_task(
            execute_scan(engine=engine, settings=settings, scan_run_id=run_id)
        )
        await server.serve()
        scan_task.cancel()

    try:
        asyncio.run(main())
    finally:
        if started_lab:
            lab_down()


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value.strip())


def main() -> None:
    app()
