"""The directory's operations: people, departments, groups, service accounts, import.

Framework-free: values are checked here (``directory.validate``), the LDAP work
is the gateway's, every change is written to the injected audit sink, and
suspend/restore/leave/move run inside ``events.pending(...)`` so the lifecycle
event is durable before the change is reported done (see ``directory.events``).

Suspending or leaving also sets ppolicy's administrative lock
(``pwdAccountLockedTime: 000001010000Z``), so an application binding to slapd
directly is refused as well, not only logins through GovTrust.
"""

from __future__ import annotations

import hashlib
import io
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO, Literal

from directory import csvimport, entries, pwhash, validate
from directory import ldif as ldif_format
from directory.audit import AuditSink
from directory.bulk import TXN_BATCH
from directory.csvimport import PersonRow, RowError
from directory.entries import Attrs, Change
from directory.errors import (
    AlreadyExists,
    DirectoryRefused,
    ImportRejected,
    InvalidTransition,
    InvalidValue,
    NotFound,
    WeakPassword,
)
from directory.events import EventPublisher, LifecycleEvent, LifecycleKind
from directory.gateway import LdapGateway
from directory.model import AuthOutcome, Department, Group, Person, PersonStatus
from directory.settings import DirectorySettings
from policies.passwords import PasswordPolicy, load_policy

# groupOfNames needs at least one member (RFC 4519 §3.5); this DN names no entry.
PLACEHOLDER_MEMBER_RDN = "cn=nobody"
SERVICE_PASSWORD_BYTES = 24

Format = Literal["csv", "ldif"]


@dataclass(frozen=True)
class ServiceAccount:
    name: str
    dn: str
    password: str = field(repr=False)  # shown once, never stored by GovTrust


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    memberships_added: int = 0
    dry_run: bool = False
    errors: list[tuple[int, str]] = field(default_factory=list)  # rows skipped (--continue)

    def as_dict(self) -> dict[str, object]:
        return {"added": self.added, "updated": self.updated, "unchanged": self.unchanged,
                "memberships_added": self.memberships_added, "dry_run": self.dry_run,
                "errors": [{"line": n, "reason": r} for n, r in self.errors]}


class DirectoryService:
    def __init__(self, settings: DirectorySettings, gateway: LdapGateway, audit: AuditSink,
                 events: EventPublisher, policy: PasswordPolicy | None = None) -> None:
        self.settings = settings
        self.gateway = gateway
        self.audit = audit
        self.events = events
        self.policy = policy or load_policy()

    # -- people ----------------------------------------------------------------
    def add_person(self, *, uid: str, name: str, department: str | Sequence[str],
                   title: str = "", email: str = "", mobile: str = "",
                   employee_number: str = "", clearance: int = 0,
                   password: str | None = None, actor: str = "system") -> Person:
        path = self._department_path(department)
        email = email or f"{uid}@{self.settings.realm}"
        for f, problem in (
            ("uid", validate.uid_problem(uid)), ("name", validate.name_problem(name)),
            ("title", validate.title_problem(title)), ("email", validate.email_problem(email)),
            ("mobile", validate.mobile_problem(mobile)),
            ("employee_number", validate.employee_number_problem(employee_number)),
        ):
            if problem:
                raise InvalidValue(f, problem)
        if not 0 <= clearance <= validate.MAX_CLEARANCE:
            raise InvalidValue("clearance", f"must be 0-{validate.MAX_CLEARANCE}")
        self._require_department(path)
        if password is not None:
            self._check_password(uid, password)
        dn = self.gateway.person_dn(uid)
        attrs: Attrs = {"objectClass": list(entries.PERSON_CLASSES), "uid": [uid],
                        **entries.person_attributes(
                            uid=uid, name=name, department=path, title=title, email=email,
                            mobile=mobile, employee_number=employee_number,
                            clearance=clearance)}
        try:
            self.gateway.add(dn, attrs)
        except AlreadyExists:
            raise AlreadyExists("person", uid) from None
        if password is not None:
            # A first password: changing it is not forced (``set_password`` is).
            self.gateway.set_password(dn, password, must_change=False)
        self.audit.record(actor=actor, action="directory.add", target=uid,
                          details={"name": name, "department": "/".join(path)})
        return self.show(uid)

    def show(self, uid: str) -> Person:
        problem = validate.uid_problem(uid)
        if problem:
            raise InvalidValue("uid", problem)
        person = self.gateway.find_person(uid)
        if person is None:
            raise NotFound("person", uid)
        return person

    def search(self, query: str | None = None, *, uid: str | None = None,
               name: str | None = None, department: str | Sequence[str] | None = None,
               group: str | None = None, limit: int = 1000) -> list[Person]:
        """People matching every given criterion: free text (a substring of the uid
        or of the name), uid, a substring of the name, a department and everything
        under it, membership of a group. Values go into the filter only through
        ``filter_format``, so ``*)(uid=*`` is searched for as text."""
        parts: list[str] = ["(objectClass=inetOrgPerson)"]
        args: list[str] = []
        if query:
            if "\x00" in query or len(query) > validate.MAX_QUERY:
                raise InvalidValue("query", f"must be 1-{validate.MAX_QUERY} characters "
                                            "without NUL")
            parts.append("(|(uid=*%s*)(cn=*%s*)(displayName=*%s*))")
            args += [query, query, query]
        if uid:
            parts.append("(uid=%s)")
            args.append(uid)
        if name:
            parts.append("(|(displayName=*%s*)(cn=*%s*))")
            args += [name, name]
        if department:
            path = "/".join(self._department_path(department))
            parts.append("(|(govDepartmentPath=%s)(govDepartmentPath=%s/*))")
            args += [path, path]
        if group:
            parts.append("(memberOf=%s)")
            args.append(self.gateway.group_dn(group))
        found = self.gateway.search(self.gateway.container("people"), "(&" + "".join(parts) + ")",
                                    args, scope="one", attrs=entries.READ)
        people = sorted((self.gateway.to_person(dn, a) for dn, a in found), key=lambda p: p.uid)
        return people[:limit]

    def authenticate(self, uid: str, password: str) -> AuthOutcome:
        """Bind as the person under ppolicy (see ``LdapGateway.authenticate``)."""
        return self.gateway.authenticate(uid, password)

    # -- lifecycle ---------------------------------------------------------------
    def suspend(self, uid: str, *, actor: str = "system", reason: str = "") -> Person:
        return self._transition(uid, PersonStatus.SUSPENDED, LifecycleKind.SUSPENDED, actor,
                                reason, allowed=(PersonStatus.ACTIVE,))

    def restore(self, uid: str, *, actor: str = "system", reason: str = "") -> Person:
        return self._transition(uid, PersonStatus.ACTIVE, LifecycleKind.RESTORED, actor,
                                reason, allowed=(PersonStatus.SUSPENDED,))

    def leave(self, uid: str, *, actor: str = "system", reason: str = "") -> Person:
        return self._transition(uid, PersonStatus.LEFT, LifecycleKind.LEFT, actor, reason,
                                allowed=(PersonStatus.ACTIVE, PersonStatus.SUSPENDED))

    def _transition(self, uid: str, to: PersonStatus, kind: LifecycleKind, actor: str,
                    reason: str, allowed: tuple[PersonStatus, ...]) -> Person:
        person = self.show(uid)
        if person.status not in allowed:
            raise InvalidTransition(uid, person.status.value, to.value)
        # Locked while not active: the ppolicy lock makes slapd itself refuse binds.
        lock: Change = (("replace", "pwdAccountLockedTime", [entries.ADMIN_LOCK])
                        if to is not PersonStatus.ACTIVE
                        else ("replace", "pwdAccountLockedTime", []))
        event = LifecycleEvent(kind=kind, uid=uid, entry_uuid=person.entry_uuid,
                               occurred_at=datetime.now(UTC), actor=actor)
        with self.events.pending(event):
            self.gateway.modify(person.dn, [("replace", "govStatus", [to.value]), lock])
        self.audit.record(actor=actor, action=f"directory.{_VERBS[kind]}", target=uid,
                          details={"from": person.status.value, "to": to.value,
                                   "reason": reason})
        return self.show(uid)

    def move(self, uid: str, department: str | Sequence[str], *, actor: str = "system") -> Person:
        path = self._department_path(department)
        person = self.show(uid)
        if person.status is PersonStatus.LEFT:
            raise InvalidTransition(uid, person.status.value, "moved")
        self._require_department(path)
        if person.department == path:
            return person
        event = LifecycleEvent(kind=LifecycleKind.MOVED, uid=uid, entry_uuid=person.entry_uuid,
                               occurred_at=datetime.now(UTC), actor=actor,
                               detail="/".join(path))
        with self.events.pending(event):
            self.gateway.modify(person.dn, [("replace", "govDepartmentPath", ["/".join(path)]),
                                            ("replace", "ou", [path[-1]])])
        self.audit.record(actor=actor, action="directory.move", target=uid,
                          details={"from": person.department_path, "to": "/".join(path)})
        return self.show(uid)

    def happened(self, event: LifecycleEvent) -> bool:
        """Whether the directory now shows ``event``'s change (for outbox recovery)."""
        person = self.gateway.find_person(event.uid)
        if person is None or (event.entry_uuid and person.entry_uuid != event.entry_uuid):
            return False
        if event.kind is LifecycleKind.MOVED:
            return person.department_path == event.detail
        return person.status is _STATUS_AFTER[event.kind]

    # -- passwords ---------------------------------------------------------------
    def _check_password(self, uid: str, password: str) -> None:
        reasons = self.policy.check_password(password, uid)
        if reasons:
            raise WeakPassword(uid, tuple(r.value for r in reasons))

    def set_password(self, uid: str, password: str, *, actor: str = "system",
                     must_change: bool = True) -> None:
        """Set a person's password as an administrator (policy checked here first).

        ``must_change`` (the default, as Keycloak's "temporary" password): the
        person is made to choose her own at the next login (ppolicy ``pwdReset``).
        """
        person = self.show(uid)
        self._check_password(uid, password)
        self.gateway.set_password(person.dn, password, must_change=must_change)
        self.audit.record(actor=actor, action="directory.password.set", target=uid,
                          details={"must_change": "yes" if must_change else "no"})

    def change_password(self, uid: str, old: str, new: str) -> None:
        """The person changes their own password; our checks first, then slapd's
        (history, quality) as the person. A refusal by slapd is a ``WeakPassword``
        naming ppolicy's reason (e.g. ``passwordInHistory``); a wrong ``old`` is
        ``WrongPassword``. Works for an expired or reset password too."""
        person = self.show(uid)
        self._check_password(uid, new)
        try:
            self.gateway.change_own_password(person.dn, old, new)
        except DirectoryRefused as exc:
            if exc.operation == "password":
                raise WeakPassword(uid, (exc.code,)) from None
            raise
        self.audit.record(actor=uid, action="directory.password.change", target=uid)

    def reset_password(self, uid: str, new: str, *, proof: str) -> None:
        """The person sets a new password without the old one, having proved who she
        is another way (``proof``, e.g. the certificate method, is audited).

        slapd does not check a rootdn's write, so history is checked here against
        ppolicy's own ``pwdHistory`` (``passwordInHistory`` like slapd's refusal);
        the write leaves no ``pwdReset``: she chose this password herself.
        """
        person = self.show(uid)
        self._check_password(uid, new)
        if self.policy.history and self.gateway.in_history(person.dn, new):
            raise WeakPassword(uid, ("passwordInHistory",))
        self.gateway.set_password(person.dn, new, must_change=False)
        self.audit.record(actor=uid, action="directory.password.reset", target=uid,
                          details={"proof": proof})

    def password_state(self, uid: str) -> str | None:
        """Changes whenever ``uid``'s password does (None: no such person)."""
        found = self.gateway.find_person_entry(uid)
        return self.gateway.password_state(found[0]) if found else None

    def apply_password_policy(self, policy: PasswordPolicy | None = None,
                              *, actor: str = "system") -> None:
        """Push the policy into slapd's ppolicy entry, so slapd enforces it too."""
        policy = policy or self.policy
        dn = self.gateway.child_dn(self.gateway.container("policies"), "cn", "default")
        self.gateway.modify(dn, [("replace", k, [v])
                                 for k, v in entries.policy_attributes(policy).items()])
        self.policy = policy
        self.audit.record(actor=actor, action="directory.policy.apply", target=dn,
                          details={k: str(v) for k, v in vars(policy).items()})

    # -- departments -------------------------------------------------------------
    def _department_path(self, department: str | Sequence[str]) -> tuple[str, ...]:
        if isinstance(department, str):
            path, problem = validate.parse_department(department)
        else:
            path, problem = validate.parse_department("/".join(department))
        if problem:
            raise InvalidValue("department", problem)
        return path

    def _require_department(self, path: tuple[str, ...]) -> None:
        if self.gateway.read(self.gateway.department_dn(path), ["ou"]) is None:
            raise NotFound("department", "/".join(path))

    def add_department(self, path: str | Sequence[str], *, description: str = "",
                       actor: str = "system") -> Department:
        full = self._department_path(path)
        if len(full) > 1:
            self._require_department(full[:-1])
        if validate.title_problem(description):
            raise InvalidValue("description", str(validate.title_problem(description)))
        dn = self.gateway.department_dn(full)
        attrs: Attrs = {"objectClass": ["top", "organizationalUnit"], "ou": [full[-1]]}
        if description:
            attrs["description"] = [description]
        try:
            self.gateway.add(dn, attrs)
        except AlreadyExists:
            raise AlreadyExists("department", "/".join(full)) from None
        self.audit.record(actor=actor, action="directory.department.add", target=dn,
                          details={"path": "/".join(full)})
        return Department(full, dn, description)

    def ensure_department(self, path: str | Sequence[str], *, actor: str = "system") -> None:
        """Create the department and any missing parents (used by the demo)."""
        full = self._department_path(path)
        for depth in range(1, len(full) + 1):
            try:
                self.add_department(full[:depth], actor=actor)
            except AlreadyExists:
                pass

    def list_departments(self) -> list[Department]:
        root = self.gateway.container("departments")
        found = self.gateway.search(root, "(objectClass=organizationalUnit)", scope="sub",
                                    attrs=["ou", "description"])
        out = [Department(self.gateway.dn_path(dn, root), dn, (a.get("description") or [""])[0])
               for dn, a in found if self.gateway.is_under(dn, root)]
        return sorted(out, key=lambda d: d.path)

    # -- groups --------------------------------------------------------------------
    def _placeholder(self) -> str:
        return self.gateway.child_dn(self.gateway.container("groups"), "cn", "nobody")

    def add_group(self, name: str, *, description: str = "", actor: str = "system") -> Group:
        problem = validate.group_problem(name)
        if problem:
            raise InvalidValue("group", problem)
        dn = self.gateway.group_dn(name)
        attrs: Attrs = {"objectClass": ["top", "groupOfNames"], "cn": [name],
                        "member": [self._placeholder()]}
        if description:
            attrs["description"] = [description]
        try:
            self.gateway.add(dn, attrs)
        except AlreadyExists:
            raise AlreadyExists("group", name) from None
        self.audit.record(actor=actor, action="directory.group.add", target=name)
        return Group(name, dn, (), description)

    def _group_members(self, name: str) -> tuple[str, list[str]]:
        problem = validate.group_problem(name)
        if problem:
            raise InvalidValue("group", problem)
        dn = self.gateway.group_dn(name)
        attrs = self.gateway.read(dn, ["member"])
        if attrs is None:
            raise NotFound("group", name)
        return dn, attrs.get("member", [])

    def add_member(self, group: str, uid: str, *, actor: str = "system") -> None:
        dn, members = self._group_members(group)
        person = self.show(uid)
        if any(m.lower() == person.dn.lower() for m in members):
            return
        self.gateway.modify(dn, [("add", "member", [person.dn])])
        self.audit.record(actor=actor, action="directory.group.add_member", target=uid,
                          details={"group": group})

    def remove_member(self, group: str, uid: str, *, actor: str = "system") -> None:
        dn, members = self._group_members(group)
        person = self.show(uid)
        present = [m for m in members if m.lower() == person.dn.lower()]
        if not present:
            raise NotFound("membership", f"{uid} in {group}")
        changes: list[Change] = [("delete", "member", present)]
        if len(members) == len(present):  # keep groupOfNames valid when emptied
            changes.insert(0, ("add", "member", [self._placeholder()]))
        self.gateway.modify(dn, changes)
        self.audit.record(actor=actor, action="directory.group.remove_member", target=uid,
                          details={"group": group})

    def list_groups(self) -> list[Group]:
        people = self.gateway.container("people")
        found = self.gateway.search(self.gateway.container("groups"), "(objectClass=groupOfNames)",
                                    scope="one", attrs=["cn", "member", "description"])
        out = []
        for dn, a in found:
            members = tuple(sorted(self.gateway.rdn_value(m) for m in a.get("member", [])
                                   if self.gateway.is_under(m, people)))
            out.append(Group((a.get("cn") or [""])[0], dn, members,
                             (a.get("description") or [""])[0]))
        return sorted(out, key=lambda g: g.name)

    # -- service accounts ----------------------------------------------------------
    def add_service_account(self, name: str, *, description: str = "",
                            password: str | None = None, actor: str = "system",
                            ) -> ServiceAccount:
        """A read-only account for a department app; its password is returned once
        (random unless given, e.g. from the home's secrets)."""
        problem = validate.uid_problem(name)
        if problem:
            raise InvalidValue("name", problem)
        dn = self.gateway.service_dn(name)
        password = password or secrets.token_urlsafe(SERVICE_PASSWORD_BYTES)
        attrs: Attrs = {"objectClass": ["top", "account", "simpleSecurityObject"],
                        "uid": [name], "userPassword": [pwhash.hash_password(password)]}
        if description:
            attrs["description"] = [description]
        try:
            self.gateway.add(dn, attrs)
        except AlreadyExists:
            raise AlreadyExists("service account", name) from None
        # pwdMustChange made slapd mark the added password as reset; an app's
        # account has no one to change it, so it is cleared.
        self.gateway.modify(dn, [("replace", "pwdReset", [])])
        self.audit.record(actor=actor, action="directory.service_account.add", target=name)
        return ServiceAccount(name, dn, password)

    def reset_service_account(self, name: str, *, password: str | None = None,
                              actor: str = "system") -> ServiceAccount:
        """Give a service account a new password (returned once)."""
        problem = validate.uid_problem(name)
        if problem:
            raise InvalidValue("name", problem)
        dn = self.gateway.service_dn(name)
        if self.gateway.read(dn, ["uid"]) is None:
            raise NotFound("service account", name)
        password = password or secrets.token_urlsafe(SERVICE_PASSWORD_BYTES)
        self.gateway.modify(dn, [("replace", "userPassword", [pwhash.hash_password(password)]),
                                 ("replace", "pwdReset", [])])
        self.audit.record(actor=actor, action="directory.service_account.reset", target=name)
        return ServiceAccount(name, dn, password)

    # -- import / export -------------------------------------------------------------
    def import_people(self, data: bytes | BinaryIO, *, fmt: Format | None = None,
                      dry_run: bool = False, keep_going: bool = False,
                      actor: str = "system") -> ImportReport:
        """Import a people CSV or LDIF file (see ``directory.csvimport``): the bytes,
        or a binary file open for reading and seekable (a CSV is then streamed).

        Two passes over the file. The first checks every row, against the file and
        the directory (departments and groups must exist); any bad row rejects the
        whole file, before anything is written, unless ``keep_going``. The second
        reads the file again, checks each row the same way and writes the good
        ones, ``bulk.TXN_BATCH`` at a time: existing people are looked up for that
        batch and only differences written, so importing the same file again
        changes nothing. Memory is flat in the file's length: nothing per row is
        kept between batches (a CSV; an LDIF file is parsed in memory, up to
        ``csvimport.MAX_FILE_BYTES``). A person's status is never changed by an
        import (a re-import must not bring back someone who left).
        """
        source = io.BytesIO(data) if isinstance(data, bytes) else data
        if not source.seekable():
            # A pipe cannot be read twice (check, then write).
            raise InvalidValue("file", "must be a regular file, not a pipe or a terminal")
        source.seek(0)
        fmt = fmt or _sniff(source.read(4096))
        digest = _digest(source)
        departments = {d.path for d in self.list_departments()}
        groups = {g.name: g for g in self.list_groups()}

        def checked() -> Iterator[PersonRow | RowError]:
            for item in self._rows(source, fmt):
                if not isinstance(item, PersonRow):
                    yield item
                    continue
                problems = []
                if item.department not in departments:
                    problems.append(f"department {'/'.join(item.department)} does not exist")
                missing = [g for g in item.groups if g not in groups]
                if missing:
                    problems.append(f"group(s) {', '.join(missing)} do not exist")
                yield (item.line, "; ".join(problems)) if problems else item

        # Pass 1: check everything; nothing is written.
        errors: list[RowError] = []
        bad = good = 0
        for item in checked():
            if isinstance(item, PersonRow):
                good += 1
                continue
            bad += 1
            if len(errors) < csvimport.MAX_ERRORS:
                errors.append(item)
            elif not keep_going:
                errors.append((item[0], "too many errors; stopped reading"))
                break
        if bad > len(errors):
            errors.append((errors[-1][0], f"and {bad - len(errors)} more bad row(s)"))
        errors.sort()
        if errors and (not good or not keep_going):
            # Nothing usable, or all-or-nothing asked: say why and change nothing.
            raise ImportRejected(errors)

        # Pass 2: the same rows again, written a batch at a time.
        report = ImportReport(dry_run=dry_run, errors=errors)
        failed: list[RowError] = []
        again = 0
        batch: list[PersonRow] = []
        for item in checked():
            if isinstance(item, PersonRow):
                again += 1
                batch.append(item)
                if len(batch) >= TXN_BATCH:
                    self._import_batch(batch, groups, report, failed, dry_run)
                    batch = []
        if batch:
            self._import_batch(batch, groups, report, failed, dry_run)
        if again != good or _digest(source) != digest:
            # Another program wrote the file between the passes: what was checked
            # is not what was read; the operator must look and import it again.
            failed.append((0, "the file changed while it was being imported; "
                              "check the directory and import the file again"))
        if not dry_run:
            self.audit.record(actor=actor, action="directory.import",
                              target=f"sha256:{digest}",
                              details={"format": fmt, "added": str(report.added),
                                       "updated": str(report.updated),
                                       "unchanged": str(report.unchanged),
                                       "memberships_added": str(report.memberships_added),
                                       "skipped_rows": str(bad),
                                       "failed": str(len(failed))})
        if failed:
            # The directory refused something the checks let through: say which rows.
            raise ImportRejected(failed)
        return report

    @staticmethod
    def _rows(source: BinaryIO, fmt: Format) -> Iterator[PersonRow | RowError]:
        if fmt == "csv":
            yield from csvimport.scan_csv(source)
            return
        source.seek(0)
        parsed = ldif_format.parse_ldif(source.read(csvimport.MAX_FILE_BYTES + 1))
        items: list[PersonRow | RowError] = [*parsed.rows, *parsed.errors]
        yield from sorted(items, key=lambda i: i.line if isinstance(i, PersonRow) else i[0])

    def _import_batch(self, batch: Sequence[PersonRow], groups: dict[str, Group],
                      report: ImportReport, failed: list[RowError], dry_run: bool) -> None:
        """Write one batch of checked rows: adds for new people, the differences for
        existing ones (looked up for this batch only), then group memberships."""
        template = "(&(objectClass=inetOrgPerson)(|" + "(uid=%s)" * len(batch) + "))"
        existing = {(a.get("uid") or [""])[0]: (dn, a) for dn, a in self.gateway.search(
            self.gateway.container("people"), template, [r.uid for r in batch],
            scope="one", attrs=[*entries.READ, "objectClass"])}
        ops: list[tuple[str, str, object]] = []
        op_lines: list[int] = []
        new_members: dict[str, list[str]] = {}
        for row in batch:
            current = existing.get(row.uid)
            status = PersonStatus.ACTIVE
            if current is not None:
                status = entries.person_from_attributes(*current).status
            desired = entries.person_attributes(
                uid=row.uid, name=row.name, department=row.department, title=row.title,
                email=row.email, mobile=row.mobile, employee_number=row.employee_number,
                clearance=row.clearance, status=status)
            if current is None:
                dn = self.gateway.person_dn(row.uid)
                ops.append(("add", dn, {"objectClass": list(entries.PERSON_CLASSES),
                                        "uid": [row.uid], **desired}))
                op_lines.append(row.line)
                report.added += 1
                member_of: list[str] = []
            else:
                dn, attrs = current
                diff = entries.changes(attrs, desired)
                if "govperson" not in {c.lower() for c in attrs.get("objectClass", [])}:
                    diff.insert(0, ("add", "objectClass", ["govPerson"]))
                if diff:
                    ops.append(("modify", dn, diff))
                    op_lines.append(row.line)
                    report.updated += 1
                else:
                    report.unchanged += 1
                member_of = [m.lower() for m in attrs.get("memberOf", [])]
            for g in row.groups:
                if groups[g].dn.lower() not in member_of:
                    new_members.setdefault(g, []).append(dn)
        report.memberships_added += sum(len(v) for v in new_members.values())
        if dry_run:
            return
        refused = self.gateway.apply_many(ops) if ops else []
        failed.extend((line, str(r)) for line, r in zip(op_lines, refused, strict=True)
                      if r is not None)
        for name, dns in new_members.items():
            try:
                self.gateway.modify(groups[name].dn, [("add", "member", dns)])
            except DirectoryRefused as exc:
                failed.append((0, f"group {name}: {exc}"))

    def export_people(self, fmt: Format = "csv") -> bytes:
        people = self.search(limit=10**9)
        if fmt == "ldif":
            return ldif_format.write_ldif(
                (p.dn, {"objectClass": list(entries.PERSON_CLASSES), "uid": [p.uid],
                        **entries.person_attributes(
                            uid=p.uid, name=p.display_name, department=p.department,
                            title=p.title, email=p.email, mobile=p.mobile,
                            employee_number=p.employee_number, clearance=p.clearance,
                            status=p.status, language=p.preferred_language)})
                for p in people)
        return csvimport.write_csv(ldif_format.person_row(p) for p in people)


def _sniff(head: bytes) -> Format:
    head = head.lstrip(csvimport.BOM).lstrip()
    return "ldif" if head.startswith((b"dn:", b"version:", b"#")) else "csv"


def _digest(source: BinaryIO) -> str:
    source.seek(0)
    h = hashlib.sha256()
    for chunk in iter(lambda: source.read(1024 * 1024), b""):
        h.update(chunk)
    return h.hexdigest()


_VERBS = {LifecycleKind.SUSPENDED: "suspend", LifecycleKind.RESTORED: "restore",
          LifecycleKind.LEFT: "leave", LifecycleKind.MOVED: "move"}
_STATUS_AFTER = {LifecycleKind.SUSPENDED: PersonStatus.SUSPENDED,
                 LifecycleKind.RESTORED: PersonStatus.ACTIVE,
                 LifecycleKind.LEFT: PersonStatus.LEFT}
