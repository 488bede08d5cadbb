"""``cybermission probes``: the packet manifest of every installed probe.

The table has one row per probe (fits 80 columns); ``--requests`` lists every request a probe may
send. ``--format json`` is one document keyed by probe name (every request with its count and
description); ``jsonl`` is the same, one probe a line with its ``probe`` name.
"""

import sys
from typing import Annotated, Any

import typer

from cybermission.cli.output import FormatOption, check_format, write_document, write_rows


def probes(
    output: FormatOption = "table",
    requests: Annotated[
        bool, typer.Option("--requests", help="In the table, every request each probe may send.")
    ] = False,
) -> None:
    """The packet manifest: every probe, how intrusive it is, and exactly what it may send."""
    from cybermission.probes import load_probes

    check_format(output)
    found = sorted(load_probes().items())
    manifests: dict[str, dict[str, Any]] = {
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
    if output == "json":
        write_document(manifests, output)
        return
    if output == "jsonl":
        for name, manifest in manifests.items():
            write_document({"probe": name, **manifest}, output)
        return
    if requests:
        rows = [
            {
                "probe": name,
                "request": entry.request,
                "max": entry.max_per_device,
                "what": entry.description,
            }
            for name, probe in found
            for entry in probe.manifest.entries
        ]
        write_rows(rows, "table", no_wrap=("probe", "request"))
        return
    write_rows(
        (
            {
                "probe": name,
                "ports": f"{','.join(map(str, probe.default_ports))}/{probe.transport}",
                "access": str(probe.intrusiveness),
                "opt-in": "yes" if probe.optional else "",
                "requests": len(probe.manifest.entries),
                # the worst case this probe sends one device
                "max": sum(e.max_per_device for e in probe.manifest.entries),
            }
            for name, probe in found
        ),
        "table",
    )
    sys.stderr.write("every request and its description: --requests or --format json\n")
