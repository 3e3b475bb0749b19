"""``govtrust directory ...``: the directory's command group (click lives only here).

Each command is a thin adapter over ``directory.service.DirectoryService``: it
takes the service from ``ctx.obj.directory`` (the composition root's
``Services``), prints text or, under ``--json``, one JSON value, and turns every
``DirectoryError`` into a ``click.ClickException`` (stderr, exit status 1) whose
message names the row or the cause.
"""

from __future__ import annotations

import functools
import getpass
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import click

from directory.errors import DirectoryError, ImportRejected, WeakPassword
from directory.model import Department, Group, Person
from directory.service import DirectoryService, Format

F = TypeVar("F", bound=Callable[..., Any])


class _Services(Protocol):
    """What this group needs from ``ctx.obj`` (``idp.runtime.services.Services``)."""

    json: bool

    @property
    def directory(self) -> DirectoryService: ...


def _obj() -> _Services:
    return cast(_Services, click.get_current_context().obj)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry in some containers
        return "cli"


def _emit(data: Any, text: str) -> None:
    if _obj().json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        click.echo(text)


def _errors(func: F) -> F:
    """Map the directory's typed errors to a clear message and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ImportRejected as exc:
            lines = [f"  line {n}: {r}" if n else f"  file: {r}" for n, r in exc.errors]
            raise click.ClickException(
                f"{len(exc.errors)} bad row(s); nothing was imported "
                f"(fix them, or use --continue to import the good rows):\n"
                + "\n".join(lines)) from None
        except WeakPassword as exc:
            raise click.ClickException(
                f"password refused by the policy: {', '.join(exc.reasons)}") from None
        except DirectoryError as exc:
            raise click.ClickException(str(exc)) from None

    return cast(F, wrapper)


def _person(p: Person) -> dict[str, Any]:
    data = asdict(p)
    data["department"] = p.department_path
    data["status"] = p.status.value
    data["groups"] = list(p.groups)
    return data


def _person_text(p: Person) -> str:
    return "\n".join([
        f"uid:         {p.uid}", f"name:        {p.display_name}",
        f"department:  {p.department_path}", f"title:       {p.title}",
        f"email:       {p.email}", f"mobile:      {p.mobile}",
        f"employee no: {p.employee_number}", f"clearance:   {p.clearance}",
        f"status:      {p.status.value}", f"groups:      {', '.join(p.groups)}",
        f"entryUUID:   {p.entry_uuid}", f"dn:          {p.dn}",
    ])


def _show(p: Person) -> None:
    _emit(_person(p), _person_text(p))


@click.group()
def directory() -> None:
    """The civil-servant directory (OpenLDAP): people, departments, groups, import."""


@directory.command()
@click.argument("uid")
@click.option("--name", required=True, help="Display name, e.g. 张伟.")
@click.option("--department", required=True, help="Path from the top, e.g. 市财政局/预算处.")
@click.option("--title", default="")
@click.option("--email", default="", help="Default: UID@realm.")
@click.option("--mobile", default="")
@click.option("--employee-number", default="")
@click.option("--clearance", type=click.IntRange(0, 4), default=0)
@click.option("--password", "ask_password", is_flag=True, help="Prompt for an initial password.")
@_errors
def add(uid: str, name: str, department: str, title: str, email: str, mobile: str,
        employee_number: str, clearance: int, ask_password: bool) -> None:
    """Add a person."""
    password = (click.prompt("password", hide_input=True, confirmation_prompt=True)
                if ask_password else None)
    _show(_obj().directory.add_person(
        uid=uid, name=name, department=department, title=title, email=email, mobile=mobile,
        employee_number=employee_number, clearance=clearance, password=password,
        actor=_actor()))


@directory.command()
@click.argument("uid")
@_errors
def show(uid: str) -> None:
    """Show one person."""
    _show(_obj().directory.show(uid))


@directory.command()
@click.argument("query", required=False)
@click.option("--uid", default=None)
@click.option("--name", default=None, help="Part of the name, e.g. 张.")
@click.option("--department", default=None, help="A department and everything under it.")
@click.option("--group", default=None)
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True)
@_errors
def search(query: str | None, uid: str | None, name: str | None, department: str | None,
           group: str | None, limit: int) -> None:
    """Find people; QUERY is free text matched in the uid and the name (e.g. 王)."""
    people = _obj().directory.search(query, uid=uid, name=name, department=department,
                                     group=group, limit=limit)
    _emit([_person(p) for p in people],
          "\n".join(f"{p.uid}\t{p.display_name}\t{p.department_path}\t{p.title}\t"
                    f"{p.status.value}" for p in people) or "(nobody)")


def _lifecycle(verb: str) -> Callable[[str, str], None]:
    @_errors
    def run(uid: str, reason: str) -> None:
        svc = _obj().directory
        step = {"suspend": svc.suspend, "restore": svc.restore, "leave": svc.leave}[verb]
        _show(step(uid, actor=_actor(), reason=reason))

    return run


for _verb, _help in (("suspend", "Suspend a person (logins refused, events emitted)."),
                     ("restore", "Restore a suspended person."),
                     ("leave", "Mark a person as having left (final).")):
    directory.command(_verb, help=_help)(
        click.argument("uid")(click.option("--reason", default="")(_lifecycle(_verb))))


@directory.command()
@click.argument("uid")
@click.argument("department")
@_errors
def move(uid: str, department: str) -> None:
    """Move a person to another department."""
    _show(_obj().directory.move(uid, department, actor=_actor()))


@directory.command()
@click.argument("uid")
@click.option("--password-stdin", is_flag=True, help="Read the new password from stdin.")
@click.option("--no-change-required", is_flag=True,
              help="Do not make the person change it at the next login.")
@_errors
def passwd(uid: str, password_stdin: bool, no_change_required: bool) -> None:
    """Reset a person's password (checked against the password policy). The person
    must change it at the next login unless --no-change-required."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("new password", hide_input=True, confirmation_prompt=True)
    _obj().directory.set_password(uid, password, actor=_actor(),
                                  must_change=not no_change_required)
    must = not no_change_required
    _emit({"uid": uid, "password": "set", "must_change": must},
          f"password set for {uid}" + (" (to be changed at the next login)" if must else ""))


# -- departments ------------------------------------------------------------------
@directory.group()
def department() -> None:
    """Departments (市 → 委办局 → 处室)."""


def _dept(d: Department) -> dict[str, Any]:
    return {"path": "/".join(d.path), "dn": d.dn, "description": d.description}


@department.command("add")
@click.argument("path")
@click.option("--description", default="")
@_errors
def department_add(path: str, description: str) -> None:
    """Add a department; PATH like 市财政局/预算处 (the parent must exist)."""
    d = _obj().directory.add_department(path, description=description, actor=_actor())
    _emit(_dept(d), f"added {'/'.join(d.path)}")


@department.command("list")
@_errors
def department_list() -> None:
    """List every department."""
    found = _obj().directory.list_departments()
    _emit([_dept(d) for d in found],
          "\n".join("  " * (len(d.path) - 1) + d.name for d in found) or "(none)")


# -- groups ---------------------------------------------------------------------------
@directory.group()
def group() -> None:
    """Groups (groupOfNames; members see them in memberOf)."""


def _group(g: Group) -> dict[str, Any]:
    return {"name": g.name, "dn": g.dn, "members": list(g.members), "description": g.description}


@group.command("add")
@click.argument("name")
@click.option("--description", default="")
@_errors
def group_add(name: str, description: str) -> None:
    """Add a group."""
    g = _obj().directory.add_group(name, description=description, actor=_actor())
    _emit(_group(g), f"added group {g.name}")


@group.command("add-member")
@click.argument("name")
@click.argument("uid")
@_errors
def group_add_member(name: str, uid: str) -> None:
    """Add a person to a group."""
    _obj().directory.add_member(name, uid, actor=_actor())
    _emit({"group": name, "uid": uid, "member": True}, f"{uid} is in {name}")


@group.command("remove-member")
@click.argument("name")
@click.argument("uid")
@_errors
def group_remove_member(name: str, uid: str) -> None:
    """Remove a person from a group."""
    _obj().directory.remove_member(name, uid, actor=_actor())
    _emit({"group": name, "uid": uid, "member": False}, f"{uid} removed from {name}")


@group.command("list")
@_errors
def group_list() -> None:
    """List groups and their members."""
    found = _obj().directory.list_groups()
    _emit([_group(g) for g in found],
          "\n".join(f"{g.name}: {', '.join(g.members)}" for g in found) or "(none)")


# -- import / export ------------------------------------------------------------------
@directory.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check and count; change nothing.")
@click.option("--continue", "keep_going", is_flag=True,
              help="Import the good rows even when some rows are bad.")
@click.option("--format", "fmt", type=click.Choice(["csv", "ldif"]), default=None,
              help="Default: from the content.")
@_errors
def import_(file: Path, dry_run: bool, keep_going: bool, fmt: str | None) -> None:
    """Import people from a CSV (UTF-8) or LDIF file."""
    with file.open("rb") as f:  # streamed: a city's file need not fit in memory
        report = _obj().directory.import_people(
            f, fmt=cast(Format | None, fmt), dry_run=dry_run, keep_going=keep_going,
            actor=_actor())
    text = (f"{'would add' if dry_run else 'added'} {report.added}, "
            f"{'would update' if dry_run else 'updated'} {report.updated}, "
            f"unchanged {report.unchanged}, memberships added {report.memberships_added}")
    if report.errors:
        text += f"\nskipped {len(report.errors)} bad row(s):\n" + "\n".join(
            f"  line {n}: {r}" for n, r in report.errors)
    _emit(report.as_dict(), text)


@directory.command()
@click.option("--format", "fmt", type=click.Choice(["csv", "ldif"]), default="csv",
              show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of stdout.")
@_errors
def export(fmt: str, out: Path | None) -> None:
    """Export every person as CSV or LDIF."""
    data = _obj().directory.export_people(cast(Format, fmt))
    if out is not None:
        out.write_bytes(data)
        _emit({"file": str(out), "bytes": len(data)}, f"wrote {out}")
    else:
        click.echo(data.decode("utf-8"), nl=False)


# -- service accounts ------------------------------------------------------------------
@directory.group("service-account")
def service_account() -> None:
    """Read-only accounts for department applications."""


@service_account.command("add")
@click.argument("name")
@click.option("--description", default="")
@_errors
def service_account_add(name: str, description: str) -> None:
    """Add a service account; its password is printed once."""
    account = _obj().directory.add_service_account(name, description=description,
                                                   actor=_actor())
    _emit({"name": account.name, "dn": account.dn, "password": account.password},
          f"dn: {account.dn}\npassword: {account.password}\n(shown once; store it now)")
