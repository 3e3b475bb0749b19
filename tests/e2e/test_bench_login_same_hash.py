"""scripts/bench/idp.py's ``login_same_hash`` figure, a bench-only yardstick: its
load users (twins of the demo people) have their passwords stored as the peer's
users do, {SSHA}, and still have them so after logging in (GovTrust re-hashes a
single non-Argon2id value at the next login; the twins hold two values, which it
leaves alone), while the shipped figure's users keep Argon2id and slapd's
configuration is the shipped one again (ppolicy on, ``{ARGON2}`` for new
passwords) before anything is measured. On the serve shape, with real servers;
no timing is asserted."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType

import ldap
import pytest
import requests

from tests.fixtures.bench import load_bench

pytestmark = [pytest.mark.slapd]


def _load() -> ModuleType:
    return load_bench("idp.py", "bench_idp")


def _stored(shape: object) -> dict[str, list[bytes]]:
    """uid -> userPassword values, read with python-ldap as the rootdn (not with the
    bench's own ldapsearch), while slapd still runs."""
    base_dn, rootdn = shape.directory()  # type: ignore[attr-defined]
    home: Path = shape.home  # type: ignore[attr-defined]
    conn = ldap.initialize(shape.env["GOVTRUST_DIRECTORY_URIS"])  # type: ignore[attr-defined]
    try:
        conn.simple_bind_s(rootdn, (home / "secrets" / "ldap-admin-password").read_text().strip())
        found = conn.search_s(f"ou=people,{base_dn}", ldap.SCOPE_SUBTREE,
                              "(objectClass=inetOrgPerson)", ["uid", "userPassword"])
    finally:
        conn.unbind_s()
    return {attrs["uid"][0].decode(): attrs.get("userPassword", []) for _, attrs in found}


def test_same_hash_users_stay_ssha_through_their_logins_and_shipped_ones_argon2id() -> None:
    bench = _load()
    base = Path("/dev/shm") / f"govtrust-test-same-hash-{os.getpid()}"
    with bench.shapes.shape("serve", base) as shape:
        reg = json.loads(shape.govtrust("--json", "client", "add", "--name", "same-hash",
                                        "--redirect-uri", bench.REDIRECT, "--level", "2",
                                        "--first-party"))
        conf = {"issuer": shape.issuer, "ca": shape.ca, "client_id": reg["client_id"],
                "secret": reg["client_secret"], "people": shape.people()}
        twins = bench.same_hash_people(shape)
        assert len(twins) == len(conf["people"])
        assert all(uid.endswith(bench.TWIN) for uid, _ in twins)

        # slapd as shipped again before anything is measured.
        config = shape.ldap("ldapsearch", "-LLL", "-b", "cn=config",
                            "(|(objectClass=olcPPolicyConfig)(olcPasswordHash=*))",
                            "olcDisabled", "olcPasswordHash", config=True)
        assert "olcDisabled" not in config
        assert "olcPasswordHash: {ARGON2}" in config and "{SSHA}" not in config

        # Logins of both kinds, as the figures run them; and the first twins one by one,
        # so that these are known to have logged in at least once.
        s = requests.Session()
        for uid, password in twins[:3]:
            bench.login_once(s, shape.issuer, shape.ca, reg["client_id"], reg["client_secret"],
                             uid, password)
        for people in (conf["people"], twins):
            result = bench.python_load("login", {**conf, "people": people}, 2, 1.5)
            assert result["errors"] == 0 and result["requests"] > 0

        stored = _stored(shape)
        for uid, _ in twins:
            values = stored[uid]
            assert len(values) == 2 and all(v.startswith(b"{SSHA}") for v in values), (
                uid, [v[:17] for v in values])
        for uid, _ in conf["people"]:
            values = stored[uid]
            assert len(values) == 1 and values[0].startswith(b"{ARGON2}$argon2id$"), (
                uid, [v[:17] for v in values])
        # And the bench's own read-back says the same.
        assert bench.stored_schemes(shape, [u for u, _ in twins]) == {"{SSHA} x2": len(twins)}
        assert bench.stored_schemes(shape, [u for u, _ in conf["people"]]) == {
            "{ARGON2}$argon2id x1": len(conf["people"])}
