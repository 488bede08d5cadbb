"""Files that hold secrets: written atomically with mode 0600, never readable by others."""

import os
import tempfile
from pathlib import Path

PRIVATE_MODE = 0o600


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable and writable by the owner only, atomically.

    The content goes to a temporary file in the same directory that is created 0600 (mkstemp
    opens it with ``O_EXCL`` and mode 0600, whatever the umask), then renamed over ``path``: at no
    moment does a file with the secret exist with wider permissions, and a reader sees either the
    old file or the whole new one. An existing ``path`` is replaced, not rewritten in place, so
    its old (possibly 0644) mode does not carry over.
    """
    directory = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp already gives 0600; fchmod says so explicitly and survives any platform quirk.
        os.fchmod(fd, PRIVATE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
