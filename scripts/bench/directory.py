"""Directory benchmark: import, lookups and binds with 10,000 people in a fresh slapd.

Run: ``.venv/bin/python scripts/bench/directory.py [--people N] [--seconds S]``.
Starts its own managed slapd in a temporary folder on a free port, imports N
generated people from CSV (timed, through ``DirectoryService.import_people``),
then measures person lookups and authentications per second through the
gateway, each beside the same work done with raw python-ldap on one connection
in the same run, so the gateway's overhead is read against what slapd itself
gives. Prints ``name: value unit`` lines.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import ldap  # noqa: E402
import ldap.filter  # noqa: E402
from ldap.controls.ppolicy import PasswordPolicyControl  # noqa: E402

from directory.events import RecordingPublisher  # noqa: E402
from directory.gateway import LdapGateway  # noqa: E402
from directory.service import DirectoryService  # noqa: E402
from directory.settings import DirectorySettings  # noqa: E402
from directory.slapd import ManagedSlapd  # noqa: E402

SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"
PASSWORD = "Bench-Pass-2024!"
FILTER = "(&(objectClass=inetOrgPerson)(uid=%s))"
ATTRS = ["cn", "displayName", "mail", "title", "govDepartmentPath", "govStatus", "uid",
         "entryUUID", "memberOf"]


class NullAudit:
    def record(self, **_: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def people_csv(n: int) -> bytes:
    lines = ["uid,name,department,title,email"]
    for i in range(n):
        name = SURNAMES[i % 20] + GIVEN[(i // 20) % len(GIVEN)] + GIVEN[(i // 480) % len(GIVEN)]
        lines.append(f"user{i:05d},{name},市财政局/预算处,科员,user{i:05d}@beijing.gov.cn")
    return ("\n".join(lines) + "\n").encode("utf-8")


def rate(seconds: float, op: Callable[[], object], threads: int = 1) -> float:
    """Operations per second of ``op`` run by ``threads`` threads for ``seconds``."""
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def worker(k: int) -> None:
        while time.monotonic() < stop:
            op()
            counts[k] += 1

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    started = time.monotonic()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--with-password", type=int, default=500,
                        help="how many people get a password for the bind benchmark")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="govtrust-bench-"))
    settings = DirectorySettings(uris=(f"ldap://127.0.0.1:{free_port()}",),
                                 base_dn="dc=beijing,dc=gov,dc=cn",
                                 bind_dn="cn=admin,dc=beijing,dc=gov,dc=cn",
                                 bind_password=secrets.token_urlsafe(18),
                                 data_dir=folder / "slapd")
    server = ManagedSlapd(settings)
    server.start()
    gateway = LdapGateway(settings, pool_size=8)
    try:
        server.ensure_base()
        svc = DirectoryService(settings, gateway, NullAudit(), RecordingPublisher())
        svc.ensure_department("市财政局/预算处")
        data = people_csv(args.people)
        started = time.monotonic()
        report = svc.import_people(data)
        took = time.monotonic() - started
        assert report.added == args.people
        print(f"import_csv_{args.people}_rows: {took:.2f} s")
        print(f"import_csv_rate: {args.people / took:.0f} rows/s")
        started = time.monotonic()
        again = svc.import_people(data)
        assert again.unchanged == args.people
        print(f"reimport_unchanged_{args.people}_rows: {time.monotonic() - started:.2f} s")

        with_pw = [f"user{i:05d}" for i in range(min(args.with_password, args.people))]
        for uid in with_pw:
            gateway.set_password(gateway.person_dn(uid), PASSWORD)
        rng = random.Random(1)
        all_uids = [f"user{i:05d}" for i in range(args.people)]

        # Lookups: the gateway (pool, escaping, Person values) vs one raw connection.
        def gw_lookup() -> object:
            return gateway.find_person(rng.choice(all_uids))

        raw = ldap.initialize(server.uri)
        raw.simple_bind_s(settings.bind_dn, settings.bind_password)
        people_base = f"ou=people,{settings.base_dn}"

        def raw_lookup() -> object:
            return raw.search_s(people_base, ldap.SCOPE_ONELEVEL,
                                ldap.filter.filter_format(FILTER, [rng.choice(all_uids)]), ATTRS)

        print(f"lookup_gateway: {rate(args.seconds, gw_lookup):.0f} lookups/s")
        print(f"lookup_raw_python_ldap: {rate(args.seconds, raw_lookup):.0f} lookups/s")
        print(f"lookup_gateway_4_threads: {rate(args.seconds, gw_lookup, 4):.0f} lookups/s")

        # Authentication: the gateway does a lookup, then a bind with the ppolicy
        # control; raw does the same lookup and bind, on one connection for each.
        def gw_auth() -> object:
            outcome = gateway.authenticate(rng.choice(with_pw), PASSWORD)
            assert outcome.ok, outcome
            return outcome

        binder = ldap.initialize(server.uri)

        def raw_auth() -> object:
            uid = rng.choice(with_pw)
            found = raw.search_s(people_base, ldap.SCOPE_ONELEVEL,
                                 ldap.filter.filter_format(FILTER, [uid]), ATTRS)
            return binder.simple_bind_s(found[0][0], PASSWORD)

        def raw_auth_ppolicy() -> object:
            # What the gateway sends: the bind carries the password policy request control.
            uid = rng.choice(with_pw)
            found = raw.search_s(people_base, ldap.SCOPE_ONELEVEL,
                                 ldap.filter.filter_format(FILTER, [uid]), ATTRS)
            msgid = binder.simple_bind(found[0][0], PASSWORD,
                                       serverctrls=[PasswordPolicyControl()])
            return binder.result3(msgid)

        def raw_bind_only() -> object:
            return binder.simple_bind_s(f"uid={rng.choice(with_pw)},{people_base}", PASSWORD)

        print(f"authenticate_gateway: {rate(args.seconds, gw_auth):.0f} auths/s")
        print(f"authenticate_raw_python_ldap: {rate(args.seconds, raw_auth):.0f} auths/s")
        print(f"authenticate_raw_python_ldap_ppolicy: "
              f"{rate(args.seconds, raw_auth_ppolicy):.0f} auths/s")
        print(f"bind_only_raw_python_ldap: {rate(args.seconds, raw_bind_only):.0f} binds/s")
        print(f"authenticate_gateway_4_threads: {rate(args.seconds, gw_auth, 4):.0f} auths/s")
        print(f"cpus: {os.cpu_count()} count")
        raw.unbind_s()
        binder.unbind_s()
    finally:
        gateway.close()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
