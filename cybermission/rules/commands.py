"""``cybermission rules lint DIR`` and ``rules test DIR``: check rule packs people write.

Exit status: 0 when every file is fine, 1 when a rule is broken (each problem is printed as
``path:line: what`` on stdout, one a line, so editors and CI can jump to it), 2 when the folder
does not exist.
"""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cybermission.errors import RuleError
from cybermission.rules.loader import Rule, example_failures, load_rule_file, rule_paths

rules_app = typer.Typer(help="Rule packs: check and test them.", no_args_is_help=True)

_out = Console(soft_wrap=True, highlight=False)
_err = Console(stderr=True, soft_wrap=True, highlight=False)

DirArgument = Annotated[Path, typer.Argument(help="A folder of rule files (searched recursively).")]


def lint_rules(directory: Path) -> tuple[list[Rule], list[RuleError]]:
    """Parse, validate and compile every rule under ``directory``; every problem, not the first.

    Examples are not run (that is :func:`test_rules`); duplicate ids across files are reported.
    """
    rules: list[Rule] = []
    problems: list[RuleError] = []
    seen: dict[str, Rule] = {}
    for path in rule_paths(directory):
        try:
            rule = load_rule_file(path, check_examples=False)
        except RuleError as exc:
            problems.append(exc)
            continue
        first = seen.get(rule.id)
        if first is not None:
            problems.append(
                RuleError(str(path), None, f"duplicate rule id {rule.id!r} (also in {first.path})")
            )
            continue
        seen[rule.id] = rule
        rules.append(rule)
    return rules, problems


def check_rule_examples(directory: Path) -> tuple[int, list[RuleError]]:
    """Lint, then run every example of every valid rule: (examples run, problems)."""
    rules, problems = lint_rules(directory)
    examples = 0
    for rule in rules:
        examples += len(rule.spec.examples.match) + len(rule.spec.examples.no_match)
        problems.extend(example_failures(rule))
    return examples, problems


def _folder(directory: Path) -> None:
    if not directory.is_dir():
        _err.print(f"error: {directory}: not a folder")
        raise typer.Exit(code=2)


def _report(problems: list[RuleError]) -> None:
    for problem in problems:
        _out.print(str(problem))


@rules_app.command("lint")
def lint_command(directory: DirArgument) -> None:
    """Validate every rule file (syntax, schema, modifiers, regexes, ids); exit 1 on a problem."""
    _folder(directory)
    rules, problems = lint_rules(directory)
    _report(problems)
    _err.print(f"{len(rules)} rules valid, {len(problems)} problems")
    if problems:
        raise typer.Exit(code=1)


@rules_app.command("test")
def test_command(directory: DirArgument) -> None:
    """Lint, then check that every example matches or not as declared; exit 1 on a failure."""
    _folder(directory)
    examples, problems = check_rule_examples(directory)
    _report(problems)
    _err.print(f"{examples} examples run, {len(problems)} problems")
    if problems:
        raise typer.Exit(code=1)
