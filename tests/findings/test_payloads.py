"""A finding's event payload (webhooks, CEF, MQTT) carries its advisory's CVEs, CVSS and KEV."""

from cybermission.findings.models import Confidence, Finding, Severity
from cybermission.findings.payloads import advisory_fields, finding_cwe, finding_payload


def _finding(**evidence: object) -> Finding:
    return Finding(
        dedup_key="k",
        rule_id="advisory:ICSA-99-001-01",
        device_id="d",
        title="t",
        severity=Severity.HIGH,
        confidence=Confidence.LOW,
        evidence=dict(evidence),
    )


def test_payloads_carry_the_advisory() -> None:
    finding = _finding(
        advisory_id="ICSA-99-001-01",
        cves=["CVE-2024-0001"],
        cvss_score=7.5,
        kev=True,
        address="127.0.0.9",
    )
    payload = finding_payload(finding)
    assert payload["cves"] == ["CVE-2024-0001"]
    assert payload["cvss_score"] == 7.5
    assert payload["kev"] is True
    assert payload["advisory_id"] == "ICSA-99-001-01"
    assert payload["confidence"] == "low"
    assert payload["address"] == "127.0.0.9"


def test_payloads_of_a_rule_finding_have_no_advisory() -> None:
    fields = advisory_fields(_finding(probe="modbus"))
    assert fields["cves"] == []
    assert fields["advisory_id"] is None
    assert fields["kev"] is False


def test_payloads_of_a_rule_finding_carry_its_cwe() -> None:
    assert finding_payload(_finding(probe="modbus", cwe="CWE-306"))["cwe"] == "CWE-306"
    # An advisory finding, or one judged before rules named a CWE, has none; junk is not one.
    assert finding_cwe(_finding(advisory_id="ICSA-99-001-01")) is None
    assert finding_cwe(_finding(cwe="modbus; drop")) is None
