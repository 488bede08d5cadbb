"""One host's report in JSON: the one typed form (pydantic) for the wire and the run's spool.

A site sensor sends its hosts to the centre as :class:`HostReportMessage` inside a results part
(:mod:`cybermission.sensors.messages`), and an embedded run spools the batches its store cannot
take now as the same model (:mod:`cybermission.scans.spool`): one serialiser, one reader, so the
two forms cannot drift apart. The fields are those the spool wrote before it used this model
(``observed_at`` in ISO 8601, ``transport`` by name), so a spool file left by an older release
is read as it is.

It lives in ``scans`` because the pipeline may not import the sensors package (import-linter);
like the rest of the probing side it holds no store code.
"""

from datetime import UTC
from typing import Annotated, Any, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

from cybermission.probes import Observation, SentRequests, Transport
from cybermission.scans.probing import HostReport

Port = Annotated[int, Field(ge=0, le=65535)]
Count = Annotated[int, Field(ge=0)]


class StrictMessage(BaseModel):
    """A message's model: unknown fields refused (a typo is no silent default), never mutated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RunError(StrictMessage):
    """One error a run met: where, at which stage, and what."""

    target: str | None
    stage: str
    error: str


class ObservationMessage(StrictMessage):
    """One :class:`~cybermission.probes.Observation`."""

    probe: str
    protocol: str
    address: str
    port: Port
    transport: Transport
    facts: dict[str, JsonValue]
    observed_at: AwareDatetime

    @classmethod
    def of(cls, o: Observation) -> Self:
        return cls(
            probe=o.probe,
            protocol=o.protocol,
            address=o.address,
            port=o.port,
            transport=o.transport,
            facts=o.facts,
            observed_at=o.observed_at,
        )

    def observation(self) -> Observation:
        return Observation(
            probe=self.probe,
            protocol=self.protocol,
            address=self.address,
            port=self.port,
            transport=self.transport,
            facts=dict(self.facts),
            observed_at=self.observed_at.astimezone(UTC),
        )


class HostReportMessage(StrictMessage):
    """One host's report (:class:`~cybermission.scans.probing.HostReport`)."""

    address: str
    open_ports: list[Port]
    observations: list[ObservationMessage] = []
    errors: list[RunError] = []
    # What was sent to the host: SentRequests' one JSON form.
    sent: dict[str, dict[str, Count]] = {}

    @classmethod
    def of(cls, report: HostReport) -> Self:
        return cls(
            address=report.address,
            open_ports=list(report.open_ports),
            observations=[ObservationMessage.of(o) for o in report.observations],
            errors=[RunError.model_validate(e) for e in report.errors],
            sent=report.sent.to_json(),
        )

    def report(self) -> HostReport:
        return HostReport(
            address=self.address,
            open_ports=tuple(self.open_ports),
            observations=[o.observation() for o in self.observations],
            errors=[e.model_dump() for e in self.errors],
            sent=SentRequests.from_json(self.sent),
        )


def report_to_json(report: HostReport) -> dict[str, Any]:
    """``report`` as a JSON object (what the spool stores; a results part carries the same)."""
    return HostReportMessage.of(report).model_dump(mode="json")


def report_from_json(data: object) -> HostReport:
    """A report back from :func:`report_to_json`'s form; pydantic's ValidationError if bad."""
    return HostReportMessage.model_validate(data).report()
