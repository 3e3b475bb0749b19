"""The managed slapd: GovTrust's own OpenLDAP server, built and run under a folder.

Modelled on python-ldap's ``slapdtest``: a ``cn=config`` tree is generated as
LDIF and loaded with ``slapadd -n0`` (so no slapd.conf is ever written), slapd
runs in the foreground (``-d 0``) as a child with its own session, readiness is
a poll with a deadline, and stop is SIGTERM then wait. The config holds an mdb
database for ``settings.base_dn`` with the memberof, ppolicy and syncprov
overlays (syncprov lets a replica follow this provider with syncrepl), our
``govPerson`` schema and the ACLs. Everything lives under ``settings.data_dir``
(``slapd.d/``, ``db/``, ``run/``), so a second start reuses what is there.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

import ldap
import ldap.dn
import ldap.modlist
from ldif import LDIFWriter

from directory import entries, pwhash
from directory.errors import DirectoryUnavailable, SlapdFailed
from directory.settings import DirectorySettings
from policies.passwords import PasswordPolicy

SCHEMA_TEMPLATE = Path(__file__).with_name("schema") / "govtrust.ldif"
SYSTEM_SCHEMA_DIR = Path("/etc/ldap/schema")
SYSTEM_SCHEMAS = ("core.ldif", "cosine.ldif", "inetorgperson.ldif", "nis.ldif")
MODULE_DIR = Path("/usr/lib/ldap")
SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SLAPMODIFY = "/usr/sbin/slapmodify"
# Debian's slapd argon2 module (slappw-argon2(5)), at the cost GovTrust hashes with.
ARGON2_MODULE = f"argon2 {pwhash.SLAPD_MODULE_ARGS}"
# A dotted OID in ASCII digits (str.isdigit() would take "²").
_OID = re.compile(r"[0-9]+(\.[0-9]+)*")
# The unix socket path limit is 108 bytes; ldapi is a convenience, so skip it when long.
_MAX_SOCKET_PATH = 100

# Containers under the base DN, and the DN of the default password policy entry.
PEOPLE = "people"
DEPARTMENTS = "departments"
GROUPS = "groups"
SERVICES = "services"
POLICIES = "policies"
# CA certificates and CRLs (cRLDistributionPoint entries), public like the HTTP ones.
PKI = "pki"
POLICY_CN = "default"

Entry = dict[str, list[bytes]]


def container_dn(settings: DirectorySettings, name: str) -> str:
    return ldap.dn.dn2str([[("ou", name, ldap.AVA_STRING)]] + ldap.dn.str2dn(settings.base_dn))


def policy_dn(settings: DirectorySettings) -> str:
    return ldap.dn.dn2str([[("cn", POLICY_CN, ldap.AVA_STRING)]]
                          + ldap.dn.str2dn(container_dn(settings, POLICIES)))


def render_schema(oid_arc: str) -> str:
    if not _OID.fullmatch(oid_arc):
        raise SlapdFailed("schema", f"oid_arc {oid_arc!r} is not a dotted OID")
    # Plain replace, not string.Template: the schema itself uses "$" between names.
    return SCHEMA_TEMPLATE.read_text(encoding="utf-8").replace("${arc}", oid_arc)


def policy_attributes(policy: PasswordPolicy) -> dict[str, list[bytes]]:
    return {k: [v.encode()] for k, v in entries.policy_attributes(policy).items()}


def base_entries(settings: DirectorySettings, policy: PasswordPolicy) -> list[tuple[str, Entry]]:
    """The entries every GovTrust directory has, parents first."""
    rdn = ldap.dn.str2dn(settings.base_dn)[0][0]
    attr, value = rdn[0].lower(), rdn[1].encode("utf-8")
    if attr == "dc":
        top: Entry = {"objectClass": [b"top", b"dcObject", b"organization"],
                      "dc": [value], "o": [value]}
    elif attr == "o":
        top = {"objectClass": [b"top", b"organization"], "o": [value]}
    elif attr == "ou":
        top = {"objectClass": [b"top", b"organizationalUnit"], "ou": [value]}
    else:
        raise SlapdFailed("base", f"cannot create a base entry named by {attr!r}")
    entries: list[tuple[str, Entry]] = [(settings.base_dn, top)]
    for name in (PEOPLE, DEPARTMENTS, GROUPS, SERVICES, POLICIES, PKI):
        entries.append((container_dn(settings, name),
                        {"objectClass": [b"top", b"organizationalUnit"],
                         "ou": [name.encode()]}))
    entries.append((policy_dn(settings), {
        "objectClass": [b"top", b"organizationalRole", b"pwdPolicy"],
        "cn": [POLICY_CN.encode()], **policy_attributes(policy)}))
    return entries


class ManagedSlapd:
    """One slapd under ``settings.data_dir``, listening on the first of ``settings.uris``."""

    def __init__(self, settings: DirectorySettings, *, start_timeout: float = 15.0,
                 replica_of: str | None = None, peer: str | None = None,
                 server_id: int | None = None) -> None:
        """``replica_of``: the provider's URI, to run as a syncrepl consumer of it
        (RFC 4533, refreshAndPersist) bound as the same rootdn.

        ``peer`` with ``server_id``: run as one of two providers that replicate each
        other (OpenLDAP multi-provider: each consumes the other with syncrepl and
        accepts writes itself; the server IDs, 1-4095, must differ)."""
        if replica_of is not None and peer is not None:
            raise SlapdFailed("configure", "a server is a replica or a provider with a "
                                           "peer, not both")
        if peer is not None and (server_id is None or not 1 <= server_id <= 4095):
            raise SlapdFailed("configure", "a provider with a peer needs a server_id "
                                           "from 1 to 4095")
        self.settings = settings
        self.replica_of = replica_of
        self.peer = peer
        self.server_id = server_id
        self.data_dir = Path(settings.data_dir).resolve()
        self.config_dir = self.data_dir / "slapd.d"
        self.db_dir = self.data_dir / "db"
        self.run_dir = self.data_dir / "run"
        self.pid_file = self.run_dir / "slapd.pid"
        self.log_file = self.run_dir / "slapd.log"
        self.start_timeout = start_timeout
        parsed = urllib.parse.urlsplit(settings.uris[0])
        if parsed.scheme != "ldap" or not parsed.hostname:
            raise SlapdFailed("configure", f"managed slapd needs an ldap:// URI, "
                                           f"got {settings.uris[0]!r}")
        self.host = parsed.hostname
        self.port = parsed.port or 389
        self.uri = f"ldap://{self.host}:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    # -- configuration -------------------------------------------------------
    @property
    def configured(self) -> bool:
        return (self.config_dir / "cn=config.ldif").exists()

    @property
    def ldapi_uri(self) -> str | None:
        path = str(self.run_dir / "ldapi")
        if len(path) > _MAX_SOCKET_PATH:
            return None
        return "ldapi://" + urllib.parse.quote(path, safe="")

    def config_ldif(self) -> str:
        """The whole ``cn=config`` as LDIF, for ``slapadd -n0``."""
        s = self.settings
        base = s.base_dn
        services = container_dn(s, SERVICES)
        people = container_dn(s, PEOPLE)
        departments = container_dn(s, DEPARTMENTS)
        groups = container_dn(s, GROUPS)
        policies = container_dn(s, POLICIES)
        peercred = (f"gidNumber={os.getgid()}+uidNumber={os.getuid()},"
                    "cn=peercred,cn=external,cn=auth")
        svc = f'dn.children="{services}"'
        acl = [
            # Binding needs auth on the hash; only the person may change it.
            "to attrs=userPassword by self =wx by anonymous auth by * none",
            # pwdHistory holds old password hashes: as secret as userPassword.
            "to attrs=govNationalIdHash,pwdHistory by * none",
            f'to dn.subtree="{people}" by self read by {svc} read by * none',
            f'to dn.subtree="{departments}" by {svc} read by users read by * none',
            f'to dn.subtree="{groups}" by {svc} read by users read by * none',
            f'to dn.subtree="{policies}" by * none',
            # CRLs are public (RFC 4523); anyone may read them, only the rootdn writes.
            f'to dn.subtree="{container_dn(s, PKI)}" by * read',
            f'to dn.base="{base}" by {svc} read by users read by * none',
            "to * by self read by * none",
        ]
        head: list[tuple[str, Entry]] = [
            ("cn=config", {"objectClass": [b"olcGlobal"], "cn": [b"config"],
                           "olcPidFile": [str(self.pid_file).encode()],
                           "olcArgsFile": [str(self.run_dir / "slapd.args").encode()],
                           "olcLogLevel": [b"none"]}),
            ("cn=module{0},cn=config", {
                "objectClass": [b"olcModuleList"], "cn": [b"module{0}"],
                "olcModulePath": [str(MODULE_DIR).encode()],
                "olcModuleLoad": [b"{0}back_mdb", b"{1}memberof", b"{2}ppolicy",
                                  b"{3}syncprov", f"{{4}}{ARGON2_MODULE}".encode()]}),
            ("cn=schema,cn=config", {"objectClass": [b"olcSchemaConfig"], "cn": [b"schema"]}),
        ]
        after_schema: list[tuple[str, Entry]] = [
            ("olcDatabase={-1}frontend,cn=config", {
                "objectClass": [b"olcDatabaseConfig", b"olcFrontendConfig"],
                "olcDatabase": [b"{-1}frontend"],
                # On the frontend, not cn=config: cn=config is read before the modules
                # are loaded, and {ARGON2} exists only once the argon2 module is.
                "olcPasswordHash": [pwhash.SCHEME.encode()],
                "olcAccess": [b"{0}to dn.base=\"\" by * read",
                              b"{1}to dn.base=\"cn=subschema\" by * read"]}),
            ("olcDatabase={0}config,cn=config", {
                "objectClass": [b"olcDatabaseConfig"], "olcDatabase": [b"{0}config"],
                "olcAccess": [f"{{0}}to * by dn.exact={peercred} manage by * none".encode()]}),
            ("olcDatabase={1}mdb,cn=config", {
                "objectClass": [b"olcDatabaseConfig", b"olcMdbConfig"],
                "olcDatabase": [b"{1}mdb"],
                "olcSuffix": [base.encode()],
                "olcRootDN": [s.bind_dn.encode()],
                "olcRootPW": [pwhash.hash_password(s.bind_password).encode()],
                "olcDbDirectory": [str(self.db_dir).encode()],
                "olcDbMaxSize": [str(4 * 1024**3).encode()],
                "olcDbIndex": [v.encode() for v in (
                    "objectClass eq", "uid eq,sub", "cn eq,sub", "displayName eq,sub",
                    "govDepartmentPath eq,sub", "govStatus eq", "member eq", "memberOf eq",
                    "mail eq", "ou eq", "entryUUID eq", "entryCSN eq")],
                # Service accounts read the whole directory of people at once.
                "olcLimits": [f'{{0}}dn.children="{services}" size=unlimited '
                              'time=unlimited'.encode()],
                "olcAccess": [f"{{{i}}}{rule}".encode() for i, rule in enumerate(acl)]}),
        ]
        mdb = after_schema[-1][1]
        overlays: list[tuple[str, Entry]] = []
        if self.peer:
            # Change sequence numbers carry the server ID, so both sides can tell
            # their own writes from the peer's and neither loops a change back.
            head[0][1]["olcServerID"] = [str(self.server_id).encode()]
            mdb["olcSyncrepl"] = [(
                f'{{0}}rid={self.server_id:03d} provider={self.peer} bindmethod=simple '
                f'binddn="{s.bind_dn}" credentials="{s.bind_password}" '
                f'searchbase="{base}" type=refreshAndPersist retry="1 +" timeout=3 '
                'network-timeout=2 schemachecking=off scope=sub attrs="*,+"').encode()]
            mdb["olcMultiProvider"] = [b"TRUE"]
        elif self.replica_of:
            mdb["olcSyncrepl"] = [(
                f'{{0}}rid=001 provider={self.replica_of} bindmethod=simple '
                f'binddn="{s.bind_dn}" credentials="{s.bind_password}" '
                f'searchbase="{base}" type=refreshAndPersist retry="1 +" timeout=3 '
                'schemachecking=off scope=sub attrs="*,+"').encode()]
            mdb["olcUpdateRef"] = [self.replica_of.encode()]
        # On a replica too: the provider's memberof writes memberOf internally, which
        # syncprov does not send, so each server derives it from the groups it holds.
        overlays.append(("memberof", {
            "objectClass": [b"olcOverlayConfig", b"olcMemberOf"],
            "olcMemberOfRefInt": [b"TRUE"],
            "olcMemberOfGroupOC": [b"groupOfNames"],
            "olcMemberOfMemberAD": [b"member"],
            "olcMemberOfMemberOfAD": [b"memberOf"]}))
        overlays.append(("ppolicy", {
            "objectClass": [b"olcOverlayConfig", b"olcPPolicyConfig"],
            "olcPPolicyDefault": [policy_dn(s).encode()],
            "olcPPolicyHashCleartext": [b"TRUE"],
            "olcPPolicyUseLockout": [b"TRUE"]}))
        overlays.append(("syncprov", {
            "objectClass": [b"olcOverlayConfig", b"olcSyncProvConfig"],
            "olcSpCheckpoint": [b"100 10"]}))
        for i, (name, entry) in enumerate(overlays):
            entry["olcOverlay"] = [f"{{{i}}}{name}".encode()]
            after_schema.append((f"olcOverlay={{{i}}}{name},olcDatabase={{1}}mdb,cn=config",
                                 entry))
        out = io.StringIO()
        writer = LDIFWriter(out, cols=10_000)
        for dn, entry in head:
            writer.unparse(dn, entry)
        for name in SYSTEM_SCHEMAS:
            out.write((SYSTEM_SCHEMA_DIR / name).read_text(encoding="utf-8").strip() + "\n\n")
        out.write(render_schema(s.oid_arc).strip() + "\n\n")
        writer = LDIFWriter(out, cols=10_000)
        for dn, entry in after_schema:
            writer.unparse(dn, entry)
        return out.getvalue()

    def configure(self) -> bool:
        """Build ``slapd.d`` unless it exists; True when it was built now."""
        if self.configured:
            return False
        for d in (self.data_dir, self.db_dir, self.run_dir):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)  # the config holds the rootpw hash, the db every person
        self.config_dir.mkdir(mode=0o700, exist_ok=True)
        done = subprocess.run([SLAPADD, "-n0", "-F", str(self.config_dir)],
                              input=self.config_ldif().encode("utf-8"),
                              capture_output=True, timeout=60)
        if done.returncode != 0:
            # Leave no half-built config behind: the next try must start clean.
            for f in sorted(self.config_dir.rglob("*"), reverse=True):
                f.unlink() if f.is_file() else f.rmdir()
            raise SlapdFailed("slapadd", done.stderr.decode("utf-8", "replace")[-2000:])
        return True

    def config_needs_argon2(self) -> bool:
        """Whether ``slapd.d`` predates Argon2 (a home made before the switch).

        Read from the module list slapd wrote; this file is only read, never edited
        by hand (slapd keeps a checksum in it): changes go through slapmodify.
        """
        modules = self.config_dir / "cn=config" / "cn=module{0}.ldif"
        try:
            return "argon2" not in modules.read_text(encoding="utf-8")
        except FileNotFoundError:
            return False

    def upgrade_config(self) -> bool:
        """Bring an existing ``slapd.d`` up to date, offline (slapd must not run).

        Today: load the argon2 module, hash new passwords with ``{ARGON2}`` and
        re-hash the rootdn password with it. Hashes already stored stay as they
        are (slapd still checks ``{SSHA}``) until the person's next login re-hashes
        them (``LdapGateway.authenticate``). True when something was changed.
        """
        if not self.configured or not self.config_needs_argon2():
            return False
        rootpw = pwhash.hash_password(self.settings.bind_password)
        ldif = (
            "dn: cn=module{0},cn=config\nchangetype: modify\nadd: olcModuleLoad\n"
            f"olcModuleLoad: {ARGON2_MODULE}\n-\n\n"
            "dn: cn=config\nchangetype: modify\ndelete: olcPasswordHash\n-\n\n"
            "dn: olcDatabase={-1}frontend,cn=config\nchangetype: modify\n"
            f"replace: olcPasswordHash\nolcPasswordHash: {pwhash.SCHEME}\n-\n\n"
            "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nreplace: olcRootPW\n"
            f"olcRootPW: {rootpw}\n-\n")
        done = subprocess.run([SLAPMODIFY, "-n0", "-F", str(self.config_dir)],
                              input=ldif.encode("utf-8"), capture_output=True, timeout=60)
        if done.returncode != 0:
            raise SlapdFailed("slapmodify", done.stderr.decode("utf-8", "replace")[-2000:])
        return True

    # -- process -------------------------------------------------------------
    def _pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def is_running(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None
        pid = self._pid()
        if pid is None:
            return self._proc is not None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def start(self) -> bool:
        """Configure if needed, start slapd and wait until it answers.

        Returns False when it was already running (so the caller knows not to stop it).
        """
        if self.is_running():
            self._wait_ready(time.monotonic() + self.start_timeout)
            return False
        if not self.configure():
            self.upgrade_config()
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.pid_file.unlink(missing_ok=True)
        urls = [f"ldap://{self.host}:{self.port}/"]
        if self.ldapi_uri:
            urls.append(self.ldapi_uri)
        with open(self.log_file, "ab") as log:
            self._proc = subprocess.Popen(
                [SLAPD, "-d", "0", "-F", str(self.config_dir), "-h", " ".join(urls)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)  # Ctrl-C in a terminal must not reach slapd first
        self._wait_ready(time.monotonic() + self.start_timeout)
        return True

    def _wait_ready(self, deadline: float) -> None:
        last = ""
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise SlapdFailed("start", f"slapd exited with {self._proc.returncode}: "
                                           f"{self._log_tail()}")
            conn = ldap.initialize(self.uri)
            conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 1.0)
            conn.set_option(ldap.OPT_TIMEOUT, 1.0)
            try:
                conn.simple_bind_s(self.settings.bind_dn, self.settings.bind_password)
                return
            except ldap.INVALID_CREDENTIALS:
                raise SlapdFailed("start", f"{self.uri} answers but refuses the rootdn; "
                                           "is another directory on this port?") from None
            except ldap.LDAPError as exc:
                last = type(exc).__name__
            finally:
                conn.unbind_s()
            time.sleep(0.05)
        raise SlapdFailed("start", f"{self.uri} did not answer in time ({last}); "
                                   f"{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")[-1500:]
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM and wait for exit (slapd needs about a second to flush)."""
        pid = self._pid() or (self._proc.pid if self._proc is not None else None)
        if pid is None or not self.is_running():
            self._proc = None
            self.pid_file.unlink(missing_ok=True)
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None:
                if self._proc.poll() is not None:
                    break
            else:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            if self._proc is not None:
                self._proc.wait(5)
        self._proc = None
        self.pid_file.unlink(missing_ok=True)

    # -- content ---------------------------------------------------------------
    def _admin(self) -> ldap.ldapobject.LDAPObject:
        conn = ldap.initialize(self.uri)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, self.settings.timeout)
        conn.set_option(ldap.OPT_TIMEOUT, self.settings.timeout)
        try:
            conn.simple_bind_s(self.settings.bind_dn, self.settings.bind_password)
        except ldap.SERVER_DOWN as exc:
            raise DirectoryUnavailable((self.uri,), type(exc).__name__) from None
        return conn

    def ensure_base(self, policy: PasswordPolicy | None = None) -> list[str]:
        """Create the base entries that are missing and push the password policy.

        Returns the DNs created (empty on a second run).
        """
        from policies.passwords import load_policy

        policy = policy or load_policy()
        conn = self._admin()
        created: list[str] = []
        try:
            for dn, entry in base_entries(self.settings, policy):
                try:
                    conn.add_s(dn, ldap.modlist.addModlist(entry))
                    created.append(dn)
                except ldap.ALREADY_EXISTS:
                    pass
            conn.modify_s(policy_dn(self.settings),
                          [(ldap.MOD_REPLACE, k, v)
                           for k, v in policy_attributes(policy).items()])
        finally:
            conn.unbind_s()
        return created

    def load_entries(self, entries: Iterable[tuple[str, Entry]]) -> int:
        """Add entries as the rootdn (e.g. to give a second server the same data)."""
        conn = self._admin()
        count = 0
        try:
            for dn, entry in entries:
                try:
                    conn.add_s(dn, ldap.modlist.addModlist(entry))
                    count += 1
                except ldap.ALREADY_EXISTS:
                    pass
        finally:
            conn.unbind_s()
        return count
