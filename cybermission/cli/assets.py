"""``cybermission assets criticality ID LEVEL``: how much a device matters, set by a person.

The level weighs the score of the device's findings from the next scan on (rules/README.md,
Score); rescans never overwrite it. ``none`` clears it. Exit status: 0 set; 1 not a level;
2 no such device, or the store cannot be reached.
"""

import json
import sys
from typing import Annotated

import typer

from cybermission.cli.runtime import command_group, fail, open_store, start
from cybermission.errors import CybermissionError, ValidationError

app = command_group("Assets of the inventory.")


@app.command("criticality")
def criticality_command(
    device_id: Annotated[str, typer.Argument(metavar="ID", help="The device's id.")],
    level: Annotated[str, typer.Argument(help="low, medium, high, critical, or none to clear.")],
) -> None:
    """Set how much a device matters (kept across rescans)."""
    from cybermission.db import session_scope
    from cybermission.inventory.criticality import set_criticality

    engine = open_store(start())
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
        raise fail(exc, code=1) from exc
    except CybermissionError as exc:
        raise fail(exc) from exc
    sys.stdout.write(json.dumps(result) + "\n")
