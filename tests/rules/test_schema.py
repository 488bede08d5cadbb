"""The committed JSON Schema of rule files is the one generated from the pydantic model."""

from pathlib import Path

from cybermission.rules.schema import RuleSpec, render_rule_json_schema, rule_json_schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "rules" / "schema.json"


def test_schema_committed_file_equals_generated() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render_rule_json_schema(), (
        "rules/schema.json is stale: run `python -m cybermission.rules.schema`"
    )


def test_schema_uses_file_spelling_of_keys() -> None:
    schema = rule_json_schema()
    assert set(schema["required"]) == {"id", "info", "match", "examples"}
    assert "applies-to" in schema["properties"]
    assert "no-match" in schema["$defs"]["RuleExamples"]["properties"]
    assert schema["$defs"]["RuleInfo"]["properties"]["severity"]["$ref"].endswith("/Severity")
    assert schema["$defs"]["Severity"]["enum"] == ["info", "low", "medium", "high", "critical"]


def test_schema_model_reads_the_file_spelling() -> None:
    spec = RuleSpec.model_validate(
        {
            "id": "x-y",
            "info": {
                "name": "n",
                "severity": "low",
                "cwe": "CWE-306",
                "description": "d",
                "remediation": "r",
            },
            "applies-to": {"protocols": ["modbus"]},
            "match": {"facts.a": 1},
            "examples": {"match": [{"facts": {"a": 1}}], "no-match": [{}]},
        }
    )
    assert spec.applies_to.protocols == ["modbus"]
    assert spec.examples.no_match == [{}]
