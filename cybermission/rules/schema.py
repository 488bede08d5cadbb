"""The rule file model (nuclei-style ``id``/``info``, Sigma-style ``match``) and its JSON Schema."""

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from cybermission.findings.cwe import CWE_PATTERN
from cybermission.findings.models import Severity

# Rule ids are kebab-case and equal their file stem (CONVENTIONS.md).
RULE_ID_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
# A condition key: a keyword, or a dotted field path with optional |modifiers.
CONDITION_KEY_PATTERN = r"^(any|all|not|[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*(\|[a-z]+)*)$"

RuleId = Annotated[str, StringConstraints(pattern=RULE_ID_PATTERN, max_length=200)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Tag = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9.\-]*$", max_length=50)]
Word = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]*$", max_length=50)]
Cwe = Annotated[str, StringConstraints(pattern=CWE_PATTERN)]

# A subject document (or part of one) used in examples.
ExampleDocument = dict[str, Any]


class RuleInfo(BaseModel):
    """What a finding from this rule tells people."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name = Field(description="Short title, used as the finding title.")
    severity: Severity = Field(description="info, low, medium, high or critical.")
    # Required: a finding's OCSF vulnerability must carry a CVE or a CWE, and a rule has no CVE.
    cwe: Cwe = Field(
        description="The CWE id of the weakness the rule detects (CWE-306), from MITRE's list."
    )
    description: Text = Field(description="What the exposure is and why it matters.")
    remediation: Text = Field(description="What to do about it.")
    references: list[Text] = Field(
        default_factory=list,
        description="Specs, MITRE ATT&CK for ICS technique ids, IEC 62443-3-3 SRs, URLs.",
    )
    tags: list[Tag] = Field(default_factory=list)


class AppliesTo(BaseModel):
    """Which observations a rule looks at; an empty list means any."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocols: list[Word] = Field(default_factory=list, description="Observation protocols.")
    probes: list[Word] = Field(default_factory=list, description="Probe names.")


class RuleExamples(BaseModel):
    """Documents that must and must not match; checked every time the rule is loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    match: list[ExampleDocument] = Field(min_length=1)
    no_match: list[ExampleDocument] = Field(alias="no-match", min_length=1)


class RuleSpec(BaseModel):
    """One rule file, as written."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        title="cybermission rule",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    id: RuleId = Field(description="Kebab-case; equals the file stem.")
    info: RuleInfo
    applies_to: AppliesTo = Field(alias="applies-to", default_factory=AppliesTo)
    match: dict[str, Any] = Field(
        min_length=1,
        description=(
            "Sigma semantics: a mapping is AND, a list of values is OR, `field|modifier: value`, "
            "nested `any` / `all` (lists of mappings) and `not` (mapping)."
        ),
        json_schema_extra={"propertyNames": {"pattern": CONDITION_KEY_PATTERN}},
    )
    examples: RuleExamples


def rule_json_schema() -> dict[str, Any]:
    """The JSON Schema of a rule file, generated from :class:`RuleSpec` (by alias)."""
    return RuleSpec.model_json_schema(by_alias=True, mode="validation")


def render_rule_json_schema() -> str:
    """The schema as committed in ``rules/schema.json`` (stable key order, trailing newline)."""
    return json.dumps(rule_json_schema(), indent=2, sort_keys=True) + "\n"


def write_rule_json_schema(path: Path) -> None:
    """Regenerate ``rules/schema.json``; editors use it to check rule files as they are typed."""
    path.write_text(render_rule_json_schema(), encoding="utf-8")


if __name__ == "__main__":
    write_rule_json_schema(Path("rules/schema.json"))
