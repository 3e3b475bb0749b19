"""Authentication against a real slapd: ppolicy lockout, failover across URIs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from directory import entries, pwhash
from directory.gateway import LdapGateway
from directory.model import AuthResult
from directory.service import DirectoryService
from directory.slapd import ManagedSlapd
from policies.passwords import load_policy
from tests.fixtures.slapd import make_slapd

pytestmark = pytest.mark.slapd
PASSWORD = "Bj-Gov-2024-Secure!"


def test_wrong_passwords_up_to_the_limit_lock_the_account(
        directory_service: DirectoryService) -> None:
    svc = directory_service
    svc.ensure_department("市公安局")
    svc.add_person(uid="sunli", name="孙丽", department="市公安局", password=PASSWORD)
    gw = svc.gateway
    limit = load_policy().max_failures
    for _ in range(limit):
        assert gw.authenticate("sunli", "Not-the-password-9").result is AuthResult.BAD_CREDENTIALS
    # slapd itself now refuses the right password, and says why in the ppolicy control.
    outcome = gw.authenticate("sunli", PASSWORD)
    assert outcome.result is AuthResult.LOCKED and outcome.person is None


def test_policy_is_pushed_into_slapd(directory_service: DirectoryService) -> None:
    svc = directory_service
    stricter = dataclasses.replace(load_policy(), max_failures=2)
    svc.apply_password_policy(stricter)
    try:
        dn = svc.gateway.child_dn(svc.gateway.container("policies"), "cn", "default")
        attrs = svc.gateway.read(dn) or {}
        assert attrs["pwdMaxFailure"] == ["2"] and attrs["pwdLockout"] == ["TRUE"]
        assert attrs["pwdMinLength"] == ["12"] and attrs["pwdInHistory"] == ["5"]
        svc.ensure_department("市公安局")
        svc.add_person(uid="heyan", name="何艳", department="市公安局", password=PASSWORD)
        for _ in range(2):
            svc.gateway.authenticate("heyan", "Not-the-password-9")
        assert svc.gateway.authenticate("heyan", PASSWORD).result is AuthResult.LOCKED
    finally:
        svc.apply_password_policy(load_policy())


def test_failover_to_the_second_uri(tmp_path: Path) -> None:
    first = make_slapd(tmp_path / "a", password="Failover-admin-1")
    second = make_slapd(tmp_path / "b", password="Failover-admin-1")
    try:
        for server in (first, second):
            server.start()
            server.ensure_base()
        # The same entry, same password hash, on both: what a replica would hold.
        dn = f"uid=gaojie,ou=people,{first.settings.base_dn}"
        attrs = {"objectClass": entries.PERSON_CLASSES, "uid": ["gaojie"],
                 "userPassword": [pwhash.hash_password(PASSWORD)],
                 **entries.person_attributes(uid="gaojie", name="高杰", department=("市公安局",))}
        raw = {k: [v.encode() for v in vs] for k, vs in attrs.items()}
        for server in (first, second):
            server.load_entries([(dn, raw)])
        settings = dataclasses.replace(first.settings, uris=(first.uri, second.uri), timeout=2.0)
        gw = LdapGateway(settings)
        assert gw.authenticate("gaojie", PASSWORD).ok
        first.stop()
        person = gw.find_person("gaojie")
        assert person is not None and person.display_name == "高杰"
        assert gw.authenticate("gaojie", PASSWORD).ok
        assert gw.authenticate("gaojie", "Wrong-password-77").result is AuthResult.BAD_CREDENTIALS
        # A fresh gateway (no pooled connections) skips the dead provider too.
        fresh = LdapGateway(settings)
        assert fresh.authenticate("gaojie", PASSWORD).ok
        second.stop()
        assert gw.authenticate("gaojie", PASSWORD).result is AuthResult.UNAVAILABLE
        gw.close()
        fresh.close()
    finally:
        first.stop()
        second.stop()


def test_second_start_reuses_the_data_dir(tmp_path: Path) -> None:
    server = make_slapd(tmp_path, password="Restart-admin-1")
    try:
        assert server.start() is True
        assert server.ensure_base() != []
        assert server.start() is False  # already running: not started twice
        server.stop()
        assert not server.is_running()
        assert server.start() is True
        assert server.ensure_base() == []  # the data survived the restart
    finally:
        server.stop()


def test_failover_to_a_syncrepl_replica(tmp_path: Path) -> None:
    """Provider + consumer (RFC 4533 syncrepl), as the scaled-out deployment runs."""
    from directory.events import RecordingPublisher
    from directory.slapd import ManagedSlapd
    from tests.fixtures.slapd import make_settings

    provider = make_slapd(tmp_path / "provider", password="Replica-admin-1")
    consumer = ManagedSlapd(make_settings(tmp_path / "consumer", password="Replica-admin-1"),
                            replica_of=provider.uri)

    class NullAudit:
        def record(self, **_: object) -> None:
            pass

    try:
        provider.start()
        provider.ensure_base()
        consumer.start()
        settings = dataclasses.replace(provider.settings, uris=(provider.uri, consumer.uri),
                                       timeout=2.0)
        gw = LdapGateway(settings)
        svc = DirectoryService(settings, gw, NullAudit(), RecordingPublisher())
        svc.ensure_department("市卫生健康委员会/医政医管处")
        svc.add_person(uid="majun", name="马军", department="市卫生健康委员会/医政医管处",
                       password=PASSWORD)
        svc.add_group("doctors")
        svc.add_member("doctors", "majun")
        replica = LdapGateway(dataclasses.replace(settings, uris=(consumer.uri,)))
        import time

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            seen = replica.find_person("majun")
            if seen is not None and seen.groups == ("doctors",):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the replica did not receive the person in 15 s")
        provider.stop()
        person = gw.find_person("majun")
        assert person is not None and person.display_name == "马军"
        assert person.groups == ("doctors",)
        assert gw.authenticate("majun", PASSWORD).ok
        assert [p.uid for p in svc.search(name="马")] == ["majun"]
        gw.close()
        replica.close()
    finally:
        consumer.stop()
        provider.stop()


def test_gateway_survives_a_fork(directory_service: DirectoryService) -> None:
    """A pre-forking WSGI server forks after the gateway was used: the child must not
    share the parent's pooled sockets."""
    import os

    svc = directory_service
    svc.ensure_department("市公安局")
    svc.add_person(uid="wujun", name="吴军", department="市公安局", password=PASSWORD)
    assert svc.authenticate("wujun", PASSWORD).ok  # fills both pools in the parent
    pid = os.fork()
    if pid == 0:  # the child: report by exit status only, never return into pytest
        code = 1
        try:
            if svc.authenticate("wujun", PASSWORD).ok and svc.show("wujun").uid == "wujun":
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert svc.authenticate("wujun", PASSWORD).ok  # and the parent's pool still works


def test_a_batch_after_a_directory_restart_runs_on_a_fresh_connection(tmp_path: Path) -> None:
    """A pooled connection whose server restarted is dead; a batch (an import) must
    not start on it: the pool checks it and connects anew."""
    server = make_slapd(tmp_path, password="Batch-restart-1")
    try:
        server.start()
        server.ensure_base()
        gateway = LdapGateway(server.settings)
        with gateway.pool.connection() as conn:  # one connection now pooled
            conn.whoami_s()
        server.stop()
        server.start()  # the pooled connection's socket is now dead
        with gateway.pool.connection() as conn:
            assert conn.whoami_s()
    finally:
        server.stop()


def _count_ldap_operations(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count every request python-ldap sends (on any connection, pooled or not): a
    spy on the real client, the real slapd still answers each one."""
    import ldap.ldapobject

    counts: dict[str, int] = {}
    cls = ldap.ldapobject.SimpleLDAPObject
    for name in ("simple_bind", "search_ext", "modify_ext", "compare_ext", "add_ext",
                 "delete_ext", "rename", "passwd", "extop"):
        original = getattr(cls, name)

        def spy(self: object, *args: object, _name: str = name, _original: object = original,
                **kwargs: object) -> object:
            counts[_name] = counts.get(_name, 0) + 1
            return _original(self, *args, **kwargs)  # type: ignore[operator]

        monkeypatch.setattr(cls, name, spy)
    return counts


def test_a_password_login_is_one_search_and_one_bind(
        directory_service: DirectoryService, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a login costs the directory (issue 11): one indexed search for the entry
    and one bind as the person, the only Argon2 verification. No second bind, no
    rebind of GovTrust's own DN (its hash is Argon2 too), no modify, no compare."""
    svc = directory_service
    svc.ensure_department("市公安局")
    svc.add_person(uid="fangyu", name="方宇", department="市公安局", password=PASSWORD)
    assert svc.authenticate("fangyu", PASSWORD).ok  # both pools hold a connection now
    counts = _count_ldap_operations(monkeypatch)
    assert svc.authenticate("fangyu", PASSWORD).ok
    assert counts == {"search_ext": 1, "simple_bind": 1}
    counts.clear()
    assert svc.authenticate("fangyu", "Not-the-password-9").result is AuthResult.BAD_CREDENTIALS
    assert counts == {"search_ext": 1, "simple_bind": 1}
    counts.clear()
    # After a failure slapd's ppolicy clears pwdFailureTime itself on the next good bind.
    assert svc.authenticate("fangyu", PASSWORD).ok
    assert counts == {"search_ext": 1, "simple_bind": 1}
    counts.clear()
    # An unknown uid costs the same bind (a wrong password and a stranger look alike).
    assert svc.authenticate("nobody", PASSWORD).result is AuthResult.BAD_CREDENTIALS
    assert counts == {"search_ext": 1, "simple_bind": 1}


def test_binds_past_the_slots_wait_and_then_count_as_unavailable(
        slapd: ManagedSlapd, directory_service: DirectoryService,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``concurrent_binds`` caps the Argon2 verifications one process has in flight:
    a bind that finds every slot taken for ``timeout`` seconds is not sent, and the
    login is "unavailable" (a 503 with Retry-After at the web edge, which counts only
    a wrong password against the throttle): no ppolicy failure, no success."""
    svc = directory_service
    svc.ensure_department("市公安局")
    svc.add_person(uid="qinfang", name="秦芳", department="市公安局", password=PASSWORD)
    settings = dataclasses.replace(slapd.settings, concurrent_binds=1, timeout=0.2)
    gw = LdapGateway(settings)
    try:
        assert gw.authenticate("qinfang", PASSWORD).ok
        slots = gw.pool._bind_slots
        assert slots is not None
        assert slots.acquire(blocking=False)  # another thread's bind, still in slapd
        counts = _count_ldap_operations(monkeypatch)
        try:
            assert gw.authenticate("qinfang", PASSWORD).result is AuthResult.UNAVAILABLE
            assert gw.authenticate("qinfang", "Wrong-password-7").result is AuthResult.UNAVAILABLE
            assert counts.get("simple_bind", 0) == 0
        finally:
            slots.release()
        assert gw.authenticate("qinfang", PASSWORD).ok  # the slot is free again
        # Nothing was counted against the person while the binds waited.
        attrs = gw.read(gw.person_dn("qinfang"), ["pwdFailureTime"]) or {}
        assert "pwdFailureTime" not in attrs
    finally:
        gw.close()


def test_bind_slots_are_per_process_after_a_fork(
        slapd: ManagedSlapd, directory_service: DirectoryService) -> None:
    """A pre-forking server forks after the gateway was built: the child's binds do
    not wait for a slot the parent holds."""
    import os

    svc = directory_service
    svc.ensure_department("市公安局")
    svc.add_person(uid="yaolan", name="姚兰", department="市公安局", password=PASSWORD)
    # A child waiting for the parent's slot would fail at the timeout (the slot is
    # never given back in the child); 5 s leaves room for an Argon2id bind on a
    # loaded machine (0.2 s did not, at a load average of 19 on 2 cores).
    gw = LdapGateway(dataclasses.replace(slapd.settings, concurrent_binds=1, timeout=5.0))
    slots = gw.pool._bind_slots
    assert slots is not None and slots.acquire(blocking=False)  # held in the parent
    try:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                if gw.authenticate("yaolan", PASSWORD).ok:
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        slots.release()
        gw.close()
