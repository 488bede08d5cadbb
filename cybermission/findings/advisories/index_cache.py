"""The advisory index kept on disk between processes.

Building the index of CISA's 2017-2024 archive (2,379 advisories, 15,575 products) takes about
5.7 s of CPU: every ``cybermission scan`` of a store with advisories imported paid it before its
first packet (issue 12; the in-process cache of :mod:`lookup` only helps ``serve``). Read back
from this cache it takes about 0.7 s.

A file is named by a digest of everything the index is built from: the store and its advisories
(``lookup``'s fingerprint), the family book's content, and the source of this package (a changed
normalisation makes a new index, never an old one read by new code). A file that is unreadable,
not the current user's, or writable by others is ignored and the index is built as before: the
cache can only save time, never decide a match. Files are written whole (a temporary file
renamed) and the few most recently used are kept.

The cache folder is ``$XDG_CACHE_HOME/cybermission`` (``~/.cache/cybermission``), mode 0700.
"""

import contextlib
import gc
import hashlib
import logging
import os
import pickle
import stat
import tempfile
from collections.abc import Hashable
from functools import cache
from pathlib import Path
from typing import Final

from cybermission.findings.advisories.families import FamilyBook
from cybermission.findings.advisories.matching import AdvisoryIndex

logger = logging.getLogger(__name__)

FILES_KEPT: Final = 4
_SUFFIX: Final = ".advisory-index"
_PACKAGE: Final = Path(__file__).resolve().parent


def cache_dir() -> Path | None:
    """The folder, or None where the user has no home to keep it in (a service account with no
    HOME and no passwd entry): the index is then built by each process, as before."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:
            return None
    return Path(base) / "cybermission"


@cache
def _code_digest() -> str:
    """The source of the package that builds and reads the index."""
    digest = hashlib.sha256()
    for source in sorted(_PACKAGE.rglob("*.py")):
        digest.update(source.relative_to(_PACKAGE).as_posix().encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def _book_digest(book: FamilyBook) -> str:
    """The book's content, in an order that does not depend on the process (sets are sorted)."""
    canonical = (
        repr(book.families),
        sorted((key, sorted(values)) for key, values in book.brands.items()),
        sorted((key, repr(value)) for key, value in book.aliases.items()),
    )
    return hashlib.sha256(repr(canonical).encode()).hexdigest()


def cache_key(fingerprint: tuple[Hashable, ...], book: FamilyBook) -> str:
    text = repr((_code_digest(), _book_digest(book), fingerprint))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def load(key: str) -> AdvisoryIndex | None:
    """The index kept under ``key``, or None (absent, not ours, unreadable)."""
    folder = cache_dir()
    if folder is None:
        return None
    path = folder / f"{key}{_SUFFIX}"
    try:
        with path.open("rb") as file:
            status = os.fstat(file.fileno())
            if status.st_uid != os.getuid() or status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                logger.warning(
                    "advisory index cache ignored: not private", extra={"path": str(path)}
                )
                return None
            # Hundreds of thousands of objects: the collector walking them as they arrive more
            # than doubled the read (1.5-1.8 s -> 0.65-0.85 s without).
            enabled = gc.isenabled()
            gc.disable()
            try:
                index = pickle.load(file)  # noqa: S301 (a private file this code wrote)
            finally:
                if enabled:
                    gc.enable()
    except FileNotFoundError:
        return None
    # A torn or foreign file raises what unpickling its bytes meets: build instead.
    except (
        pickle.UnpicklingError,
        EOFError,
        OSError,
        AttributeError,
        ImportError,
        IndexError,
        TypeError,
        ValueError,
        KeyError,
    ) as exc:
        logger.warning(
            "advisory index cache unreadable", extra={"path": str(path), "error": repr(exc)}
        )
        return None
    if not isinstance(index, AdvisoryIndex):
        return None
    with contextlib.suppress(OSError):  # a read-only cache still serves
        os.utime(path)  # recently used: kept by the pruning
    return index


def save(key: str, index: AdvisoryIndex) -> None:
    """Keep ``index`` under ``key``; a cache that cannot be written is only logged."""
    folder = cache_dir()
    if folder is None:
        return
    temporary: str | None = None
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".tmp", delete=False) as file:
            temporary = file.name
            pickle.dump(index, file, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, folder / f"{key}{_SUFFIX}")
    except (OSError, pickle.PicklingError) as exc:
        # A full disk, a read-only home: the run goes on without the cache, leaving no part file.
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        logger.warning(
            "advisory index not cached", extra={"folder": str(folder), "error": str(exc)}
        )
        return
    _prune(folder)


def _prune(folder: Path) -> None:
    def used(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0

    kept = sorted(folder.glob(f"*{_SUFFIX}"), key=used, reverse=True)
    for stale in kept[FILES_KEPT:]:
        with contextlib.suppress(OSError):  # another process's, or already gone
            stale.unlink(missing_ok=True)
