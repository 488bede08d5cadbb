"""The env example (``deploy/cybermission.env.example``) rendered from :class:`Settings` itself.

Every setting appears once, as the variable pydantic-settings reads, with its default spelled as
that variable would be parsed, and the comment written above the field in ``config.py`` (the one
place a setting is explained). ``cybermission config env-example`` prints it; a test compares it
with the file and reads the file back into the same Settings, so the example cannot drift.
"""

import ast
import inspect
import json
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from cybermission import config
from cybermission.config import FILE_SUFFIX, SecretSetting, Settings, setting_variable
from cybermission.probes import Transport, declared_ports, load_probes

HEADER = """\
# Every setting of cybermission with its default, generated from cybermission/config.py by
#   cybermission config env-example > deploy/cybermission.env.example
# (a test fails when they differ: edit config.py, then regenerate). Copy what you change to
# cybermission.env (central) or sensor.env (sensors); nested settings use "__".
#
# Secrets (marked "secret") are better kept out of the environment: give a file instead with
# <NAME>_FILE (Docker/Kubernetes secrets), e.g.
#   CYBERMISSION_ADMIN_TOKEN_FILE=/run/secrets/cybermission_admin_token
# or, under systemd, a credential of the same name (LoadCredential=CYBERMISSION_ADMIN_TOKEN:/path),
# read from $CREDENTIALS_DIRECTORY. A variable and its _FILE together are refused.

"""


def _comments() -> dict[tuple[str, str], list[str]]:
    """(class name, field name) -> the comment lines written just above the field."""
    source = inspect.getsource(config)
    lines = source.splitlines()
    found: dict[tuple[str, str], list[str]] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            above: list[str] = []
            row = item.lineno - 2  # 0-based index of the line above
            while row >= 0 and lines[row].strip().startswith("#"):
                above.insert(0, lines[row].strip().lstrip("#").strip())
                row -= 1
            found[(node.name, item.target.id)] = above
    return found


def _derived_defaults() -> dict[tuple[str, ...], str]:
    """Settings whose default is worked out at run time: what it is on this installation."""
    probes = load_probes().values()
    tcp = json.dumps(declared_ports(probes, Transport.TCP), separators=(",", ":"))
    udp = json.dumps(declared_ports(probes, Transport.UDP), separators=(",", ":"))
    return {
        ("ports",): f"unset: every TCP port the installed probes declare, today {tcp}",
        ("udp_ports",): f"unset: every UDP port the installed probes declare, today {udp}",
        ("rules_dirs",): "unset: the rule packs installed with the package",
    }


def env_value(value: Any) -> str:
    """``value`` as pydantic-settings reads it back from a variable."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | int | float | Path):
        return str(value)
    return json.dumps(value, default=str, separators=(",", ":"))


def _lines(
    model: BaseModel, path: tuple[str, ...], comments: dict[tuple[str, str], list[str]]
) -> Iterator[str]:
    derived = _derived_defaults()
    for name, field in type(model).model_fields.items():
        here = (*path, name)
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield ""
            doc = (inspect.getdoc(type(value)) or "").splitlines()[0]
            yield f"# --- {'.'.join(here)}: {doc} ---"
            yield from _lines(value, here, comments)
            continue
        for comment in comments.get((type(model).__name__, name), []):
            yield f"# {comment}" if comment else "#"
        variable = setting_variable(here)
        if any(isinstance(m, SecretSetting) for m in field.metadata):
            yield f"# secret: or {variable}{FILE_SUFFIX}=/path/to/file"
        if here in derived:
            yield f"# {variable}=  ({derived[here]})"
        elif value is None:
            yield f"# {variable}=  (unset)"
        else:
            yield f"{variable}={env_value(value)}"


def render_env_example() -> str:
    """The whole env example, defaults of a fresh ``Settings`` (no variable read)."""
    defaults = Settings.model_construct()
    # model_construct skips validation but fills defaults, nested models included.
    body = "\n".join(_lines(defaults, (), _comments()))
    return HEADER + body.rstrip() + "\n"
