"""The findings tables: findings (one per rule, device, service), their audited transitions, the
imported CISA advisories with their affected products, and the known-exploited CVEs."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from cybermission.db import UTCDateTime, enum_type, new_id, utcnow

# Re-exported: the services, the rules and the API import the words with the tables.
from cybermission.findings.grades import Confidence as Confidence
from cybermission.findings.grades import FindingStatus as FindingStatus
from cybermission.findings.grades import Severity as Severity
from cybermission.packs import PackBase, PackDecisionBase


class Finding(SQLModel, table=True):
    __tablename__ = "finding"
    # Keyset pages of the API: every sort ends with the id, and the common filters lead
    # (bench/api_findings.py measured 1M rows on PostgreSQL: first page 177 ms -> 4.5 ms).
    __table_args__ = (
        Index("ix_finding_first_seen_at_id", "first_seen_at", "id"),
        Index("ix_finding_last_seen_at_id", "last_seen_at", "id"),
        Index("ix_finding_score_id", "score", "id"),
        Index("ix_finding_severity_first_seen_at_id", "severity", "first_seen_at", "id"),
        Index("ix_finding_status_first_seen_at_id", "status", "first_seen_at", "id"),
        Index("ix_finding_status_score_id", "status", "score", "id"),
    )

    id: str = Field(default_factory=new_id, primary_key=True)
    # rule_id|device_id|service key: the identity that keeps one finding across rescans.
    dedup_key: str = Field(max_length=400, unique=True, index=True)
    rule_id: str = Field(max_length=200, index=True)
    device_id: str = Field(foreign_key="device.id", index=True)
    service_id: str | None = Field(default=None, foreign_key="service.id", index=True)
    port: int | None = None
    protocol: str | None = Field(default=None, max_length=50)
    title: str = Field(max_length=300)
    severity: Severity = Field(index=True, sa_type=enum_type(Severity))
    # How sure the match is (advisory findings); None for rules, which observe the condition.
    confidence: Confidence | None = Field(default=None, index=True, sa_type=enum_type(Confidence))
    score: float = 0.0
    score_breakdown: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    status: FindingStatus = Field(
        default=FindingStatus.OPEN, index=True, sa_type=enum_type(FindingStatus)
    )
    evidence: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    first_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_scan_run_id: str | None = Field(default=None, foreign_key="scan_run.id")
    # Set while risk-accepted: at that moment the acceptance lapses and the finding reopens.
    accepted_until: datetime | None = Field(default=None, sa_type=UTCDateTime)


class FindingTransition(SQLModel, table=True):
    """One status change of a finding: who, when, from, to, why (the audit trail)."""

    __tablename__ = "finding_transition"

    id: str = Field(default_factory=new_id, primary_key=True)
    finding_id: str = Field(foreign_key="finding.id", index=True)
    from_status: FindingStatus | None = Field(default=None, sa_type=enum_type(FindingStatus))
    to_status: FindingStatus = Field(sa_type=enum_type(FindingStatus))
    # A person's name or token subject, or "system" for rescans and expiries.
    actor: str = Field(max_length=200)
    reason: str = Field(max_length=2000)
    until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    scan_run_id: str | None = Field(default=None, max_length=36)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)


class Advisory(SQLModel, table=True):
    """One CISA ICS advisory (CSAF 2.0 document), as last imported."""

    __tablename__ = "advisory"

    id: str = Field(primary_key=True, max_length=64)  # document.tracking.id, e.g. ICSA-24-004-01
    title: str = Field(max_length=500)
    cves: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    cvss_score: float | None = None
    cvss_vector: str | None = Field(default=None, max_length=200)
    published_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revision: str = Field(default="", max_length=32)
    kev: bool = Field(default=False, index=True)
    # Sentences of the title, notes and remediations that name models: weaker evidence for
    # devices the product tree misses (findings/advisories/mentions.py).
    mentions: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    source: str = Field(default="", max_length=500)
    imported_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AdvisoryProduct(SQLModel, table=True):
    """One affected product of an advisory: a leaf of its CSAF product tree."""

    __tablename__ = "advisory_product"

    id: str = Field(default_factory=new_id, primary_key=True)
    advisory_id: str = Field(foreign_key="advisory.id", index=True, max_length=64)
    product_id: str = Field(max_length=200)  # the CSAF product_id inside the document
    vendor: str = Field(max_length=300)
    # The vendor name after alias folding ("Allen-Bradley" -> "rockwell automation").
    vendor_key: str = Field(max_length=300, index=True)
    product: str = Field(max_length=500)
    version: str | None = Field(default=None, max_length=500)  # version or range, as written
    branch_path: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    cves: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    cvss_score: float | None = None
    cvss_vector: str | None = Field(default=None, max_length=200)


class KnownExploited(SQLModel, table=True):
    """A CVE listed in CISA's Known Exploited Vulnerabilities catalogue (as imported)."""

    __tablename__ = "known_exploited"

    cve_id: str = Field(primary_key=True, max_length=32)
    vendor: str = Field(default="", max_length=300)
    product: str = Field(default="", max_length=300)
    date_added: str = Field(default="", max_length=32)
    imported_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class FamilyPack(PackBase, table=True):
    """One version of advisory family data the coordinator published (families.yaml's format),
    never edited afterwards (a change is a new version): the families laid over the shipped
    file for the organisations that adopted it (advisories/family_packs.py)."""

    __tablename__ = "family_pack"
    __table_args__ = (UniqueConstraint("name", "version"),)

    document: str = Field(sa_type=Text)


class FamilyPackDecision(PackDecisionBase, table=True):
    """An organisation's admin adopting (optionally pinned to a version) or declining family
    data: advisory matching of its devices uses it, or does not."""

    __tablename__ = "family_pack_decision"
