"""``govtrust otp``: enrol, activate, verify and reset one-time code authenticators.

The secret and the recovery codes are printed once, when made; only their
encrypted form / keyed digests are stored (see ``idp.login.totp``). Every change is
audited with the operator as actor.
"""

from __future__ import annotations

import getpass
import sys

import click

from directory.errors import DirectoryError
from directory.model import Person
from idp.errors import IdPError
from idp.login.totp import OtpOutcome, OtpResult
from idp.runtime.services import Services

_MESSAGES = {
    OtpResult.OK: "code accepted",
    OtpResult.MALFORMED: "a code is six digits",
    OtpResult.WRONG: "wrong code",
    OtpResult.REPLAYED: "this code was already used",
    OtpResult.NOT_ENROLLED: "no active authenticator (run `govtrust otp enroll UID`)",
    OtpResult.LOCKED: "too many wrong codes: locked for now (or `govtrust otp reset UID`)",
}


def _emit(services: Services, data: object, text: str) -> None:
    from idp.runtime.output import emit

    emit(services, data, text)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in a container: still say it came from the CLI
        return "cli"


def _person(services: Services, uid: str) -> Person:
    try:
        return services.directory.show(uid)
    except DirectoryError as exc:
        raise click.ClickException(str(exc)) from None


def _outcome(services: Services, uid: str, out: OtpOutcome) -> None:
    data = {"uid": uid, "result": out.result.value, "failures": out.failures}
    if out.recovery_codes_left is not None:
        data["recovery_codes_left"] = out.recovery_codes_left
    text = _MESSAGES[out.result] + (f" ({out.failures} failure(s) in a row)"
                                    if out.failures else "")
    if out.ok:
        _emit(services, data, text)
        return
    if services.json:
        _emit(services, data, text)
    else:
        click.echo(f"error: {text}", err=True)
    sys.exit(1)


@click.group()
def otp() -> None:
    """One-time code (TOTP, RFC 6238) authenticators."""


@otp.command("enroll")
@click.argument("uid")
@click.option("--activate", "code", default=None, metavar="CODE",
              help="Activate at once with the first code from the authenticator.")
@click.pass_obj
def otp_enroll(services: Services, uid: str, code: str | None) -> None:
    """Make a new secret; print its otpauth:// URI and a terminal QR code."""
    person = _person(services, uid)
    try:
        enrolment = services.totp.begin_enrolment(person, actor=_actor())
    except IdPError as exc:
        raise click.ClickException(str(exc)) from None
    _emit(services, {"uid": uid, "uri": enrolment.uri, "secret": enrolment.secret,
                     "active": False},
          f"{enrolment.text_qr}\n{enrolment.uri}\n\nsecret: {enrolment.secret}\n"
          f"Scan it, then run: govtrust otp activate {uid} CODE")
    if code is not None:
        _outcome(services, uid, services.totp.activate(person, code, actor=_actor()))


@otp.command("activate")
@click.argument("uid")
@click.argument("code")
@click.pass_obj
def otp_activate(services: Services, uid: str, code: str) -> None:
    """Activate a pending authenticator with its first correct code."""
    person = _person(services, uid)
    try:
        _outcome(services, uid, services.totp.activate(person, code, actor=_actor()))
    except IdPError as exc:
        raise click.ClickException(str(exc)) from None


@otp.command("verify")
@click.argument("uid")
@click.argument("code")
@click.pass_obj
def otp_verify(services: Services, uid: str, code: str) -> None:
    """Check a code (it is then used up, as at login)."""
    person = _person(services, uid)
    try:
        _outcome(services, uid, services.totp.verify(person, code, actor=_actor()))
    except IdPError as exc:
        raise click.ClickException(str(exc)) from None


@otp.command("status")
@click.argument("uid")
@click.pass_obj
def otp_status(services: Services, uid: str) -> None:
    """Whether UID has an authenticator, its failures and recovery codes left."""
    st = services.totp.status(_person(services, uid))
    data = {"uid": uid, "enrolled": st.enrolled, "active": st.active, "failures": st.failures,
            "recovery_codes_left": st.recovery_codes_left,
            "activated_at": st.activated_at.isoformat() if st.activated_at else None}
    state = "active" if st.active else "pending" if st.enrolled else "not enrolled"
    _emit(services, data, f"{uid}: {state}, {st.failures} failure(s), "
                          f"{st.recovery_codes_left} recovery code(s) left")


@otp.command("reset")
@click.argument("uid")
@click.pass_obj
def otp_reset(services: Services, uid: str) -> None:
    """Remove UID's authenticator and recovery codes (audited)."""
    removed = services.totp.reset(_person(services, uid), actor=_actor())
    _emit(services, {"uid": uid, "removed": removed},
          f"{uid}: authenticator removed" if removed else f"{uid}: had no authenticator")


@otp.command("recovery-codes")
@click.argument("uid")
@click.pass_obj
def otp_recovery_codes(services: Services, uid: str) -> None:
    """Make ten new single-use recovery codes (the old ones stop working); shown once."""
    person = _person(services, uid)
    try:
        codes = services.totp.new_recovery_codes(person, actor=_actor())
    except IdPError as exc:
        raise click.ClickException(str(exc)) from None
    _emit(services, {"uid": uid, "codes": list(codes)},
          "\n".join(codes) + "\n\nEach code works once. They are not shown again.")
