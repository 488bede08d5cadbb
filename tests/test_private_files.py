"""Secret files: 0600 from their first byte, replaced atomically."""

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cybermission import private_files
from cybermission.private_files import write_private_file


@pytest.fixture
def open_umask() -> Iterator[None]:
    # The most permissive umask a careless shell could have: the mode must not depend on it.
    previous = os.umask(0)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_files_are_0600_whatever_the_umask(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "bundle.json"
    write_private_file(path, '{"secret": "s"}\n')
    assert path.read_text() == '{"secret": "s"}\n'
    assert _mode(path) == 0o600


def test_private_files_replace_a_world_readable_file(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "bundle.json"
    path.write_text("old")
    path.chmod(0o644)
    write_private_file(path, "new")
    assert path.read_text() == "new"
    assert _mode(path) == 0o600


def test_private_files_hold_the_secret_only_in_0600_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_umask: None
) -> None:
    # Look at the temporary file at the moment it is renamed: already 0600 with the whole content.
    seen: list[tuple[int, str]] = []
    real_replace = os.replace

    def spy(src: str, dst: Path) -> None:
        seen.append((_mode(Path(src)), Path(src).read_text()))
        real_replace(src, dst)

    monkeypatch.setattr(private_files.os, "replace", spy)
    write_private_file(tmp_path / "bundle.json", "secret")
    assert seen == [(0o600, "secret")]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle.json"]


def test_private_files_leave_nothing_behind_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    with pytest.raises(IsADirectoryError):
        write_private_file(target, "secret")  # the target is a directory: the rename fails
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
