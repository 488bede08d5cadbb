"""Settings: each secret setting is also read from a file (`<NAME>_FILE`, systemd credentials)."""

from pathlib import Path

import pytest
from pydantic import SecretStr

from cybermission.config import Settings, load_settings, secret_settings, setting_variable
from cybermission.errors import ValidationError

# What the settings hold that is a secret; a new secret setting must be marked SECRET (and added
# here), which gives it the file variants below.
EXPECTED_SECRETS = {
    ("admin_token",),
    ("database_url",),
    ("broker", "url"),
    ("broker", "management_password"),
}
VALUES = {
    ("admin_token",): "admin-token-from-a-file",
    ("database_url",): "postgresql+psycopg://cm:pw-from-a-file@127.0.0.1/cm",
    ("broker", "url"): "amqp://cm:pw-from-a-file@127.0.0.1:5672/",
    ("broker", "management_password"): "management-pw-from-a-file",
}


def _value(settings: Settings, path: tuple[str, ...]) -> str:
    node: object = settings
    for part in path:
        node = getattr(node, part)
    return node.get_secret_value() if isinstance(node, SecretStr) else str(node)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for path in EXPECTED_SECRETS:
        monkeypatch.delenv(setting_variable(path), raising=False)
        monkeypatch.delenv(setting_variable(path) + "_FILE", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


def test_config_marks_every_secret_setting() -> None:
    assert set(secret_settings()) == EXPECTED_SECRETS


@pytest.mark.parametrize("path", sorted(EXPECTED_SECRETS), ids=setting_variable)
def test_config_reads_each_secret_from_its_file_variable(
    path: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret"
    secret.write_text(VALUES[path] + "\n")  # as `echo` writes it: the newline is not the secret
    monkeypatch.setenv(setting_variable(path) + "_FILE", str(secret))
    assert _value(load_settings(), path) == VALUES[path]


@pytest.mark.parametrize("path", sorted(EXPECTED_SECRETS), ids=setting_variable)
def test_config_reads_each_secret_from_systemd_credentials(
    path: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / setting_variable(path)).write_text(VALUES[path])
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert _value(load_settings(), path) == VALUES[path]


def test_config_secret_file_merges_with_nested_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("management-pw")
    monkeypatch.setenv("CYBERMISSION_BROKER__MANAGEMENT_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("CYBERMISSION_BROKER__MANAGEMENT_USER", "cm-admin")
    broker = load_settings().broker
    assert broker.management_password.get_secret_value() == "management-pw"
    assert broker.management_user == "cm-admin"


def test_config_variable_wins_over_credentials_and_overrides_over_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "CYBERMISSION_ADMIN_TOKEN").write_text("from-credentials")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("CYBERMISSION_ADMIN_TOKEN", "from-variable")
    assert _value(load_settings(), ("admin_token",)) == "from-variable"
    overridden = load_settings(admin_token=SecretStr("from-override"))
    assert _value(overridden, ("admin_token",)) == "from-override"


def test_config_refuses_a_variable_and_its_file_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "token"
    secret.write_text("one")
    monkeypatch.setenv("CYBERMISSION_ADMIN_TOKEN", "two")
    monkeypatch.setenv("CYBERMISSION_ADMIN_TOKEN_FILE", str(secret))
    with pytest.raises(ValidationError, match="both set"):
        load_settings()


@pytest.mark.parametrize("content", [None, "", "\n"], ids=["missing", "empty", "newline-only"])
def test_config_unusable_secret_file_is_named_not_shown(
    content: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "token"
    if content is not None:
        secret.write_text(content)
    monkeypatch.setenv("CYBERMISSION_ADMIN_TOKEN_FILE", str(secret))
    with pytest.raises(ValidationError, match="CYBERMISSION_ADMIN_TOKEN_FILE") as raised:
        load_settings()
    assert str(secret) in str(raised.value)


def test_config_other_file_settings_are_paths_not_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # broker.ca_file is a setting named *_file, not a pointer to a secret: it stays a path.
    monkeypatch.setenv("CYBERMISSION_BROKER__CA_FILE", str(tmp_path / "ca.pem"))
    assert load_settings().broker.ca_file == tmp_path / "ca.pem"
