"""The start-up path of every command: a light ``--help``."""

import subprocess
import sys

import pytest

# What a command needs only once it runs: the store, the API, the broker, the scan path, packets.
HEAVY = ("sqlalchemy", "sqlmodel", "alembic", "fastapi", "uvicorn", "celery", "kombu", "scapy")
HEAVY_OURS = ("api", "scanners", "cybermission.sensors", "cybermission.scans", "cybermission.db")
# The budget of issue 9: `cybermission --help` imports at most 250 modules.
MAX_HELP_MODULES = 250


def _imported_by(*args: str) -> list[str]:
    """The modules ``cybermission ARGS`` imports, in the order ``python -X importtime`` lists."""
    code = (
        "import sys; from cybermission.cli import main; "
        f"sys.argv = ['cybermission', *{list(args)!r}]; main()"
    )
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    return [line.rsplit("|", 1)[-1].strip() for line in lines[1:]]  # the first is the header


@pytest.mark.parametrize("args", [("--help",), ("scan", "--help"), ("findings", "list", "--help")])
def test_help_imports_no_store_api_or_broker_code(args: tuple[str, ...]) -> None:
    modules = _imported_by(*args)
    heavy = [m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY_OURS)]
    assert heavy == []
    assert len(modules) <= MAX_HELP_MODULES
