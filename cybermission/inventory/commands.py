"""``cybermission assets criticality ID LEVEL``: how much a device matters, set by a person.

The level weighs the score of the device's findings from the next scan on (rules/README.md,
Score); rescans never overwrite it. ``none`` clears it. Exit status: 0 set; 1 not a level;
2 no such device, or the store cannot be reached.
"""

import json
import sys
from typing import Annotated

import typer
from rich.console import Console

from cybermission.config import load_settings
from cybermission.db import create_db_engine, session_scope
from cybermission.errors import CybermissionError, ValidationError
from cybermission.inventory.criticality import set_criticality
from cybermission.logs import configure_logging
from cybermission.migrations import upgrade_database

assets_app = typer.Typer(help="Assets of the inventory.", no_args_is_help=True)

_err = Console(stderr=True, soft_wrap=True, highlight=False)


@assets_app.command("criticality")
def criticality_command(
    device_id: Annotated[str, typer.Argument(metavar="ID", help="The device's id.")],
    level: Annotated[str, typer.Argument(help="low, medium, high, critical, or none to clear.")],
) -> None:
    """Set how much a device matters (kept across rescans)."""
    settings = load_settings()
    configure_logging(settings.log_level)
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    try:
        with session_scope(engine) as session:
            device = set_criticality(
                session,
                device_id=device_id,
                criticality=None if level.strip().casefold() == "none" else level.strip(),
            )
            result = {
                "id": device.id,
                "criticality": device.criticality.value if device.criticality else None,
            }
    except ValidationError as exc:
        _err.print(f"error: {exc}")
        raise typer.Exit(code=1) from exc
    except CybermissionError as exc:
        _err.print(f"error: {exc}")
        raise typer.Exit(code=2) from exc
    sys.stdout.write(json.dumps(result) + "\n")
