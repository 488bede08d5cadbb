"""What sites and the centre send each other: a host's report in its JSON wire form.

Both sides import this module: the sensor to publish results parts, the central ingestion to read
them back. It holds no store code (the probing side's import contract, pyproject).
"""

from datetime import datetime
from typing import Any

from cybermission.probes import Observation, SentRequests, Transport
from cybermission.scans.probing import HostReport


def report_from_json(data: dict[str, Any]) -> HostReport:
    """A HostReport back from its JSON form (:func:`report_to_json`); KeyError/ValueError if bad."""
    report = HostReport(
        address=str(data["address"]), open_ports=tuple(int(p) for p in data["open_ports"])
    )
    for o in data["observations"]:
        report.observations.append(
            Observation(
                probe=str(o["probe"]),
                protocol=str(o["protocol"]),
                address=str(o["address"]),
                port=int(o["port"]),
                transport=Transport(o["transport"]),
                facts=dict(o["facts"]),
                observed_at=datetime.fromisoformat(o["observed_at"]),
            )
        )
    report.errors.extend(dict(e) for e in data.get("errors", []))
    report.sent = SentRequests.from_json(data.get("sent", {}))
    return report


def report_to_json(report: HostReport) -> dict[str, Any]:
    return {
        "address": report.address,
        "open_ports": list(report.open_ports),
        "observations": [
            {
                "probe": o.probe,
                "protocol": o.protocol,
                "address": o.address,
                "port": o.port,
                "transport": str(o.transport),
                "facts": o.facts,
                "observed_at": o.observed_at.isoformat(),
            }
            for o in report.observations
        ],
        "errors": report.errors,
        "sent": report.sent.to_json(),
    }
