"""Optional extras: the libraries an extra lacks are named, with the command that installs them."""

from pathlib import Path

import pytest

from cybermission.errors import CybermissionError
from cybermission.extras import missing_requirements, require_extra

# Installed in every environment of the suite (a core dependency) / installed nowhere.
PRESENT, ABSENT = "pydantic", "cybermission-surely-absent-simulator"


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A distribution on sys.path whose ``sim`` extra needs one present and one absent project."""
    info = tmp_path / "cm_extra_probe-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\n"
        "Name: cm-extra-probe\n"
        "Version: 1.0\n"
        "Provides-Extra: sim\n"
        f"Requires-Dist: {PRESENT}>=2\n"
        f'Requires-Dist: {PRESENT}>=2; extra == "sim"\n'
        f'Requires-Dist: {ABSENT}==1.*; extra == "sim"\n'
        f'Requires-Dist: {ABSENT}; extra == "other"\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "cm-extra-probe"


def test_missing_requirements_names_only_the_extras_absent_projects(plugin: str) -> None:
    assert missing_requirements("sim", distribution=plugin) == [ABSENT]


def test_require_extra_says_how_to_install_it(plugin: str) -> None:
    with pytest.raises(
        CybermissionError, match=rf"missing: {ABSENT}\): pip install '{plugin}\[sim\]'"
    ):
        require_extra("sim", feature="the simulators", distribution=plugin)


def test_the_installed_lab_extra_is_complete() -> None:
    # The suite runs with the lab extra (its simulators are the tests' devices).
    require_extra("lab", feature="the lab")
