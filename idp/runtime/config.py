"""Configuration: one TOML file in the home, overridable by ``GOVTRUST_*`` variables.

``govtrust init`` writes ``govtrust.toml``; secrets never go there. Each secret
lives in its own file under ``secrets/`` (mode 0600, generated at init) or comes
from ``GOVTRUST_SECRET_<NAME>`` / a file named by ``GOVTRUST_SECRET_<NAME>_FILE``.

Environment overrides name a section and key: ``GOVTRUST_DATABASE_URL`` sets
``[database] url``; ``GOVTRUST_DIRECTORY_URIS`` (comma-separated) sets
``[directory] uris``. Every value, from the file or the environment, must have
the type of its default (an integer where an integer belongs, a list of strings
for ``uris``): anything else is a :class:`ConfigError` naming the key, at start-up.
Numbers in the environment are ASCII digits only (``²`` and ``３`` are refused).
The file is written with tomli-w, so any string (newlines, quotes, Chinese)
round-trips.
"""

from __future__ import annotations

import os
import re
import secrets as _secrets
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tomli_w

from directory.settings import DirectorySettings
from idp.login.forwarded import InvalidProxyEntry, TrustedProxies

CONFIG_NAME = "govtrust.toml"
SECRETS_DIR = "secrets"

# Every secret the product uses, generated at init when absent.
SECRET_NAMES = (
    "ldap-admin-password",  # rootdn of the managed slapd
    "ldap-service-password",  # read-only service account of the demo apps
    "ca-passphrase",  # encrypts the CA keys in the file key store
    "cookie-key",  # signs session cookies and CSRF tokens
    "otp-key",  # encrypts TOTP secrets at rest
    "client-secret-key",  # keys the hash of OAuth client secrets
    "audit-key",  # reserved for keyed audit digests
)


class ConfigError(Exception):
    """The configuration or a secret is missing or malformed."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


def default_sections(home: Path) -> dict[str, dict[str, Any]]:
    """The defaults, which are also what ``govtrust init`` writes."""
    return {
        "database": {"url": f"sqlite:///{home / 'govtrust.db'}"},
        "directory": {
            "managed": True,
            "uris": ["ldap://127.0.0.1:3389"],
            "base_dn": "dc=beijing,dc=gov,dc=cn",
            "bind_dn": "cn=admin,dc=beijing,dc=gov,dc=cn",
            "oid_arc": "1.3.6.1.4.1.61000.1",
            "realm": "beijing.gov.cn",
            "timeout": 5.0,
            # People's binds (each an Argon2id check in slapd) one process sends at
            # once; the rest wait up to `timeout`, then the login is a 503. 0: no
            # limit. docs/benchmarks.md (issue 11, logins) has what a cap did.
            "concurrent_binds": 0,
        },
        "pki": {
            "public_url": "http://127.0.0.1:8080",
            "listen": "127.0.0.1:8080",
            "key_algorithm": "ec-p256",
            "key_store": "file",
            "pkcs11_module": "/usr/lib/softhsm/libsofthsm2.so",
            "pkcs11_token": "govtrust",
            "organization": "北京市人民政府",
            "country": "CN",
            "ocsp_cache_size": 10_000,
            # An SM2 hierarchy (GM/T 0015, SM3withSM2) beside the default one.
            "sm2": False,
            # The root CRL's lifetime: with an offline root it is signed only at
            # the root ceremony; /readyz warns root_crl_warn_days before its end.
            "root_crl_days": 180,
            "root_crl_warn_days": 30,
        },
        "idp": {
            "issuer": "https://127.0.0.1:8443",
            "listen": "127.0.0.1:8443",
            "workers": 0,  # 0 = one per core
            # Threads per worker (gunicorn gthread: HTTP keep-alive, so a TLS
            # handshake is not paid per request).
            "threads": 4,
            "trusted_proxies": [],
            "session_hours": 8,
            # Times on the pages are shown in this zone (stored and sent as UTC).
            "timezone": "Asia/Shanghai",
            # Signing keys rotate once the active one is this old (0: by hand only).
            "key_rotation_days": 90,
        },
        "certauth": {
            # Client-certificate login (idp.login.certificate): external CAs as
            # [{name, file, rule, hardware_policies}], revocation failing closed.
            "external_cas": [],
            "fail_open": False,
            "header": "X-SSL-Client-Cert",
            "revocation_cache_seconds": 300,
        },
        "kmc": {
            # The key management centre (pki.kmc): recovering someone else's
            # escrowed encryption key needs this many approvals from members of
            # the agents group, each in their own level-3 session.
            "approvals_required": 2,
            "agents_group": "key-recovery-agents",
            "requester_groups": ["security-admins", "key-recovery-agents"],
            "request_hours": 72,
        },
        "serve": {
            # "text" or "json" (one object a line, with the request id).
            "log_format": "text",
            # One line per request on the govtrust.access logger (in log_format,
            # with the request id), written by idp.runtime.edge; gunicorn's own
            # access log stays off.
            "access_log": False,
            # Who may read /metrics on the IdP and PKI apps (addresses or networks,
            # as seen by the app: behind nginx, nginx's address).
            "metrics_allow": ["127.0.0.1", "::1"],
            # `govtrust serve` restarts a child that died (slapd, a gunicorn master)
            # after restart_backoff seconds, doubled for each further death; more
            # than restart_limit deaths of one child within restart_window seconds
            # and serve exits non-zero, so the service manager restarts everything.
            "restart_limit": 5,
            "restart_window": 60.0,
            "restart_backoff": 0.5,
        },
        "demo": {
            # Where `govtrust demo` runs the sample department app.
            "sample_app_url": "http://127.0.0.1:5000",
        },
    }


# What each list setting holds (its default may be empty, so it cannot tell).
LIST_ITEMS: Mapping[tuple[str, str], type] = {
    ("directory", "uris"): str,
    ("idp", "trusted_proxies"): str,
    ("certauth", "external_cas"): dict,
    ("kmc", "requester_groups"): str,
    ("serve", "metrics_allow"): str,
}

# ASCII only: str.isdigit() and int()/float() accept Unicode digits ("²", "３", "٣"),
# signs, spaces and underscores. Bounded so a megabyte of digits is refused unread.
_ASCII_INT = re.compile(r"[0-9]{1,18}")
_ASCII_NUMBER = re.compile(r"[0-9]{1,18}(\.[0-9]{1,18})?")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _kind(value_type: type) -> str:
    """How an error names a type: "an integer", not "int"."""
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(value_type, value_type.__name__)


def _file_key(section: str, key: str) -> str:
    return f"[{section}] {key}"


def _check_type(key: str, value: Any, default: Any, items: type | None) -> Any:
    """``value`` if it has the type of ``default`` (an int is accepted as a float),
    else a ConfigError naming ``key``; list items are checked against ``items``."""
    # bool is an int to Python, and `workers = true` is not 1 worker.
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, list):
        ok = isinstance(value, list)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(key, f"expected {_kind(type(default))}, got {value!r}")
    if isinstance(value, list) and items is not None:
        for index, item in enumerate(value):
            if not isinstance(item, items) or isinstance(item, bool):
                raise ConfigError(key, f"item {index}: expected {_kind(items)}, got {item!r}")
    return value


def _coerce(key: str, raw: str, default: Any) -> Any:
    """An environment variable's text as the type of ``default``."""
    if isinstance(default, bool):
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ConfigError(key, f"expected a boolean, got {raw!r}")
    if isinstance(default, int):
        if not _ASCII_INT.fullmatch(raw):
            raise ConfigError(key, f"expected an integer (ASCII digits), got {raw!r}")
        return int(raw)
    if isinstance(default, float):
        if not _ASCII_NUMBER.fullmatch(raw):
            raise ConfigError(key, f"expected a number (ASCII digits), got {raw!r}")
        return float(raw)
    if isinstance(default, list):
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def merge(
    defaults: Mapping[str, Mapping[str, Any]],
    from_file: Mapping[str, Any],
    environ: Mapping[str, str],
) -> dict[str, dict[str, Any]]:
    """Defaults, then the TOML, then ``GOVTRUST_<SECTION>_<KEY>`` variables, each value
    checked against the type of its default."""
    merged = {name: dict(values) for name, values in defaults.items()}
    for section, values in from_file.items():
        if section not in merged:
            raise ConfigError(f"[{section}]", "unknown section")
        if not isinstance(values, Mapping):
            raise ConfigError(f"[{section}]", "must be a table")
        for key, value in values.items():
            if key not in merged[section]:
                raise ConfigError(_file_key(section, key), "unknown setting")
            merged[section][key] = _check_type(_file_key(section, key), value,
                                               defaults[section][key],
                                               LIST_ITEMS.get((section, key)))
    for section, values in merged.items():
        for key in list(values):
            env = f"GOVTRUST_{section}_{key}".upper()
            if env in environ:
                default = defaults[section][key]
                values[key] = _check_type(env, _coerce(env, environ[env], default), default,
                                          LIST_ITEMS.get((section, key)))
    _check_values(merged)
    return merged


def _check_values(sections: Mapping[str, Mapping[str, Any]]) -> None:
    """Values whose type is right but whose content can still be wrong, refused at
    load time so a server never starts (or fails a request) on them."""
    try:
        TrustedProxies.parse(sections["idp"]["trusted_proxies"])
    except InvalidProxyEntry as exc:
        raise ConfigError("[idp] trusted_proxies", str(exc)) from None
    serve = sections["serve"]
    if serve["log_format"] not in ("text", "json"):
        raise ConfigError("[serve] log_format", f"must be \"text\" or \"json\", "
                          f"not {serve['log_format']!r}")
    import ipaddress

    for entry in serve["metrics_allow"]:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError("[serve] metrics_allow",
                              f"{entry!r} is not an address or network") from None


@dataclass(frozen=True)
class Config:
    """Everything the composition root needs, built once and passed down."""

    home: Path
    sections: Mapping[str, Mapping[str, Any]]
    environ: Mapping[str, str]

    # -- loading -----------------------------------------------------------
    @classmethod
    def load(cls, home: Path, environ: Mapping[str, str] | None = None) -> Config:
        env = dict(os.environ if environ is None else environ)
        home = home.resolve()
        path = home / CONFIG_NAME
        from_file: dict[str, Any] = {}
        if path.exists():
            try:
                from_file = tomllib.loads(path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(str(path), f"not valid TOML: {exc}") from None
        return cls(home=home, sections=merge(default_sections(home), from_file, env), environ=env)

    def get(self, section: str, key: str) -> Any:
        return self.sections[section][key]

    @property
    def initialized(self) -> bool:
        return (self.home / CONFIG_NAME).exists()

    # -- secrets -----------------------------------------------------------
    @property
    def secrets_dir(self) -> Path:
        return self.home / SECRETS_DIR

    def secret(self, name: str) -> str:
        """A secret from the environment, a file it names, or ``secrets/<name>``."""
        var = "GOVTRUST_SECRET_" + name.upper().replace("-", "_")
        if var in self.environ:
            return self.environ[var]
        file_var = var + "_FILE"
        path = Path(self.environ[file_var]) if file_var in self.environ else self.secrets_dir / name
        try:
            value = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise ConfigError(name, f"secret file {path} is missing (run govtrust init)") from None
        if not value:
            raise ConfigError(name, f"secret file {path} is empty")
        return value

    def secret_bytes(self, name: str) -> bytes:
        return self.secret(name).encode("utf-8")

    def ensure_secrets(self) -> list[str]:
        """Generate every missing secret file with mode 0600; return the names made."""
        self.secrets_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.secrets_dir, stat.S_IRWXU)
        made = []
        for name in SECRET_NAMES:
            path = self.secrets_dir / name
            if path.exists():
                continue
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(_secrets.token_urlsafe(32) + "\n")
            made.append(name)
        return made

    # -- typed views for the packages below ----------------------------------
    @property
    def database_url(self) -> str:
        return str(self.get("database", "url"))

    @property
    def trusted_proxies(self) -> TrustedProxies:
        """``[idp] trusted_proxies``, parsed (checked when the configuration loaded)."""
        return TrustedProxies.parse(self.get("idp", "trusted_proxies"))

    def concurrent_binds(self) -> int:
        """``[directory] concurrent_binds``: 0 (no limit) or a cap per process."""
        value = int(self.get("directory", "concurrent_binds"))
        if value < 0:
            raise ConfigError("[directory] concurrent_binds", "0 (no limit) or more")
        return value

    def directory_settings(self) -> DirectorySettings:
        d = self.sections["directory"]
        return DirectorySettings(
            uris=tuple(d["uris"]),
            base_dn=str(d["base_dn"]),
            bind_dn=str(d["bind_dn"]),
            bind_password=self.secret("ldap-admin-password"),
            managed=bool(d["managed"]),
            data_dir=self.home / "slapd",
            timeout=float(d["timeout"]),
            concurrent_binds=self.concurrent_binds(),
            oid_arc=str(d["oid_arc"]),
            realm=str(d["realm"]),
        )


def write_config(home: Path, sections: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write ``govtrust.toml`` (no secrets in it, by construction) with tomli-w, which
    escapes what a hand-made writer missed (a newline in a value made invalid TOML)."""
    try:
        body = tomli_w.dumps({name: dict(values) for name, values in sections.items()})
    except TypeError as exc:  # None, a set, an object: TOML has no spelling for them
        raise ConfigError(CONFIG_NAME, f"cannot be written: {exc}") from None
    path = home / CONFIG_NAME
    path.write_text("# GovTrust configuration. Secrets live in secrets/, never here.\n\n"
                    + body, encoding="utf-8")
    return path


def time_zone(name: str) -> tzinfo:
    """The zone named by ``[idp] timezone``; an unknown name is a configuration error."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("idp.timezone", f"unknown time zone {name!r}") from None
