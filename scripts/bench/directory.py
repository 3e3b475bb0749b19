"""Directory benchmark: import, lookups and binds with 10,000 people in a fresh slapd.

Run: ``.venv/bin/python scripts/bench/directory.py [--people N] [--seconds S]
[--rows 100000,1000000] [--import-only]``.
Starts its own managed slapd in a temporary folder on a free port. First, for
each ``--rows`` count, a child process streams that many generated people from a
CSV file on disk through ``DirectoryService.import_people`` (as ``govtrust
directory import`` does) and reports rows/s and its peak resident memory
(``ru_maxrss``) beside its resident memory before the import, so the growth is
what the import kept. Then it imports N generated people (timed) and measures
person lookups and authentications per second through the gateway, each beside
the same work done with raw python-ldap on one connection in the same run, so
the gateway's overhead is read against what slapd itself gives. Prints ``name: value unit`` lines.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import secrets
import shutil
import socket
import subprocess
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
BASE_DN = "dc=beijing,dc=gov,dc=cn"
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


def write_people_csv(path: Path, n: int, prefix: str) -> None:
    """``n`` generated people, written line by line (the bench must not hold them)."""
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("uid,name,department,title,email\n")
        for i in range(n):
            name = (SURNAMES[i % 20] + GIVEN[(i // 20) % len(GIVEN)]
                    + GIVEN[(i // 480) % len(GIVEN)])
            f.write(f"{prefix}{i:07d},{name},市财政局/预算处,科员,"
                    f"{prefix}{i:07d}@beijing.gov.cn\n")


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def import_child(settings: DirectorySettings, path: Path, n: int) -> None:
    """In a fresh process: import ``path`` (``n`` rows) streamed from disk; print figures."""
    gateway = LdapGateway(settings, pool_size=2)
    svc = DirectoryService(settings, gateway, NullAudit(), RecordingPublisher())
    svc.list_departments()  # connect and warm up before the baseline is read
    before = rss_kb()
    started = time.monotonic()
    with path.open("rb") as f:
        report = svc.import_people(f)
    took = time.monotonic() - started
    assert report.added == n, report
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gateway.close()
    print(f"import_stream_{n}_rows: {took:.1f} s")
    print(f"import_stream_{n}_rate: {n / took:.0f} rows/s")
    print(f"import_stream_{n}_rss_before: {before / 1024:.0f} MB")
    print(f"import_stream_{n}_peak_rss: {peak / 1024:.0f} MB")
    print(f"import_stream_{n}_peak_growth_per_row: {(peak - before) * 1024 / n:.0f} bytes")
    print(f"import_stream_{n}_file: {path.stat().st_size / 1024**2:.0f} MB")


def streamed_imports(settings: DirectorySettings, folder: Path, counts: list[int]) -> None:
    for n in counts:
        path = folder / f"people-{n}.csv"
        write_people_csv(path, n, prefix=f"r{n}u")
        child = subprocess.run(
            [sys.executable, __file__, "--child-import", str(path), "--child-rows", str(n),
             "--child-uri", settings.uris[0], "--child-password", settings.bind_password,
             "--child-folder", str(settings.data_dir)],
            stdout=subprocess.PIPE, text=True, check=True)
        print(child.stdout, end="", flush=True)
        path.unlink()


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
    parser.add_argument("--rows", default="100000",
                        help="comma-separated row counts for the streamed import "
                             "(e.g. 100000,1000000; 0 = skip)")
    parser.add_argument("--import-only", action="store_true",
                        help="stop after the streamed imports")
    for hidden in ("--child-import", "--child-rows", "--child-uri", "--child-password",
                   "--child-folder"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_import:
        import_child(DirectorySettings(uris=(args.child_uri,), base_dn=BASE_DN,
                                       bind_dn=f"cn=admin,{BASE_DN}",
                                       bind_password=args.child_password,
                                       data_dir=Path(args.child_folder)),
                     Path(args.child_import), int(args.child_rows))
        return

    folder = Path(tempfile.mkdtemp(prefix="govtrust-bench-"))
    settings = DirectorySettings(uris=(f"ldap://127.0.0.1:{free_port()}",),
                                 base_dn=BASE_DN, bind_dn=f"cn=admin,{BASE_DN}",
                                 bind_password=secrets.token_urlsafe(18),
                                 data_dir=folder / "slapd")
    server = ManagedSlapd(settings)
    server.start()
    gateway = LdapGateway(settings, pool_size=8)
    try:
        server.ensure_base()
        svc = DirectoryService(settings, gateway, NullAudit(), RecordingPublisher())
        svc.ensure_department("市财政局/预算处")
        counts = [int(c) for c in args.rows.split(",") if int(c) > 0]
        print(f"streamed_import_rows_run: {','.join(map(str, counts)) or 'none'} rows")
        streamed_imports(settings, folder, counts)
        if args.import_only:
            return
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
