"""``cybermission rules lint DIR`` and ``rules test DIR``: check rule packs people write.

Exit status: 0 when every file is fine, 1 when a rule is broken (each problem is printed as
``path:line: what`` on stdout, one a line, so editors and CI can jump to it), 2 when the folder
does not exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cybermission.cli.runtime import command_group, err, fail, out
from cybermission.errors import CybermissionError

if TYPE_CHECKING:
    from cybermission.errors import RuleError

app = command_group("Rule packs: check and test them.")

DirArgument = Annotated[Path, typer.Argument(help="A folder of rule files (searched recursively).")]


def _folder(directory: Path) -> None:
    if not directory.is_dir():
        raise fail(CybermissionError(f"{directory}: not a folder"))


def _report(problems: list[RuleError]) -> None:
    for problem in problems:
        out().print(str(problem), highlight=False)


@app.command("lint")
def lint_command(directory: DirArgument) -> None:
    """Validate every rule file (syntax, schema, modifiers, regexes, ids); exit 1 on a problem."""
    from cybermission.rules.loader import lint_rules

    _folder(directory)
    rules, problems = lint_rules(directory)
    _report(problems)
    err().print(f"{len(rules)} rules valid, {len(problems)} problems")
    if problems:
        raise typer.Exit(code=1)


@app.command("test")
def test_command(directory: DirArgument) -> None:
    """Lint, then check that every example matches or not as declared; exit 1 on a failure."""
    from cybermission.rules.loader import check_rule_examples

    _folder(directory)
    examples, problems = check_rule_examples(directory)
    _report(problems)
    err().print(f"{examples} examples run, {len(problems)} problems")
    if problems:
        raise typer.Exit(code=1)
