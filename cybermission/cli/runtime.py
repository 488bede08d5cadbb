"""What every command shares: the one start-up path (settings, logging, the store) and the exits.

Nothing heavy is imported here at module level: ``cybermission --help`` loads every command
module, so the settings, the store and rich's consoles are imported when a command runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy import Engine

    from cybermission.config import Settings
    from cybermission.errors import CybermissionError

# Typer coerces a flag the command line left unset (None) through a pydantic adapter, which
# costs ~110 modules on `cybermission scan --help`; a False default is taken as is.
_UNSET_FLAGS = {"help": False, "install_completion": False, "show_completion": False}


def command_group(help_text: str, *, no_args_is_help: bool = True) -> typer.Typer:
    """A Typer app (the root or a group) built the same way for every group of the CLI.

    Help is plain click text, not rich panels: typer's rich help imports rich.markdown,
    markdown-it and pygments (~80 modules), which would double the cost of ``--help``.
    """
    return typer.Typer(
        help=help_text,
        no_args_is_help=no_args_is_help,
        rich_markup_mode=None,
        # Click caps help at 80 columns; rich used the terminal's width: 120 keeps lines whole.
        context_settings={"default_map": dict(_UNSET_FLAGS), "max_content_width": 120},
    )


@cache
def out() -> Console:
    """Results for people (tables, summaries) on stdout."""
    from rich.console import Console

    return Console(soft_wrap=True)


@cache
def err() -> Console:
    """Progress, notes and errors on stderr (stdout is kept for results)."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, highlight=False)


class _ConsoleLogHandler(logging.Handler):
    """Log lines printed through a rich console: above its live progress display, not into it."""

    def __init__(self, console: Console, formatter: logging.Formatter | None) -> None:
        super().__init__()
        self.console = console
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except (OSError, ValueError):  # a closed stream must not end the command
            self.handleError(record)


@contextmanager
def logs_through(console: Console) -> Iterator[None]:
    """While a progress display is live on ``console``, the root logger's stream handlers print
    through it (their filters and format kept), so a log line never breaks the bar."""
    root = logging.getLogger()
    saved = root.handlers[:]
    swapped: list[logging.Handler] = []
    for handler in saved:
        if type(handler) is logging.StreamHandler:
            replacement = _ConsoleLogHandler(console, handler.formatter)
            replacement.setLevel(handler.level)
            for log_filter in handler.filters:
                replacement.addFilter(log_filter)
            swapped.append(replacement)
        else:
            swapped.append(handler)
    root.handlers[:] = swapped
    try:
        yield
    finally:
        root.handlers[:] = saved


def fail(exc: CybermissionError, *, code: int = 2) -> typer.Exit:
    """Print ``error: <what>`` on stderr and return the exit to raise (``raise fail(exc)``)."""
    from rich.markup import escape

    err().print(f"[bold red]error:[/] {escape(str(exc))}")
    return typer.Exit(code=code)


def start() -> Settings:
    """Settings from the environment, and logging configured from them."""
    from cybermission.config import load_settings
    from cybermission.errors import CybermissionError
    from cybermission.logs import configure_logging

    try:
        settings = load_settings()
    except CybermissionError as exc:  # a secret file that cannot be read, named with its variable
        raise fail(exc) from exc
    configure_logging(settings.log_level)
    return settings


def open_store(settings: Settings, *, migrate: bool = False, every_table: bool = True) -> Engine:
    """The store's engine, its schema at the revision of this code.

    ``migrate`` applies the migrations (``db upgrade``, ``serve``, ``demo``), creating a SQLite
    store that does not exist yet; so does the first command on the embedded default store
    (``sqlite:///var/cybermission.db``). Any other SQLite file must exist: a mistyped path stops
    the command with exit 2 instead of answering from a new, empty store. Otherwise the store's
    revision is only read, and a store that is behind (or ahead) stops the command with exit 2
    and what to do.

    Every table is put on the metadata, as the migrations' env does: a session flushing one
    domain's rows resolves foreign keys to the others' tables (finding -> service). A command
    whose modules import every table it uses, and those its tables' keys name, passes
    ``every_table=False`` (``scan``: the pipeline's tables; the alerts', tokens', sensors',
    schedules' and territory's cost its start ~0.1 s of CPU, issue 12).
    """
    if every_table:
        from cybermission import models  # noqa: F401
    from cybermission.config import Settings
    from cybermission.db import create_db_engine, is_memory_store, is_new_sqlite_store
    from cybermission.errors import CybermissionError
    from cybermission.migrations import script_revisions, store_revisions, upgrade_database

    new = is_new_sqlite_store(settings.database_url)  # before the engine creates the file
    embedded_default = settings.database_url == Settings.model_fields["database_url"].default
    if new and not (migrate or embedded_default or is_memory_store(settings.database_url)):
        where = store_location(settings)
        raise fail(
            CybermissionError(
                f"no store at {where}: check CYBERMISSION_DATABASE_URL, "
                "or run `cybermission db upgrade` to create it there"
            )
        )
    engine = create_db_engine(settings.database_url, settings.store)
    if migrate or new:
        upgrade_database(engine)
        return engine
    stored, scripts = store_revisions(engine), script_revisions()
    if stored == scripts.heads:
        return engine
    engine.dispose()
    where = store_location(settings)
    if stored - scripts.known:
        unknown = ", ".join(sorted(stored - scripts.known))
        problem = f"the store at {where} has revisions this cybermission does not know ({unknown})"
        problem += ": a newer version migrated it"
    elif not stored:
        problem = f"the store at {where} has no schema yet: run `cybermission db upgrade`"
    else:
        lacking = ", ".join(sorted(scripts.heads - stored))
        problem = f"the store at {where} is behind this cybermission (it lacks {lacking}): "
        problem += "run `cybermission db upgrade`"
    raise fail(CybermissionError(problem))


def store_location(settings: Settings) -> str:
    """The store's URL without its credentials, to name it in messages."""
    return settings.database_url.split("@")[-1]
