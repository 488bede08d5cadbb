"""`cybermission advisories import|kev`: exit codes and what they print."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cybermission.cli import app
from tests.cli.stores import store_url
from tests.findings.advisories.test_store import csaf


def env(tmp_path: Path) -> dict[str, str]:
    return {"CYBERMISSION_DATABASE_URL": store_url(tmp_path / "cli.db")}


def test_commands_import_then_reimport(tmp_path: Path) -> None:
    source = tmp_path / "a.json"
    source.write_text(json.dumps(csaf()), encoding="utf-8")
    first = CliRunner().invoke(app, ["advisories", "import", str(source)], env=env(tmp_path))
    assert first.exit_code == 0, first.output
    assert '"created": 1' in first.output
    again = CliRunner().invoke(app, ["advisories", "import", str(source)], env=env(tmp_path))
    assert again.exit_code == 0
    assert '"unchanged": 1' in again.output


def test_commands_import_and_kev_keep_the_index_for_the_next_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next command reads the index instead of building it (index_cache.py); a new KEV
    flag makes a new one."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    kept = tmp_path / "cache" / "cybermission"
    source = tmp_path / "a.json"
    source.write_text(json.dumps(csaf()), encoding="utf-8")
    result = CliRunner().invoke(app, ["advisories", "import", str(source)], env=env(tmp_path))
    assert result.exit_code == 0, result.output
    after_import = set(kept.iterdir())
    assert len(after_import) == 1
    kev = tmp_path / "kev.json"
    kev.write_text(json.dumps({"vulnerabilities": [{"cveID": "CVE-2024-0001"}]}), encoding="utf-8")
    result = CliRunner().invoke(app, ["advisories", "kev", str(kev)], env=env(tmp_path))
    assert result.exit_code == 0, result.output
    assert len(set(kept.iterdir()) - after_import) == 1


def test_commands_bad_document_exits_1_and_names_it(tmp_path: Path) -> None:
    folder = tmp_path / "csaf"
    folder.mkdir()
    (folder / "bad.json").write_text("{", encoding="utf-8")
    result = CliRunner().invoke(app, ["advisories", "import", str(folder)], env=env(tmp_path))
    assert result.exit_code == 1
    assert f"{folder / 'bad.json'}: not JSON" in result.output


def test_commands_missing_source_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["advisories", "import", str(tmp_path / "absent")], env=env(tmp_path)
    )
    assert result.exit_code == 2
    assert "no such file or folder" in result.output


def test_commands_kev_flags_advisories(tmp_path: Path) -> None:
    source = tmp_path / "a.json"
    source.write_text(json.dumps(csaf()), encoding="utf-8")
    CliRunner().invoke(app, ["advisories", "import", str(source)], env=env(tmp_path))
    kev = tmp_path / "kev.json"
    kev.write_text(json.dumps({"vulnerabilities": [{"cveID": "CVE-2024-0001"}]}), encoding="utf-8")
    result = CliRunner().invoke(app, ["advisories", "kev", str(kev)], env=env(tmp_path))
    assert result.exit_code == 0, result.output
    assert '"advisories_flagged": 1' in result.output


def test_commands_match_identities_from_stdin(tmp_path: Path) -> None:
    source = tmp_path / "a.json"
    source.write_text(json.dumps(csaf()), encoding="utf-8")
    CliRunner().invoke(app, ["advisories", "import", str(source)], env=env(tmp_path))
    identities = [
        {"vendor": "Schneider Electric", "firmware": "v2.5", "names": ["BMX P34 2020"]},
        {"vendor": "Siemens", "firmware": "V1.0", "names": ["CPU 1511-1 PN"]},
    ]
    result = CliRunner().invoke(
        app, ["advisories", "match"], input=json.dumps(identities), env=env(tmp_path)
    )
    assert result.exit_code == 0, result.output
    schneider, siemens = json.loads(result.stdout)
    assert [m["advisory_id"] for m in schneider["matches"]] == ["ICSA-99-001-01"]
    assert schneider["matches"][0]["confidence"] in ("high", "medium")
    assert siemens["matches"] == []


def test_commands_match_refuses_a_bad_identity(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["advisories", "match"], input='{"vendor": "X"}', env=env(tmp_path)
    )
    assert result.exit_code == 2
    assert "names" in result.output
