"""``cybermission probes``: the packet manifest of every installed probe."""

import json
import sys
from typing import Annotated

import typer

from cybermission.cli.runtime import out


def probes(
    output: Annotated[str, typer.Option("--format", help="json or table")] = "table",
) -> None:
    """The packet manifest: every probe, how intrusive it is, and exactly what it may send."""
    from cybermission.probes import load_probes

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
    from rich.table import Table

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
    out().print(table)
