"""Changing, forcing and resetting passwords against a real slapd's ppolicy:
an administrator's reset asks for a change (changeAfterReset), an expired
password can still be changed by its owner, a reset after another proof checks
the history, and every change spends the password state a pending change holds."""

from __future__ import annotations

import ldap
import pytest
from ldap.controls import RequestControl

from directory.errors import WeakPassword, WrongPassword
from directory.model import AuthResult
from directory.service import DirectoryService
from directory.slapd import ManagedSlapd

pytestmark = pytest.mark.slapd
PASSWORD = "Bj-Gov-2024-Secure!"
NEW = "Bj-Gov-2030-Changed!"
# The Relax Rules control: lets the rootdn write NO-USER-MODIFICATION pwdChangedTime.
RELAX = RequestControl("1.3.6.1.4.1.4203.666.5.12", True)


def person(svc: DirectoryService, uid: str = "sunli") -> str:
    svc.ensure_department("市公安局")
    svc.add_person(uid=uid, name="孙丽", department="市公安局", password=PASSWORD)
    return svc.gateway.person_dn(uid)


def expire(server: ManagedSlapd, dn: str) -> None:
    """Date the password's change far back, past pwdMaxAge (the rootdn, Relax Rules)."""
    conn = ldap.initialize(server.uri)
    conn.simple_bind_s(server.settings.bind_dn, server.settings.bind_password)
    conn.modify_ext_s(dn, [(ldap.MOD_REPLACE, "pwdChangedTime", [b"20000101000000Z"])],
                      serverctrls=[RELAX])
    conn.unbind_s()


def test_first_password_needs_no_change(directory_service: DirectoryService) -> None:
    person(directory_service)
    assert directory_service.authenticate("sunli", PASSWORD).result is AuthResult.OK


def test_admin_reset_asks_for_a_change_then_the_own_change_clears_it(
        directory_service: DirectoryService) -> None:
    svc = directory_service
    person(svc)
    svc.set_password("sunli", "Reset-By-Admin-2025!", actor="wangfang")
    assert svc.authenticate("sunli", "Reset-By-Admin-2025!").result is AuthResult.MUST_CHANGE
    svc.change_password("sunli", "Reset-By-Admin-2025!", NEW)
    # re-hashed to Argon2id by the rootdn without setting pwdReset again
    assert svc.authenticate("sunli", NEW).result is AuthResult.OK


def test_expired_password_is_reported_only_with_the_right_password(
        slapd: ManagedSlapd, directory_service: DirectoryService) -> None:
    svc = directory_service
    dn = person(svc)
    expire(slapd, dn)
    assert svc.authenticate("sunli", PASSWORD).result is AuthResult.PASSWORD_EXPIRED
    assert svc.authenticate("sunli", "Wrong-Gov-2024-pass!").result is AuthResult.BAD_CREDENTIALS


def test_expired_password_can_be_changed_by_its_owner(
        slapd: ManagedSlapd, directory_service: DirectoryService) -> None:
    svc = directory_service
    dn = person(svc)
    expire(slapd, dn)
    svc.change_password("sunli", PASSWORD, NEW)
    assert svc.authenticate("sunli", NEW).result is AuthResult.OK


def test_expired_password_change_refused_leaves_it_expired(
        slapd: ManagedSlapd, directory_service: DirectoryService) -> None:
    svc = directory_service
    dn = person(svc)
    expire(slapd, dn)
    with pytest.raises(WeakPassword) as err:
        svc.change_password("sunli", PASSWORD, PASSWORD)  # the current one: in history
    assert err.value.reasons == ("passwordInHistory",)
    # the temporary pwdReset is gone again: still expired, not "must change"
    assert svc.authenticate("sunli", PASSWORD).result is AuthResult.PASSWORD_EXPIRED


def test_wrong_old_password_on_expired_is_wrong_password(
        slapd: ManagedSlapd, directory_service: DirectoryService) -> None:
    svc = directory_service
    dn = person(svc)
    expire(slapd, dn)
    with pytest.raises(WrongPassword):
        svc.change_password("sunli", "Wrong-Gov-2024-pass!", NEW)


def test_reset_after_another_proof_checks_history(directory_service: DirectoryService) -> None:
    svc = directory_service
    person(svc)
    with pytest.raises(WeakPassword) as current:
        svc.reset_password("sunli", PASSWORD, proof="swk")
    assert current.value.reasons == ("passwordInHistory",)
    with pytest.raises(WeakPassword) as weak:
        svc.reset_password("sunli", "weak", proof="swk")
    assert "too_short" in weak.value.reasons
    svc.reset_password("sunli", NEW, proof="swk")
    assert svc.authenticate("sunli", NEW).result is AuthResult.OK  # no change asked
    svc.reset_password("sunli", "Bj-Gov-2031-Another!", proof="swk")
    with pytest.raises(WeakPassword) as earlier:
        svc.reset_password("sunli", PASSWORD, proof="swk")  # now only in pwdHistory
    assert earlier.value.reasons == ("passwordInHistory",)


def test_password_state_changes_with_every_change(directory_service: DirectoryService) -> None:
    svc = directory_service
    person(svc)
    first = svc.password_state("sunli")
    assert first is not None and first == svc.password_state("sunli")
    svc.change_password("sunli", PASSWORD, NEW)
    assert svc.password_state("sunli") not in (None, first)
    assert svc.password_state("nobody") is None
