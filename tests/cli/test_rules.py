"""`cybermission rules lint` and `rules test`: exit codes and path:line reports."""

import shutil
from pathlib import Path

from typer.testing import CliRunner

from cybermission.cli import app

GOOD = Path("rules/modbus/modbus-unauthenticated-reachable.yaml")


def pack(tmp_path: Path) -> Path:
    folder = tmp_path / "pack"
    folder.mkdir()
    shutil.copy(GOOD, folder / GOOD.name)
    return folder


def test_commands_lint_the_shipped_corpus_passes() -> None:
    result = CliRunner().invoke(app, ["rules", "lint", "rules"])
    assert result.exit_code == 0, result.output
    assert "0 problems" in result.output


def test_commands_test_the_shipped_corpus_passes() -> None:
    result = CliRunner().invoke(app, ["rules", "test", "rules"])
    assert result.exit_code == 0, result.output
    assert "0 problems" in result.output


def test_commands_lint_reports_every_broken_file_with_its_line(tmp_path: Path) -> None:
    folder = pack(tmp_path)
    (folder / "bad-severity.yaml").write_text(
        "id: bad-severity\ninfo:\n  name: x\n  severity: huge\n", encoding="utf-8"
    )
    (folder / "bad-yaml.yaml").write_text("id: bad-yaml\ninfo: [\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["rules", "lint", str(folder)])
    assert result.exit_code == 1
    assert f"{folder / 'bad-severity.yaml'}:4: info.severity" in result.output
    assert f"{folder / 'bad-yaml.yaml'}:" in result.output
    assert "1 rules valid, 2 problems" in result.output


def test_commands_lint_does_not_run_examples_but_test_does(tmp_path: Path) -> None:
    folder = pack(tmp_path)
    text = GOOD.read_text(encoding="utf-8").replace(
        "id: modbus-unauthenticated-reachable", "id: wrong-example"
    )
    lines = text.splitlines()
    no_match = lines.index("  no-match:")
    # Make the first no-match example a document that does match.
    lines[no_match + 1 : no_match + 1] = ["    - {target: {transport: tcp}}"]
    (folder / "wrong-example.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert CliRunner().invoke(app, ["rules", "lint", str(folder)]).exit_code == 0
    result = CliRunner().invoke(app, ["rules", "test", str(folder)])
    assert result.exit_code == 1
    assert f"{folder / 'wrong-example.yaml'}:{no_match + 2}: examples.no-match[0] matches" in (
        result.output
    )


def test_commands_lint_reports_duplicate_ids(tmp_path: Path) -> None:
    folder = pack(tmp_path)
    (folder / "sub").mkdir()
    shutil.copy(GOOD, folder / "sub" / GOOD.name)
    result = CliRunner().invoke(app, ["rules", "lint", str(folder)])
    assert result.exit_code == 1
    assert "duplicate rule id 'modbus-unauthenticated-reachable'" in result.output


def test_commands_missing_folder_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["rules", "test", str(tmp_path / "absent")])
    assert result.exit_code == 2
    assert "not a folder" in result.output
