"""One-time codes (RFC 6238) on SQLite and PostgreSQL: enrolment, the window, replay,
malformed codes, concurrent use, recovery codes, reset, encryption at rest."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from sqlalchemy import Engine, select, update

from directory.model import Person
from idp.login.otp_store import SqlOtpStore, otp_credentials, otp_recovery_codes
from idp.login.totp import (
    STEP_SECONDS,
    AlreadyEnrolled,
    OtpResult,
    TotpService,
    UndecryptableSecret,
    well_formed_code,
)
from idp.runtime.db import session_factory
from pki.audit_store import audit_log

T0 = 1_790_000_010.0  # a fixed instant, 10 s into its 30 s step
KEY = b"otp-key for tests, not a secret!"


def person(uid: str = "zhangwei") -> Person:
    return Person(uid=uid, dn=f"uid={uid},ou=people", entry_uuid=f"uuid-{uid}",
                  display_name="张伟", department=("市财政局", "预算处"))


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


@dataclass
class Env:
    svc: TotpService
    store: SqlOtpStore
    engine: Engine
    clock: Clock

    def audits(self, action: str) -> int:
        with self.engine.connect() as c:
            return len(c.execute(select(audit_log.c.seq).where(audit_log.c.action == action))
                       .all())

    def code(self, secret: str, offset_steps: int = 0) -> str:
        return pyotp.TOTP(secret).at(self.clock.at + offset_steps * STEP_SECONDS)

    def enrolled(self, who: Person | None = None) -> str:
        """An active authenticator; returns its secret (the step before now is used)."""
        who = who or person()
        enrolment = self.svc.begin_enrolment(who)
        assert self.svc.activate(who, self.code(enrolment.secret, -1)).ok
        return enrolment.secret


def make_env(engine: Engine, clock: Callable[[], float] | None = None) -> Env:
    store = SqlOtpStore(session_factory(engine))
    c = Clock(T0)
    return Env(TotpService(store, KEY, clock=clock or c), store, engine, c)


@pytest.fixture
def sqlite_env(tmp_path: Any) -> Iterator[Env]:
    from idp.runtime.db import make_engine, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'govtrust.db'}")
    upgrade(engine)
    yield make_env(engine)
    engine.dispose()


@pytest.fixture
def env(migrated_engine: Engine) -> Env:
    """SQLite and PostgreSQL alike."""
    return make_env(migrated_engine)


def oathtool(secret: str, at: float | None = None) -> str:
    args = ["oathtool", "--totp", "-b", secret]
    if at is not None:
        args += ["-N", f"@{int(at)}"]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()


# -- enrolment ------------------------------------------------------------------------
def test_enrolment_shows_uri_and_qr_and_stays_pending(sqlite_env: Env) -> None:
    e = sqlite_env.svc.begin_enrolment(person())
    assert len(e.secret) == 32 and pyotp.TOTP(e.secret).byte_secret().__len__() == 20
    parts = urlsplit(e.uri)
    assert parts.scheme == "otpauth" and parts.netloc == "totp"
    assert parts.path == "/GovTrust:zhangwei"
    q = parse_qs(parts.query)
    assert q["secret"] == [e.secret] and q["issuer"] == ["GovTrust"]
    assert e.svg.startswith("<svg") and "path" in e.svg
    assert "█" in e.text_qr or "▀" in e.text_qr
    status = sqlite_env.svc.status(person())
    assert status.enrolled and not status.active
    # pending: not yet usable for login
    assert sqlite_env.svc.verify(person(), sqlite_env.code(e.secret)).result \
        is OtpResult.NOT_ENROLLED
    assert sqlite_env.audits("otp.enroll") == 1


def test_activation_needs_a_correct_code(sqlite_env: Env) -> None:
    e = sqlite_env.svc.begin_enrolment(person())
    wrong = sqlite_env.svc.activate(person(), "000000" if sqlite_env.code(e.secret) != "000000"
                                    else "111111")
    assert wrong.result is OtpResult.WRONG and wrong.failures == 1
    assert not sqlite_env.svc.status(person()).active
    assert sqlite_env.svc.activate(person(), sqlite_env.code(e.secret)).ok
    assert sqlite_env.svc.status(person()).active
    assert sqlite_env.audits("otp.activate") == 1


def test_enrolling_again_while_active_is_refused(sqlite_env: Env) -> None:
    sqlite_env.enrolled()
    with pytest.raises(AlreadyEnrolled):
        sqlite_env.svc.begin_enrolment(person())


def test_a_new_pending_secret_replaces_the_old_one(sqlite_env: Env) -> None:
    first = sqlite_env.svc.begin_enrolment(person())
    second = sqlite_env.svc.begin_enrolment(person())
    assert first.secret != second.secret
    code = sqlite_env.code(first.secret)
    if code != sqlite_env.code(second.secret):
        assert sqlite_env.svc.activate(person(), code).result is OtpResult.WRONG
    assert sqlite_env.svc.activate(person(), sqlite_env.code(second.secret)).ok


# -- the oathtool acceptance test, both databases --------------------------------------
@pytest.mark.postgres
def test_oathtool_code_accepted_once_then_refused(env: Env) -> None:
    secret = env.enrolled()
    code = oathtool(secret, env.clock.at)
    assert code == env.code(secret)
    first = env.svc.verify(person(), code)
    assert first.ok and first.step == int(T0) // STEP_SECONDS
    second = env.svc.verify(person(), code)
    assert second.result is OtpResult.REPLAYED
    assert env.audits("otp.verify") == 1 and env.audits("otp.replayed") == 1


def test_oathtool_now_with_the_real_clock(tmp_path: Any) -> None:
    from idp.runtime.db import make_engine, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    upgrade(engine)
    real = make_env(engine, clock=time.time)
    e = real.svc.begin_enrolment(person())
    assert real.svc.activate(person(), pyotp.TOTP(e.secret).at(time.time() - 30)).ok
    code = oathtool(e.secret)
    assert real.svc.verify(person(), code).ok
    assert real.svc.verify(person(), code).result is OtpResult.REPLAYED
    engine.dispose()


# -- the window ---------------------------------------------------------------------
@pytest.mark.parametrize(("offset", "result"), [
    (0, OtpResult.OK), (1, OtpResult.OK), (-1, OtpResult.OK),
    (2, OtpResult.WRONG), (-2, OtpResult.WRONG), (-10, OtpResult.WRONG),
])
def test_window_of_one_step(sqlite_env: Env, offset: int, result: OtpResult) -> None:
    secret = sqlite_env.enrolled()
    sqlite_env.clock.at += 5 * STEP_SECONDS  # well past the activation step
    code = sqlite_env.code(secret, offset)
    # A code outside the window may by chance equal one inside it (about 3 in a
    # million): move on a step until it does not, so the case tests what it says.
    while offset not in (-1, 0, 1) and code in {sqlite_env.code(secret, o) for o in (-1, 0, 1)}:
        sqlite_env.clock.at += STEP_SECONDS
        code = sqlite_env.code(secret, offset)
    assert sqlite_env.svc.verify(person(), code).result is result


def test_previous_window_code_used_twice(sqlite_env: Env) -> None:
    secret = sqlite_env.enrolled()
    sqlite_env.clock.at += 5 * STEP_SECONDS
    previous = sqlite_env.code(secret, -1)
    assert sqlite_env.svc.verify(person(), previous).ok
    assert sqlite_env.svc.verify(person(), previous).result is OtpResult.REPLAYED


def test_an_older_step_after_a_newer_one_is_refused(sqlite_env: Env) -> None:
    secret = sqlite_env.enrolled()
    sqlite_env.clock.at += 5 * STEP_SECONDS
    assert sqlite_env.svc.verify(person(), sqlite_env.code(secret, 0)).ok
    older = sqlite_env.code(secret, -1)
    assert sqlite_env.svc.verify(person(), older).result is OtpResult.REPLAYED


def test_the_activation_code_cannot_log_in(sqlite_env: Env) -> None:
    e = sqlite_env.svc.begin_enrolment(person())
    code = sqlite_env.code(e.secret)
    assert sqlite_env.svc.activate(person(), code).ok
    assert sqlite_env.svc.verify(person(), code).result is OtpResult.REPLAYED


# -- malformed: refused before any database work -----------------------------------------
class NoDatabase:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was touched: {name}")


@pytest.mark.parametrize("code", [
    "12345a", "abcdef", "12345", "1234567", "", "１２３４５６", "12 34 5", "123456\x00",
    "٣٣٣٣٣٣", "0x1234",
])
def test_letters_or_wrong_length_refused_before_any_database_work(code: str) -> None:
    svc = TotpService(NoDatabase(), KEY)
    assert svc.verify(person(), code).result is OtpResult.MALFORMED
    assert svc.activate(person(), code).result is OtpResult.MALFORMED
    assert svc.use_recovery_code(person(), code).result is OtpResult.MALFORMED


def test_spaces_are_tolerated() -> None:
    assert well_formed_code(" 123 456 ") == "123456"


def test_wrong_codes_are_counted_and_reset_by_success(sqlite_env: Env) -> None:
    secret = sqlite_env.enrolled()
    sqlite_env.clock.at += 5 * STEP_SECONDS
    good = sqlite_env.code(secret)
    bad = next(c for c in ("000000", "111111", "222222") if c != good
               and c not in {sqlite_env.code(secret, o) for o in (-1, 1)})
    assert [sqlite_env.svc.verify(person(), bad).failures for _ in range(3)] == [1, 2, 3]
    assert sqlite_env.svc.failures(person()) == 3
    assert sqlite_env.audits("otp.failed") == 3
    assert sqlite_env.svc.verify(person(), good).ok
    assert sqlite_env.svc.failures(person()) == 0


# -- concurrency: the same code twice at once, exactly one success ----------------------
@pytest.mark.postgres
def test_concurrent_verifications_of_one_code(env: Env) -> None:
    secret = env.enrolled()
    env.clock.at += 5 * STEP_SECONDS
    code = env.code(secret)
    barrier = threading.Barrier(6)
    results: list[OtpResult] = []

    def attempt() -> None:
        barrier.wait()
        results.append(env.svc.verify(person(), code).result)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted([OtpResult.OK] + [OtpResult.REPLAYED] * 5)
    assert env.audits("otp.verify") == 1


# -- recovery codes --------------------------------------------------------------------
@pytest.mark.postgres
def test_stolen_recovery_code_used_twice(env: Env) -> None:
    env.enrolled()
    codes = env.svc.new_recovery_codes(person())
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(len(c) == 11 and c[5] == "-" for c in codes)
    with env.engine.connect() as c:
        stored = [r.code_hash for r in c.execute(select(otp_recovery_codes.c.code_hash))]
    assert len(stored) == 10
    assert not any(code.replace("-", "") in h for code in codes for h in stored)

    first = env.svc.use_recovery_code(person(), codes[3].upper())
    assert first.ok and first.recovery_codes_left == 9
    again = env.svc.use_recovery_code(person(), codes[3])
    assert again.result is OtpResult.REPLAYED and again.failures == 1
    assert env.audits("otp.recovery_used") == 1
    assert env.audits("otp.recovery_replayed") == 1


@pytest.mark.postgres
def test_concurrent_use_of_one_recovery_code(env: Env) -> None:
    env.enrolled()
    code = env.svc.new_recovery_codes(person())[0]
    barrier = threading.Barrier(4)
    results: list[OtpResult] = []

    def attempt() -> None:
        barrier.wait()
        results.append(env.svc.use_recovery_code(person(), code).result)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(OtpResult.OK) == 1


def test_unknown_recovery_code_is_a_counted_guess(sqlite_env: Env) -> None:
    sqlite_env.enrolled()
    sqlite_env.svc.new_recovery_codes(person())
    out = sqlite_env.svc.use_recovery_code(person(), "aaaaa-aaaaa")
    assert out.result is OtpResult.WRONG and out.failures == 1
    assert sqlite_env.audits("otp.recovery_failed") == 1


def test_new_recovery_codes_replace_the_old(sqlite_env: Env) -> None:
    sqlite_env.enrolled()
    old = sqlite_env.svc.new_recovery_codes(person())
    sqlite_env.svc.new_recovery_codes(person())
    assert sqlite_env.svc.use_recovery_code(person(), old[0]).result is OtpResult.WRONG
    assert sqlite_env.svc.status(person()).recovery_codes_left == 10


# -- reset and encryption at rest ---------------------------------------------------------
def test_administrator_reset_is_audited(sqlite_env: Env) -> None:
    secret = sqlite_env.enrolled()
    sqlite_env.svc.new_recovery_codes(person())
    assert sqlite_env.svc.reset(person(), actor="admin")
    with sqlite_env.engine.connect() as c:
        row = c.execute(select(audit_log).where(audit_log.c.action == "otp.reset")).one()
        assert c.execute(select(otp_recovery_codes)).first() is None
    assert row.actor == "admin" and row.target == "person:zhangwei"
    assert secret not in row.details
    assert sqlite_env.svc.verify(person(), sqlite_env.code(secret, 1)).result \
        is OtpResult.NOT_ENROLLED
    assert not sqlite_env.svc.reset(person(), actor="admin")
    sqlite_env.enrolled()  # and a new authenticator can be enrolled


def test_secret_is_encrypted_at_rest_and_bound_to_the_person(sqlite_env: Env) -> None:
    secret = sqlite_env.enrolled()
    with sqlite_env.engine.connect() as c:
        blob = bytes(c.execute(select(otp_credentials.c.secret)).scalar_one())
        audit_text = " ".join(r.details for r in c.execute(select(audit_log.c.details)))
    assert secret.encode() not in blob and pyotp.TOTP(secret).byte_secret() not in blob
    assert secret not in audit_text
    # the same ciphertext under another person's entryUUID does not decrypt
    lisi = person("lisi")
    sqlite_env.svc.begin_enrolment(lisi)
    with sqlite_env.engine.begin() as c:
        c.execute(update(otp_credentials).where(otp_credentials.c.person_uuid == "uuid-lisi")
                  .values(secret=blob))
    with pytest.raises(UndecryptableSecret):
        sqlite_env.svc.activate(lisi, "123456")


def test_another_otp_key_cannot_decrypt(sqlite_env: Env) -> None:
    sqlite_env.enrolled()
    other = TotpService(sqlite_env.store, b"a different otp-key, 32 bytes!!!",
                        clock=sqlite_env.clock)
    with pytest.raises(UndecryptableSecret):
        other.verify(person(), "123456")


def test_too_many_failures_lock_the_authenticator_for_a_while(sqlite_env: Env) -> None:
    secret = sqlite_env.enrolled()
    svc = TotpService(sqlite_env.store, KEY, clock=sqlite_env.clock, max_failures=3,
                      lockout_seconds=900)
    sqlite_env.clock.at += 5 * STEP_SECONDS
    good = sqlite_env.code(secret)
    bad = next(c for c in ("000000", "111111", "222222") if c != good
               and c not in {sqlite_env.code(secret, o) for o in (-1, 1)})
    assert [svc.verify(person(), bad).result for _ in range(4)] == [
        OtpResult.WRONG, OtpResult.WRONG, OtpResult.WRONG, OtpResult.LOCKED]
    assert svc.verify(person(), good).result is OtpResult.LOCKED  # not even checked
    assert svc.use_recovery_code(person(), "aaaaa-aaaaa").result is OtpResult.LOCKED
    sqlite_env.clock.at += 901
    assert svc.verify(person(), sqlite_env.code(secret)).ok
    assert svc.failures(person()) == 0


@pytest.mark.parametrize("result", list(OtpResult))
def test_every_result_names_its_catalog_key(result: OtpResult) -> None:
    # the words are idp.web.catalog's (tests/web/test_catalog.py checks both languages)
    assert result.message_key == f"otp.{result.value}"
