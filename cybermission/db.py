"""The store: engine factory, sessions, and the column types shared by every table.

SQLite (WAL) is the embedded default under ``./var/``; PostgreSQL is selected by URL. Nothing is
built at import time: call :func:`create_db_engine` with settings.
"""

import copy
import functools
import json
import operator
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    String,
    Table,
    any_,
    bindparam,
    event,
    insert,
    inspect,
    text,
    update,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, configure_mappers
from sqlalchemy.orm.instrumentation import manager_of_class
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, SQLModel, create_engine

# Re-exported for the store's callers; the clock lives apart so the sensor side needs no store.
from cybermission.clock import utcnow as utcnow
from cybermission.config import StoreSettings
from cybermission.store_links import bound_connections, connect_args

# Named constraints, so Alembic can alter them later (SQLite batch mode needs names).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION


# A random (version 4) UUID's fixed bits: version 0100 and variant 10 (RFC 9562 §5.4).
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_id() -> str:
    """A random UUID in its text form, as ``str(uuid.uuid4())`` gives it, at half the cost (the
    ``UUID`` object is skipped: a scan writes one id per observation, service and finding)."""
    digits = "%032x" % (int.from_bytes(os.urandom(16)) & _UUID4_CLEAR | _UUID4_SET)
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always returned timezone-aware (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        """SQLAlchemy's processor (this type's conversion, then the dialect's: text on SQLite),
        remembering its last answer: a scan batch binds the same ``now`` object to every row it
        writes (~10,000 timestamps a batch of 64 hosts), which it converted each time (issue 12).
        The memo is keyed by identity and holds the object, so a match is the very same value;
        it is one tuple, replaced whole, so threads sharing the processor never mix two. NULL
        is NULL on every dialect, without the three calls of the chain."""
        process = super().bind_processor(dialect)
        if process is None:
            return None
        storage = getattr(self._unwrapped_dialect_impl(dialect), "_storage_format", None)
        if dialect.name == "sqlite" and storage == _SQLITE_DATETIME_FORMAT:
            process = _sqlite_datetime_text
        memo: tuple[datetime | None, Any] = (None, None)

        def remembering(value: datetime | None) -> Any:
            nonlocal memo
            if value is None:
                return None
            seen, bound = memo
            if value is seen:
                return bound
            bound = process(value)
            memo = (value, bound)
            return bound

        return remembering


# SQLite's DATETIME text (its dialect's default storage format), which its processor writes by
# formatting a dict of seven fields: each event and observation of a scan has its own time,
# thousands per batch (issue 12). ``isoformat`` writes the same text, but leaves out zero
# microseconds.
_SQLITE_DATETIME_FORMAT = (
    "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"
)


def _sqlite_datetime_text(value: datetime | None) -> str | None:
    """What UTCDateTime then SQLite's DATETIME make of ``value``: UTC, no zone, as text."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    text = value.isoformat(" ")
    return text if value.microsecond else f"{text}.000000"


def _json_encoder() -> Callable[[object], str]:
    """``json.dumps`` with its default arguments (the same C encoder, the same text), built once.

    ``json.dumps`` makes a new encoder for each value, with a dict of the containers it is
    inside to refuse cycles, behind two Python frames: for the small documents a scan writes
    (~17 JSON values per host: facts, evidence, score breakdowns, event payloads) that set-up
    cost as much as the encoding, 2-3x the cost of this one (issue 12). A cycle, which no
    stored document can have, raises RecursionError here instead of ValueError.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return json.dumps
    encode = make(
        None,  # no cycle markers
        json.JSONEncoder().default,
        json.encoder.encode_basestring_ascii,
        None,  # indent
        ": ",
        ", ",
        False,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan
    )

    def encoded(value: object) -> str:
        return "".join(encode(value, 0))

    return encoded


_encode_json = _json_encoder()


class _StatementJson(threading.local):
    """The JSON texts one :func:`insert_values` call has made, by the identity of their value
    (held, so that no other object takes its id meanwhile); None outside such a call."""

    texts: dict[int, tuple[object, str]] | None = None


_statement_json = _StatementJson()


def json_text(value: object) -> str:
    """The text of a JSON column's value: the serializer of every engine of the store.

    Inside one :func:`insert_values` call, an object met again is encoded once: a scan batch's
    findings share their score breakdown (``findings/scoring.py``), ~600 bytes of JSON each.
    Its values cannot change while the call binds them; between calls nothing is kept, since a
    caller may change a dict in place before writing it again.
    """
    texts = _statement_json.texts
    if texts is None:
        return _encode_json(value)
    held = texts.get(id(value))
    if held is None:
        held = texts[id(value)] = (value, _encode_json(value))
    return held[1]


# json.loads's own scanner (C), without the two whitespace matches and frames around it; the
# decoder sets it in __init__ (typeshed does not declare it).
_scan_json = cast(
    Callable[[str, int], tuple[Any, int]], vars(json.decoder.JSONDecoder())["scan_once"]
)


def json_value(text: str | bytes) -> Any:
    """The value of a JSON column's text (str on SQLite, UTF-8 bytes from psycopg): what
    ``json.loads`` returns, at less than half its cost for the small documents a rescan reads
    back by the thousand (findings' evidence and breakdowns, services' facts: issue 12). Text
    with surrounding whitespace or anything wrong goes through ``json.loads`` itself, for its
    answer or its error."""
    data = (
        text.decode(json.detect_encoding(text), "surrogatepass")
        if isinstance(text, bytes)
        else text
    )
    try:
        value, end = _scan_json(data, 0)
    except (StopIteration, ValueError):
        return json.loads(text)
    return value if end == len(data) else json.loads(text)


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while a scan writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_file(database_url: str) -> Path | None:
    """The file of a SQLite URL; None for another database or an in-memory one."""
    if not database_url.startswith("sqlite"):
        return None
    path = database_url.split("///", 1)[-1]
    return Path(path) if path and path != ":memory:" and "///" in database_url else None


def is_memory_store(database_url: str) -> bool:
    """True for an in-memory SQLite store (``sqlite://``), which every process starts empty."""
    return database_url.startswith("sqlite") and _sqlite_file(database_url) is None


def is_new_sqlite_store(database_url: str) -> bool:
    """True for an embedded SQLite store that does not exist yet (a file absent, or in memory)."""
    if not database_url.startswith("sqlite"):
        return False
    path = _sqlite_file(database_url)
    return path is None or not path.exists()


def create_db_engine(database_url: str, store: StoreSettings | None = None) -> Engine:
    """Build the engine for ``database_url``; creates the SQLite folder when needed. A
    PostgreSQL engine's connections get ``store``'s timeouts and keepalives (the defaults when
    not given) and a pre-ping bounded like the work it precedes (``store_links.py``)."""
    # JSON columns through the store's own encoder and decoder, on every dialect.
    json_codec: dict[str, Any] = {"json_serializer": json_text, "json_deserializer": json_value}
    if database_url.startswith("sqlite"):
        path = _sqlite_file(database_url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            database_url, connect_args={"check_same_thread": False}, **json_codec
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    settings = store or StoreSettings()
    engine = create_engine(database_url, connect_args=connect_args(settings), **json_codec)
    bound_connections(engine, settings)
    return engine


def store_holds(engine: Engine, table: str) -> bool:
    """Whether the store answers and holds ``table`` (whether it was migrated, for the table
    of a first migration); raises :class:`sqlalchemy.exc.SQLAlchemyError` when it does not
    answer."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
        return inspect(connection).has_table(table)


def insert_values(
    session: Session, model: type[SQLModel], rows: Sequence[Mapping[str, Any]]
) -> None:
    """One Core INSERT (executemany) of ``rows`` into ``model``'s table, in the caller's
    transaction: for rows written by the thousand, which the ORM would track one by one.

    The statement is compiled once per table, columns and dialect, and each column's values go
    through that statement's own bind processors (:class:`_PlainInsert`): the same SQL and
    the same values reach the driver as through ``session.execute``, without its parameter
    dictionary per row (a third of a scan batch's INSERT time, issue 12). Rows whose columns
    need what only the full path does (a Python-side default) take it. On PostgreSQL the same
    values go through ``COPY ... FROM STDIN`` (:func:`_copy_rows`).
    """
    if not rows:
        return
    table = cast(Table, model.__table__)  # type: ignore[attr-defined]
    connection = session.connection()
    plain = _plain_insert(table, tuple(rows[0]), connection.dialect)
    _statement_json.texts = {}
    try:
        values = plain.values(rows) if plain is not None else None
        if plain is None or values is None:
            session.exec(insert(table), params=list(rows))
        elif plain.copy is not None:
            _copy_rows(connection, plain.copy, values)
        else:
            connection.exec_driver_sql(plain.statement, plain.parameters(values))
    finally:
        _statement_json.texts = None


def _copy_rows(connection: Connection, statement: str, rows: list[tuple[Any, ...]]) -> None:
    """``rows`` (bound values, in the COPY's column order) into PostgreSQL with ``COPY ... FROM
    STDIN``, in the connection's transaction.

    psycopg's executemany sends, and waits for, one execution per row: half of a first scan's
    writer CPU on PostgreSQL; COPY streams the rows with the same dumpers for 2-2.5x less CPU
    (issue 12). The rows meet the same constraints and defaults as an INSERT's. Listeners of
    ``before_cursor_execute`` see the COPY; a driver error is raised as SQLAlchemy raises an
    INSERT's (``IntegrityError``, a lost connection invalidated).
    """
    # Imported here: only a PostgreSQL store needs it, not SQLite's start-up.
    import psycopg

    cursor = connection.connection.cursor()
    try:
        connection.dispatch.before_cursor_execute(connection, cursor, statement, rows, None, True)
        with cast(psycopg.Cursor[Any], cursor).copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as exc:
        connection._handle_dbapi_exception(exc, statement, rows, cursor, None)
    finally:
        cursor.close()


class _PlainInsert:
    """An INSERT of some columns of a table, compiled for one dialect, executed as its text;
    on PostgreSQL (psycopg) also the COPY of the same columns."""

    def __init__(
        self, compiled: SQLCompiler, table: Table, names: tuple[str, ...], dialect: Dialect
    ) -> None:
        self.statement = compiled.string
        self._positional = dialect.positional
        self._names = names
        self._row_values = operator.itemgetter(*names)
        # Expanding parameters (the only ones with a list of processors) never reach here.
        processors = cast(Mapping[str, Callable[[Any], Any]], compiled._bind_processors)
        self._processors = tuple(
            (index, processors[name]) for index, name in enumerate(names) if name in processors
        )
        self.copy: str | None = None
        if dialect.name == "postgresql" and dialect.driver == "psycopg":
            quote = dialect.identifier_preparer
            columns = ", ".join(quote.quote(table.c[name].name) for name in names)
            self.copy = f"COPY {quote.format_table(table)} ({columns}) FROM STDIN"

    def values(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]] | None:
        """Each row's values in the statement's order, through the bind processors; None when
        a row lacks a column (the full path raises its own error for that)."""
        try:
            if len(self._names) == 1:
                values: list[tuple[Any, ...]] = [(self._row_values(row),) for row in rows]
            else:
                values = list(map(self._row_values, rows))
        except KeyError:
            return None
        if self._processors:
            columns: list[Iterable[Any]] = list(zip(*values, strict=True))
            for index, process in self._processors:
                columns[index] = map(process, columns[index])
            values = list(zip(*columns, strict=True))
        return values

    def parameters(
        self, values: list[tuple[Any, ...]]
    ) -> list[tuple[Any, ...]] | list[dict[str, Any]]:
        """The driver's executemany parameters for :meth:`values`."""
        if self._positional:
            return values
        return [dict(zip(self._names, row, strict=True)) for row in values]


@functools.lru_cache(maxsize=512)
def _plain_insert(table: Table, names: tuple[str, ...], dialect: Dialect) -> _PlainInsert | None:
    """``table``'s INSERT of ``names`` as :func:`insert_values` sends it; None when compiling it
    shows more to do per row than binding values (defaults computed in Python, expanded or
    renamed parameters, RETURNING)."""
    compiled = insert(table).compile(dialect=dialect, column_keys=list(names), for_executemany=True)
    binds = tuple(compiled.positiontup or ()) if dialect.positional else tuple(compiled.binds)
    if (
        compiled.insert_prefetch
        or compiled.postfetch
        or compiled.returning
        or compiled.literal_execute_params
        or compiled.post_compile_params
        or compiled.escaped_bind_names
        or compiled._insertmanyvalues
        or sorted(binds) != sorted(names)
    ):
        return None
    return _PlainInsert(compiled, table, binds, dialect)


RowT = TypeVar("RowT", bound=SQLModel)
# A field's default: a value (immutable) or a factory called for each row.
_Default = tuple[str, object, Callable[[], object] | None]


def build_row(model: type[RowT], /, **values: Any) -> RowT:
    """A new row of table ``model`` from values the caller made itself, without ``__init__``.

    SQLModel's ``__init__`` of a table model checks nothing, but it sets every field through
    the ORM's instrumented ``setattr`` and asks pydantic for each default: the scan write path
    builds thousands of rows per batch (findings, services, addresses, devices), and those
    calls were its largest cost after the queries (issue 12). Unset fields get their declared
    defaults (ids, timestamps, empty JSON), as ``__init__`` gives them; a name that is not a
    field, or a required field left out, raises ``TypeError``. The row is transient (in no
    session), like a new object.
    """
    defaults, names = _defaults_of(model)
    if not names.issuperset(values):
        unknown = sorted(set(values) - names)[0]
        raise TypeError(f"{model.__name__} has no field {unknown!r}")
    for name, default, factory in defaults:
        if name not in values:
            values[name] = factory() if factory is not None else default
    manager = manager_of_class(model)
    if not manager.mapper.configured:
        configure_mappers()  # what the first __init__ would do: relationships, attribute access
    row: RowT = manager.new_instance()
    row.__dict__.update(values)
    return row


@functools.cache
def _defaults_of(model: type[SQLModel]) -> tuple[tuple[_Default, ...], frozenset[str]]:
    defaults: list[_Default] = []
    for name, info in model.model_fields.items():
        factory = info.default_factory
        if factory is None and info.is_required():
            defaults.append((name, None, functools.partial(_required, model.__name__, name)))
        elif factory is not None:
            if info.default_factory_takes_validated_data:
                raise TypeError(f"{model.__name__}.{name}: a default made from other fields")
            defaults.append((name, None, cast(Callable[[], object], factory)))
        elif isinstance(info.default, list | dict | set):
            defaults.append((name, None, functools.partial(copy.deepcopy, info.default)))
        else:
            defaults.append((name, info.default, None))
    return tuple(defaults), frozenset(model.model_fields)


def _required(model: str, name: str) -> object:
    raise TypeError(f"{model}: {name} is required")


# Values per ``IN (...)`` list: well under SQLite's bound on parameters (32,766) and PostgreSQL's
# (65,535), and statements stay small.
IN_CHUNK = 500


def in_chunks(values: Iterable[str]) -> Iterator[list[str]]:
    """``values`` once each, sorted, in lists of at most ``IN_CHUNK``: one ``IN (...)`` list per
    statement, rows met in the same order whatever the caller's."""
    items = sorted(set(values))
    for start in range(0, len(items), IN_CHUNK):
        yield items[start : start + IN_CHUNK]


def among(
    session: Session,
    column: ColumnElement[str] | Mapped[str] | Mapped[str | None],
    values: Sequence[str],
) -> ColumnElement[bool]:
    """``column IN (values)`` for a chunk of :func:`in_chunks`; on PostgreSQL written
    ``column = ANY(%(array)s)``, one parameter however many values. An IN list is one parameter
    per value, so each statement was expanded by SQLAlchemy, parsed again by psycopg (its text
    differs with the count) and dumped value by value: 0.7 ms of CPU per statement of ~150 ids,
    a dozen statements per scan batch (issue 12). SQLite has no arrays: the IN list stays."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(String())))
    return column.in_(values)


def update_by_ids(
    session: Session, model: type[SQLModel], ids: Iterable[str], values: Mapping[str, Any]
) -> None:
    """The same ``values`` into every row of ``ids``: one UPDATE per chunk of ids, where the unit
    of work sent one parameter set per row (a rescan sees almost every stored row again)."""
    table = cast(Table, model.__table__)  # type: ignore[attr-defined]
    for chunk in in_chunks(ids):
        session.exec(update(table).where(among(session, table.c.id, chunk)).values(**values))


def insert_rows(session: Session, rows: Sequence[SQLModel]) -> None:
    """One Core INSERT of model objects of one table; the objects stay outside the session."""
    if not rows:
        return
    model = type(rows[0])
    names = [c.name for c in cast(Table, model.__table__).columns]  # type: ignore[attr-defined]
    values = []
    for row in rows:
        # A new row holds every column in its __dict__ (build_row sets them all): read it
        # there, not through the instrumented attribute (a scan batch reads ~20,000 values).
        held = row.__dict__
        values.append({n: held[n] if n in held else getattr(row, n) for n in names})
    insert_values(session, model, values)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed on success, rolled back on any error (nothing half-written)."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def enum_type(enum_cls: type[StrEnum]) -> SAEnum:
    """Store a StrEnum by value in a VARCHAR: new members need no database type migration."""
    return SAEnum(
        enum_cls,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda members: [m.value for m in members],
    )
