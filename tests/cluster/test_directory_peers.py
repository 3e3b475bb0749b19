"""Two slapd providers replicating each other (OpenLDAP multi-provider syncrepl):
a change made on either reaches the other. Two managed slapd, no cluster."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import ldap
import ldap.modlist
import pytest

from directory.errors import SlapdFailed
from directory.settings import DirectorySettings
from directory.slapd import ManagedSlapd, container_dn

pytestmark = [pytest.mark.cluster, pytest.mark.slapd]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings(folder: Path, uri: str) -> DirectorySettings:
    return DirectorySettings(uris=(uri,), base_dn="dc=peers,dc=gov,dc=cn",
                             bind_dn="cn=admin,dc=peers,dc=gov,dc=cn",
                             bind_password="peer-test-admin-pw", managed=True,
                             data_dir=folder, timeout=5.0, oid_arc="1.3.6.1.4.1.61000.1",
                             realm="peers.gov.cn")


@pytest.fixture
def providers(tmp_path: Path) -> Iterator[tuple[ManagedSlapd, ManagedSlapd]]:
    a_uri, b_uri = f"ldap://127.0.0.1:{free_port()}", f"ldap://127.0.0.1:{free_port()}"
    a = ManagedSlapd(settings(tmp_path / "a", a_uri), peer=b_uri, server_id=1)
    b = ManagedSlapd(settings(tmp_path / "b", b_uri), peer=a_uri, server_id=2)
    a.start()
    b.start()
    try:
        a.ensure_base()  # on one provider only: the other receives the entries
        yield a, b
    finally:
        a.stop()
        b.stop()


def bind(server: ManagedSlapd) -> ldap.ldapobject.LDAPObject:
    conn = ldap.initialize(server.uri)
    conn.simple_bind_s(server.settings.bind_dn, server.settings.bind_password)
    return conn


def arrives(server: ManagedSlapd, dn: str, attr: str, value: bytes | None,
            seconds: float = 5.0) -> bool:
    """Whether ``dn`` on ``server`` shows ``attr`` = ``value`` (None: the entry is gone)."""
    conn = bind(server)
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                found = conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", [attr])
                if value is not None and value in found[0][1].get(attr, []):
                    return True
            except ldap.NO_SUCH_OBJECT:
                if value is None:
                    return True
            time.sleep(0.05)
        return False
    finally:
        conn.unbind_s()


def test_a_change_on_either_provider_reaches_the_other(
        providers: tuple[ManagedSlapd, ManagedSlapd]) -> None:
    a, b = providers
    people = container_dn(a.settings, "people")
    assert arrives(b, people, "ou", b"people")  # the base entries made on A
    dn = f"uid=peer1,{people}"
    entry = {"objectClass": [b"inetOrgPerson"], "uid": [b"peer1"], "cn": ["王芳".encode()],
             "sn": ["王".encode()]}
    conn = bind(a)
    conn.add_s(dn, ldap.modlist.addModlist(entry))
    conn.unbind_s()
    assert arrives(b, dn, "cn", "王芳".encode())
    conn = bind(b)  # B accepts writes itself (no referral to A) and sends them back
    conn.modify_s(dn, [(ldap.MOD_REPLACE, "title", ["处长".encode()])])
    conn.unbind_s()
    assert arrives(a, dn, "title", "处长".encode())
    conn = bind(b)
    conn.delete_s(dn)
    conn.unbind_s()
    assert arrives(a, dn, "cn", None)


def test_a_provider_restarted_catches_up_with_its_peer(
        providers: tuple[ManagedSlapd, ManagedSlapd]) -> None:
    a, b = providers
    people = container_dn(a.settings, "people")
    assert arrives(b, people, "ou", b"people")
    b.stop()
    conn = bind(a)
    conn.add_s(f"uid=peer2,{people}", ldap.modlist.addModlist(
        {"objectClass": [b"inetOrgPerson"], "uid": [b"peer2"], "cn": [b"p2"], "sn": [b"p"]}))
    conn.unbind_s()
    b.start()
    assert arrives(b, f"uid=peer2,{people}", "cn", b"p2")


def test_a_provider_with_a_peer_needs_a_server_id(tmp_path: Path) -> None:
    s = settings(tmp_path, "ldap://127.0.0.1:1389")
    with pytest.raises(SlapdFailed, match="server_id"):
        ManagedSlapd(s, peer="ldap://127.0.0.1:2389")
    with pytest.raises(SlapdFailed, match="server_id"):
        ManagedSlapd(s, peer="ldap://127.0.0.1:2389", server_id=4096)


def test_a_replica_cannot_also_have_a_peer(tmp_path: Path) -> None:
    s = settings(tmp_path, "ldap://127.0.0.1:1389")
    with pytest.raises(SlapdFailed, match="not both"):
        ManagedSlapd(s, replica_of="ldap://127.0.0.1:3389", peer="ldap://127.0.0.1:2389",
                     server_id=1)
