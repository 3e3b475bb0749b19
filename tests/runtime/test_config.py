"""Configuration: TOML + GOVTRUST_* overrides, secrets in 0600 files, bad input refused."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from idp.runtime.config import SECRET_NAMES, Config, ConfigError, default_sections, write_config


def test_defaults_without_a_file(tmp_path: Path) -> None:
    config = Config.load(tmp_path, environ={})
    assert config.database_url == f"sqlite:///{tmp_path.resolve() / 'govtrust.db'}"
    assert config.get("directory", "uris") == ["ldap://127.0.0.1:3389"]
    assert config.get("idp", "issuer") == "https://127.0.0.1:8443"
    assert not config.initialized


def test_written_file_round_trips(tmp_path: Path) -> None:
    sections = default_sections(tmp_path)
    sections["pki"]["organization"] = '北京市"人民"政府\\'
    write_config(tmp_path, sections)
    config = Config.load(tmp_path, environ={})
    assert config.initialized
    assert config.get("pki", "organization") == '北京市"人民"政府\\'
    assert config.get("directory", "managed") is True


def test_tables_in_lists_round_trip(tmp_path: Path) -> None:
    sections = default_sections(tmp_path)
    sections["certauth"]["external_cas"] = [
        {"name": "省CA", "file": "ext/ca.pem", "rule": "email", "hardware_policies": ["1.2.3"]}]
    write_config(tmp_path, sections)
    config = Config.load(tmp_path, environ={})
    assert config.get("certauth", "external_cas") == sections["certauth"]["external_cas"]


def test_environment_overrides_file_with_types(tmp_path: Path) -> None:
    write_config(tmp_path, default_sections(tmp_path))
    env = {
        "GOVTRUST_DATABASE_URL": "postgresql+psycopg://u@127.0.0.1:5/db",
        "GOVTRUST_DIRECTORY_URIS": "ldap://a:1, ldap://b:2",
        "GOVTRUST_DIRECTORY_MANAGED": "false",
        "GOVTRUST_DIRECTORY_TIMEOUT": "2.5",
        "GOVTRUST_IDP_SESSION_HOURS": "4",
    }
    config = Config.load(tmp_path, environ=env)
    assert config.database_url.startswith("postgresql+psycopg://")
    assert config.get("directory", "uris") == ["ldap://a:1", "ldap://b:2"]
    assert config.get("directory", "managed") is False
    assert config.get("directory", "timeout") == 2.5
    assert config.get("idp", "session_hours") == 4


@pytest.mark.parametrize(
    ("var", "value"),
    [("GOVTRUST_DIRECTORY_MANAGED", "maybe"), ("GOVTRUST_IDP_SESSION_HOURS", "eight"),
     ("GOVTRUST_DIRECTORY_TIMEOUT", "fast")],
)
def test_malformed_environment_value_is_refused(tmp_path: Path, var: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        Config.load(tmp_path, environ={var: value})
    assert err.value.key == var


def test_malformed_toml_is_refused(tmp_path: Path) -> None:
    (tmp_path / "govtrust.toml").write_text("[database\nurl = ", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.load(tmp_path, environ={})


def test_non_utf8_toml_is_refused(tmp_path: Path) -> None:
    (tmp_path / "govtrust.toml").write_bytes('[pki]\norganization = "北京"\n'.encode("gbk"))
    with pytest.raises(ConfigError):
        Config.load(tmp_path, environ={})


@pytest.mark.parametrize("text", ["[nosuch]\nx = 1\n", "[database]\npassword = 'x'\n",
                                  "database = 3\n"])
def test_unknown_section_or_key_is_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / "govtrust.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError):
        Config.load(tmp_path, environ={})


def test_secrets_are_generated_0600_and_never_in_the_toml(tmp_path: Path) -> None:
    config = Config.load(tmp_path, environ={})
    write_config(tmp_path, default_sections(tmp_path))
    made = config.ensure_secrets()
    assert sorted(made) == sorted(SECRET_NAMES)
    assert stat.S_IMODE(config.secrets_dir.stat().st_mode) == 0o700
    toml = (tmp_path / "govtrust.toml").read_text(encoding="utf-8")
    for name in SECRET_NAMES:
        path = config.secrets_dir / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        value = config.secret(name)
        assert len(value) >= 40
        assert value not in toml
    assert config.ensure_secrets() == []  # idempotent: nothing regenerated


def test_secret_from_environment_and_file_variable(tmp_path: Path) -> None:
    other = tmp_path / "pw"
    other.write_text("from-file\n", encoding="utf-8")
    config = Config.load(tmp_path, environ={
        "GOVTRUST_SECRET_CA_PASSPHRASE": "from-env",
        "GOVTRUST_SECRET_COOKIE_KEY_FILE": str(other),
    })
    assert config.secret("ca-passphrase") == "from-env"
    assert config.secret("cookie-key") == "from-file"


def test_missing_or_empty_secret_is_a_clear_error(tmp_path: Path) -> None:
    config = Config.load(tmp_path, environ={})
    with pytest.raises(ConfigError, match="govtrust init"):
        config.secret("otp-key")
    config.secrets_dir.mkdir()
    (config.secrets_dir / "otp-key").write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="empty"):
        config.secret("otp-key")
