"""Devices named in an advisory's words: sentences kept, names found, versions read."""

from cybermission.findings.advisories.mentions import document_texts, find_mention, passages
from cybermission.findings.advisories.products import notation
from cybermission.findings.advisories.versions import VersionOutcome, parse_version


def test_mentions_keep_sentences_that_name_models() -> None:
    document = {
        "document": {
            "title": "Schweitzer Engineering Laboratories SEL-411L",
            "notes": [
                {"category": "legal_disclaimer", "text": "All information is provided as is."},
                {"category": "summary", "text": "C300 could stop. Nothing else happens."},
            ],
        },
        "vulnerabilities": [
            {"remediations": [{"category": "mitigation", "details": "Update to V32.016."}]}
        ],
    }
    assert passages(document_texts(document)) == [
        "Schweitzer Engineering Laboratories SEL-411L",
        "C300 could stop.",
        "Update to V32.016.",
    ]


def _mention(sentence: str, name: str, firmware: str) -> VersionOutcome | None:
    found = find_mention(notation(sentence), [notation(name)], parse_version(firmware))
    return found.outcome if found else None


def test_mentions_read_the_version_after_the_name() -> None:
    sentence = "ControlLogix 5580 v32 or later: Put controller's mode switch to Run mode."
    assert _mention(sentence, "ControlLogix 5580", "33.011") is VersionOutcome.IN_RANGE
    assert _mention(sentence, "ControlLogix 5580", "31.011") is None
    assert _mention("ControlLogix 5580 v28-v30, others", "ControlLogix 5580", "33.1") is None


def test_mentions_a_fix_leaves_fixed_devices_out() -> None:
    sentence = "NJ501-1300: Update to version 1.49 or higher"
    assert _mention(sentence, "NJ501-1300", "1.49") is None
    assert _mention(sentence, "NJ501-1300", "1.48") is VersionOutcome.IN_RANGE


def test_mentions_a_name_must_be_whole() -> None:
    assert _mention("C3000 could stop", "C300", "1.0") is None
    assert _mention("The C300 could stop", "C300", "1.0") is VersionOutcome.UNKNOWN
