"""``govtrust otp``: enroll, activate, verify, status, recovery-codes, reset (with --json)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pyotp
from click.testing import CliRunner, Result

from directory.errors import NotFound
from directory.model import Person
from idp.runtime.otp_cli import otp
from idp.runtime.services import Services
from tests.fixtures.idp import FakeDirectory, make_services


class People:
    """A directory stand-in for ``show`` only (the CLI's one lookup)."""

    def show(self, uid: str) -> Person:
        if uid != "zhangwei":
            raise NotFound("person", uid)
        return Person(uid="zhangwei", dn="uid=zhangwei,ou=people", entry_uuid="uuid-zhangwei",
                      display_name="张伟", department=("市财政局", "预算处"))


def services(tmp_path: Path, json_output: bool = True) -> Services:
    s = make_services(tmp_path / "home", "https://127.0.0.1:8443", FakeDirectory())
    s.json = json_output
    s.directory = People()  # type: ignore[assignment]
    return s


def invoke(s: Services, *args: str) -> Result:
    return CliRunner().invoke(otp, list(args), obj=s)


def ok(s: Services, *args: str) -> Any:
    result = invoke(s, *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_enroll_activate_verify_reset(tmp_path: Path) -> None:
    s = services(tmp_path)
    enrolled = ok(s, "enroll", "zhangwei")
    assert enrolled["uri"].startswith("otpauth://totp/GovTrust:zhangwei?")
    secret = enrolled["secret"]
    activated = ok(s, "activate", "zhangwei", pyotp.TOTP(secret).at(time.time() - 30))
    assert activated["result"] == "ok"
    code = subprocess.run(["oathtool", "--totp", "-b", secret], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert ok(s, "verify", "zhangwei", code)["result"] == "ok"
    again = invoke(s, "verify", "zhangwei", code)
    assert again.exit_code == 1 and json.loads(again.output)["result"] == "replayed"
    codes = ok(s, "recovery-codes", "zhangwei")["codes"]
    assert len(codes) == 10
    status = ok(s, "status", "zhangwei")
    assert status["active"] and status["recovery_codes_left"] == 10
    assert ok(s, "reset", "zhangwei")["removed"] is True
    assert not ok(s, "status", "zhangwei")["enrolled"]
    s.close()


def test_enroll_with_activate_and_text_output(tmp_path: Path) -> None:
    s = services(tmp_path, json_output=False)
    result = invoke(s, "enroll", "zhangwei", "--activate", "12345x")
    assert result.exit_code == 1
    assert "otpauth://totp/GovTrust:zhangwei" in result.output
    assert "▀" in result.output or "█" in result.output
    assert "six digits" in result.output
    s.close()


def test_unknown_person_and_bad_codes(tmp_path: Path) -> None:
    s = services(tmp_path)
    result = invoke(s, "enroll", "nobody")
    assert result.exit_code != 0 and "nobody" in result.output
    assert json.loads(invoke(s, "verify", "zhangwei", "123456").output)["result"] \
        == "not_enrolled"
    ok(s, "enroll", "zhangwei")
    again = invoke(s, "enroll", "zhangwei")  # a pending secret may be replaced
    assert again.exit_code == 0
    s.close()
