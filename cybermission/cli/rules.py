"""``cybermission rules lint DIR`` and ``rules test DIR``: check rule packs people write.

Exit status: 0 when every file is fine, 1 when a rule is broken (each problem is printed as
``path:line: what`` on stdout, one a line, so editors and CI can jump to it; ``--format json``
or ``jsonl`` gives path, line and message as data), 2 when the folder does not exist. Without a
folder, the rule packs installed with the package are checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cybermission.cli.output import FormatOption, check_format, write_rows
from cybermission.cli.runtime import command_group, err, fail, out
from cybermission.errors import CybermissionError

if TYPE_CHECKING:
    from cybermission.errors import RuleError

app = command_group("Rule packs: check and test them.")

DirArgument = Annotated[
    Path | None,
    typer.Argument(
        help="A folder of rule files (searched recursively); the packaged rules if left out."
    ),
]


def _folder(directory: Path | None) -> Path:
    from cybermission.config import packaged_rules_dir

    folder = directory if directory is not None else packaged_rules_dir()
    if not folder.is_dir():
        raise fail(CybermissionError(f"{folder}: not a folder"))
    return folder


def _report(problems: list[RuleError], output: str) -> None:
    if output == "table":  # path:line: what, one a line, for editors and CI
        for problem in problems:
            out().print(str(problem), highlight=False, markup=False)
        return
    write_rows(({"path": p.path, "line": p.line, "message": p.detail} for p in problems), output)


@app.command("lint")
def lint_command(directory: DirArgument = None, output: FormatOption = "table") -> None:
    """Validate every rule file (syntax, schema, modifiers, regexes, ids); exit 1 on a problem."""
    from cybermission.rules.loader import lint_rules

    check_format(output)
    rules, problems = lint_rules(_folder(directory))
    _report(problems, output)
    err().print(f"{len(rules)} rules valid, {len(problems)} problems")
    if problems:
        raise typer.Exit(code=1)


@app.command("test")
def run_examples_command(directory: DirArgument = None, output: FormatOption = "table") -> None:
    """Lint, then check that every example matches or not as declared; exit 1 on a failure."""
    from cybermission.rules.loader import check_rule_examples

    check_format(output)
    examples, problems = check_rule_examples(_folder(directory))
    _report(problems, output)
    err().print(f"{examples} examples run, {len(problems)} problems")
    if problems:
        raise typer.Exit(code=1)
