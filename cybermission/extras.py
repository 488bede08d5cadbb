"""Optional extras of the distribution (``lab``, ``nmap``): whether one is installed, else how to.

The libraries of an extra are read from the installed metadata (``pyproject.toml``'s
``[project.optional-dependencies]``), so the list lives in one place.
"""

import re
from importlib import metadata

from cybermission.errors import CybermissionError

DISTRIBUTION = "cybermission"

# PEP 508: a requirement starts with its project name; an extra's marker reads extra == "name".
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _marker_extra(marker: str) -> str | None:
    found = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
    return found.group(1) if found else None


def missing_requirements(extra: str, *, distribution: str = DISTRIBUTION) -> list[str]:
    """The projects ``extra`` requires that are not installed, in declaration order.

    Empty when every one is installed, and when ``distribution`` has no metadata (a source tree
    run without installing): then nothing can be told, and the import errors will speak.
    """
    try:
        requirements = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return []
    missing: list[str] = []
    for requirement in requirements:
        spec, _, marker = requirement.partition(";")
        name = _NAME.match(spec)
        if name is None or _marker_extra(marker) != extra:
            continue
        try:
            metadata.distribution(name.group(1))
        except metadata.PackageNotFoundError:
            missing.append(name.group(1))
    return missing


def require_extra(extra: str, *, feature: str, distribution: str = DISTRIBUTION) -> None:
    """Raise ``CybermissionError`` naming the install command when ``extra`` is incomplete."""
    missing = missing_requirements(extra, distribution=distribution)
    if missing:
        raise CybermissionError(
            f"{feature} needs the {extra!r} extra, which is not installed "
            f"(missing: {', '.join(missing)}): pip install '{distribution}[{extra}]'"
        )
