"""The scan report on stdout: JSON for scripts, tables for people (``scan``, ``import pcap``)."""

import json
import sys
from typing import Any

from cybermission.cli.output import check_format
from cybermission.cli.runtime import err, out

__all__ = ["check_format", "show_report"]


def show_report(report: dict[str, Any], output: str) -> None:
    """Write ``report`` (from the scan's report builder) as tables, or as one JSON document:
    indented for ``json``, on one line for ``jsonl`` (as ``assets show`` writes one record)."""
    if output in ("json", "jsonl"):
        indent = None if output == "jsonl" else 2
        sys.stdout.write(json.dumps(report, indent=indent, default=str) + "\n")
        return
    from rich.table import Table

    scan = report["scan"]
    out().print(
        f"scan {scan['id']} {scan['status']}: {scan['hosts_probed']} live of "
        f"{scan['hosts_total']} hosts, {scan['open_ports']} open ports"
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
    out().print(assets)
    findings = Table("severity", "score", "rule", "port", "title", title="findings")
    for f in report["findings"]:
        findings.add_row(
            f["severity"], f"{f['score']:.1f}", f["rule_id"], str(f["port"]), f["title"]
        )
    out().print(findings)
    for e in scan["errors"][:20]:
        err().print(f"[yellow]{e.get('stage')}[/] {e.get('target')}: {e.get('error')}")
