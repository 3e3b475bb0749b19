"""``govtrust client`` / ``govtrust keys`` and the IdP's init step."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from idp.runtime.cli import cli
from idp.runtime.home import SAMPLE_APP_FILE, _init_idp
from tests.fixtures.idp import FakeDirectory, make_services


def run(home: Path, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["--home", str(home), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_client_commands(tmp_path: Path) -> None:
    home = tmp_path / "home"
    make_services(home, "https://127.0.0.1:8443", FakeDirectory()).close()
    added = run(home, "client", "add", "--name", "预算管理系统", "--redirect-uri",
                "https://budget.example.gov.cn/cb", "--redirect-uri", "http://127.0.0.1:5000/cb",
                "--level", "2", "--first-party")
    assert added["client_secret"] and added["name"] == "预算管理系统"
    assert len(added["redirect_uris"]) == 2
    listed = run(home, "client", "list")
    assert [c["client_id"] for c in listed] == [added["client_id"]]
    assert "client_secret" not in listed[0] and "secret_hash" not in json.dumps(listed)
    rotated = run(home, "client", "rotate-secret", added["client_id"])
    assert rotated["client_secret"] != added["client_secret"]
    public = run(home, "client", "add", "--name", "移动办公", "--redirect-uri",
                 "http://127.0.0.1:7000/cb", "--level", "1", "--public")
    assert public["client_secret"] is None and public["token_endpoint_auth_method"] == "none"
    run(home, "client", "remove", added["client_id"])
    assert len(run(home, "client", "list")) == 1


def test_client_add_refuses_bad_redirect_uri(tmp_path: Path) -> None:
    home = tmp_path / "home"
    make_services(home, "https://127.0.0.1:8443", FakeDirectory()).close()
    result = CliRunner().invoke(cli, ["--home", str(home), "client", "add", "--name", "x",
                                      "--redirect-uri", "http://apps.example.gov.cn/*",
                                      "--level", "2"])
    assert result.exit_code != 0 and "redirect_uri" in result.output
    assert run(home, "client", "list") == []


def test_keys_rotate_and_list(tmp_path: Path) -> None:
    home = tmp_path / "home"
    make_services(home, "https://127.0.0.1:8443", FakeDirectory()).close()
    before = run(home, "keys", "list")
    assert sorted((k["alg"], k["state"]) for k in before) == [
        ("ES256", "active"), ("ES256", "next"), ("RS256", "active"), ("RS256", "next")]
    run(home, "keys", "rotate")
    after = {k["kid"]: k["state"] for k in run(home, "keys", "list")}
    for k in before:  # next became active, active became retired (still published)
        assert after[k["kid"]] == {"next": "active", "active": "retired"}[k["state"]]


def test_init_registers_the_sample_app_with_a_private_secret_file(tmp_path: Path) -> None:
    services = make_services(tmp_path / "home", "https://127.0.0.1:8443", FakeDirectory())
    report: dict[str, Any] = {}
    _init_idp(services, True, lambda _: None, report)
    path = services.config.home / SAMPLE_APP_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text(encoding="utf-8"))
    client = services.provider.clients.get(data["client_id"])
    assert client is not None and client.check_client_secret(data["client_secret"])
    assert client.redirect_uris == ("http://127.0.0.1:5000/callback",) and client.first_party
    _init_idp(services, True, lambda _: None, report)  # idempotent
    assert report["sample app"] == "kept" and len(services.provider.clients.list()) == 1
    services.close()
