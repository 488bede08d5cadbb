"""deploy/cybermission.env.example is generated from the settings and reads back as them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cybermission.config import ENV_PREFIX, Settings
from cybermission.config_example import render_env_example

EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "cybermission.env.example"


def test_env_example_is_generated_from_the_settings() -> None:
    assert EXAMPLE.read_text() == render_env_example(), (
        "deploy/cybermission.env.example drifted from cybermission/config.py: run "
        "`cybermission config env-example > deploy/cybermission.env.example`"
    )


def test_env_example_names_every_setting_once() -> None:
    text = render_env_example()
    named = [
        line.lstrip("# ").split("=", 1)[0]
        for line in text.splitlines()
        if line.lstrip("# ").startswith(ENV_PREFIX) and "=" in line
    ]
    assert len(named) == len(set(named))
    for variable in ("CYBERMISSION_DATABASE_URL", "CYBERMISSION_ALERTS__POLL_S"):
        assert variable in named
    assert "CYBERMISSION_PORTS" in named  # derived at run time: shown commented, with today's


def test_env_example_reads_back_as_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in [v for v in os.environ if v.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(variable)
    defaults = Settings().model_dump(mode="json")
    for line in render_env_example().splitlines():
        if line and not line.startswith("#"):
            variable, value = line.split("=", 1)
            monkeypatch.setenv(variable, value)
    assert Settings().model_dump(mode="json") == defaults


def test_env_example_is_what_the_command_prints() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "cybermission", "config", "env-example"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert printed.stdout == render_env_example()
