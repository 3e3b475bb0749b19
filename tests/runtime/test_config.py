"""Configuration: TOML + GOVTRUST_* overrides, secrets in 0600 files, bad input refused."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path
from typing import Any

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


# -- writing: tomli-w spells every string validly --------------------------------------
AWKWARD = {
    "newline": "北京市人民政府\n信息中心",
    "carriage_return": "a\r\nb",
    "double_quote": 'say "你好"',
    "triple_single_quotes": "'''x'''",
    "backslash": "C:\\govtrust\\",
    "chinese": "北京市人民政府办公厅（政务服务管理局）",
    "tab_and_control": "a\tb\x01c\x7f",
    "toml_lookalike": '"\n[database]\nurl = "sqlite:////tmp/evil.db',
    "emoji_and_astral": "😀𠀀",
}


@pytest.mark.parametrize("value", list(AWKWARD.values()), ids=list(AWKWARD))
def test_awkward_string_round_trips(tmp_path: Path, value: str) -> None:
    sections = default_sections(tmp_path)
    sections["pki"]["organization"] = value
    sections["directory"]["uris"] = [value]
    path = write_config(tmp_path, sections)
    tomllib.loads(path.read_text(encoding="utf-8"))  # valid TOML
    config = Config.load(tmp_path, environ={})
    assert config.get("pki", "organization") == value
    assert config.get("directory", "uris") == [value]
    # nothing the value spelled became a setting of its own
    assert config.database_url == f"sqlite:///{tmp_path / 'govtrust.db'}"


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "proxy.example.cn", "", "10.0.0.1, 10.0.0.2"])
def test_malformed_trusted_proxy_is_a_config_error_at_load(tmp_path: Path, entry: str) -> None:
    sections = default_sections(tmp_path)
    sections["idp"]["trusted_proxies"] = ["127.0.0.1", entry]
    write_config(tmp_path, sections)
    with pytest.raises(ConfigError) as err:
        Config.load(tmp_path, environ={})
    assert err.value.key == "[idp] trusted_proxies" and "item 1" in err.value.reason


def test_malformed_trusted_proxy_from_the_environment_is_a_config_error(
        tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        Config.load(tmp_path, environ={"GOVTRUST_IDP_TRUSTED_PROXIES": "10.0.0.0/8,nginx"})
    assert err.value.key == "[idp] trusted_proxies" and "'nginx'" in err.value.reason


def test_trusted_proxies_are_parsed_once_into_networks(tmp_path: Path) -> None:
    config = Config.load(tmp_path, environ={"GOVTRUST_IDP_TRUSTED_PROXIES":
                                            "10.0.0.0/8, fd00::/8"})
    assert config.trusted_proxies.trusts("10.2.3.4") and config.trusted_proxies.trusts("fd00::1")
    assert not config.trusted_proxies.trusts("192.0.2.1")


def test_unwritable_value_is_a_config_error(tmp_path: Path) -> None:
    sections = default_sections(tmp_path)
    sections["pki"]["organization"] = None
    with pytest.raises(ConfigError) as err:
        write_config(tmp_path, sections)
    assert err.value.key == "govtrust.toml"
    assert not (tmp_path / "govtrust.toml").exists()


# -- reading: each value has the type of its default -------------------------------------
WRONG_TYPES: dict[str, tuple[str, str]] = {
    "string_for_integer": ('[idp]\nworkers = "abc"\n',
                           "[idp] workers: expected an integer, got 'abc'"),
    "float_for_integer": ("[idp]\nthreads = 4.5\n",
                          "[idp] threads: expected an integer, got 4.5"),
    "boolean_for_integer": ("[idp]\nsession_hours = true\n",
                            "[idp] session_hours: expected an integer, got True"),
    "string_for_number": ('[directory]\ntimeout = "5"\n',
                          "[directory] timeout: expected a number, got '5'"),
    "boolean_for_number": ("[directory]\ntimeout = false\n",
                           "[directory] timeout: expected a number, got False"),
    "string_for_boolean": ('[directory]\nmanaged = "yes"\n',
                           "[directory] managed: expected a boolean, got 'yes'"),
    "integer_for_boolean": ("[certauth]\nfail_open = 1\n",
                            "[certauth] fail_open: expected a boolean, got 1"),
    "integer_for_string": ("[idp]\nlisten = 8443\n",
                           "[idp] listen: expected a string, got 8443"),
    "list_for_string": ('[database]\nurl = ["sqlite://"]\n',
                        "[database] url: expected a string, got ['sqlite://']"),
    "table_for_string": ('[idp]\nissuer = { host = "x" }\n',
                         "[idp] issuer: expected a string, got {'host': 'x'}"),
    "string_for_list": ('[directory]\nuris = "ldap://a:1"\n',
                        "[directory] uris: expected a list, got 'ldap://a:1'"),
    "integer_in_string_list": ('[directory]\nuris = ["ldap://a:1", 389]\n',
                               "[directory] uris: item 1: expected a string, got 389"),
    "string_in_table_list": ('[certauth]\nexternal_cas = ["ca.pem"]\n',
                             "[certauth] external_cas: item 0: expected a table, got 'ca.pem'"),
    "string_for_section": ("database = 3\n", "[database]: must be a table"),
}


@pytest.mark.parametrize(("text", "message"), list(WRONG_TYPES.values()), ids=list(WRONG_TYPES))
def test_wrong_type_in_file_is_refused(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "govtrust.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        Config.load(tmp_path, environ={})
    assert str(err.value) == message
    assert err.value.key == message.split(":")[0]


def test_integer_where_a_number_belongs_is_a_float(tmp_path: Path) -> None:
    (tmp_path / "govtrust.toml").write_text("[directory]\ntimeout = 5\n", encoding="utf-8")
    timeout = Config.load(tmp_path, environ={}).get("directory", "timeout")
    assert timeout == 5.0 and isinstance(timeout, float)


# -- environment: numbers are ASCII digits -----------------------------------------------
WRONG_ENV: dict[str, tuple[str, str]] = {
    "superscript_two_integer": ("GOVTRUST_IDP_WORKERS", "²"),
    "fullwidth_integer": ("GOVTRUST_IDP_SESSION_HOURS", "８"),
    "arabic_indic_integer": ("GOVTRUST_IDP_THREADS", "٤"),
    "signed_integer": ("GOVTRUST_IDP_THREADS", "+4"),
    "negative_integer": ("GOVTRUST_IDP_WORKERS", "-1"),
    "underscored_integer": ("GOVTRUST_CERTAUTH_REVOCATION_CACHE_SECONDS", "3_00"),
    "spaced_integer": ("GOVTRUST_IDP_THREADS", " 4"),
    "huge_integer": ("GOVTRUST_IDP_WORKERS", "9" * 5000),
    "superscript_number": ("GOVTRUST_DIRECTORY_TIMEOUT", "2.²"),
    "fullwidth_number": ("GOVTRUST_DIRECTORY_TIMEOUT", "２.５"),
    "infinite_number": ("GOVTRUST_DIRECTORY_TIMEOUT", "inf"),
    "nan_number": ("GOVTRUST_DIRECTORY_TIMEOUT", "nan"),
    "exponent_number": ("GOVTRUST_DIRECTORY_TIMEOUT", "1e3"),
    "list_of_tables_from_text": ("GOVTRUST_CERTAUTH_EXTERNAL_CAS", "ca.pem"),
}


@pytest.mark.parametrize(("var", "value"), list(WRONG_ENV.values()), ids=list(WRONG_ENV))
def test_wrong_environment_value_is_refused(tmp_path: Path, var: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        Config.load(tmp_path, environ={var: value})
    assert err.value.key == var
    assert str(err.value).startswith(f"{var}: ")


@pytest.mark.parametrize(("var", "value", "want"), [
    ("GOVTRUST_IDP_WORKERS", "0", 0),
    ("GOVTRUST_IDP_THREADS", "16", 16),
    ("GOVTRUST_DIRECTORY_TIMEOUT", "3", 3.0),
    ("GOVTRUST_DIRECTORY_TIMEOUT", "0.25", 0.25),
])
def test_ascii_environment_numbers_are_accepted(tmp_path: Path, var: str, value: str,
                                                want: Any) -> None:
    section, key = var.removeprefix("GOVTRUST_").lower().split("_", 1)
    got = Config.load(tmp_path, environ={var: value}).get(section, key)
    assert got == want and type(got) is type(want)


def test_concurrent_binds_default_to_no_limit_and_refuse_a_negative(tmp_path: Path) -> None:
    assert Config.load(tmp_path, environ={}).concurrent_binds() == 0
    two = Config.load(tmp_path, environ={"GOVTRUST_DIRECTORY_CONCURRENT_BINDS": "2"})
    assert two.concurrent_binds() == 2
    (tmp_path / "govtrust.toml").write_text("[directory]\nconcurrent_binds = -1\n")
    negative = Config.load(tmp_path, environ={})
    with pytest.raises(ConfigError, match="concurrent_binds"):
        negative.concurrent_binds()
