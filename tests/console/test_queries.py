"""The console's framework-free parts: who may administer, the failed sign-in
buckets, audit filters, and the server-drawn chart."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from directory.model import Person
from idp.console.chart import bar_chart_svg
from idp.console.queries import (
    AuditFilter,
    active_sessions,
    admin_refusal,
    audit_records,
    device_label,
    failed_sign_ins_by_hour,
    level_of_acr,
    parse_day,
)
from idp.runtime.services import Services
from pki.audit_store import append
from policies.assurance import PersonFacts, SessionFacts, load_policy

POLICY = load_policy()
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def admin(*groups: str) -> PersonFacts:
    return PersonFacts("wangfang", "active", ("市网信办",), frozenset(groups))


def did(*methods: str) -> SessionFacts:
    facts = SessionFacts.empty(NOW)
    for m in methods:
        facts = facts.with_method(m, NOW - timedelta(minutes=1))
    return facts


def test_admin_needs_the_group_and_level_3() -> None:
    ok = admin("security-admins")
    assert admin_refusal(ok, did("pwd", "swk"), now=NOW, policy=POLICY) is None
    assert admin_refusal(ok, did("pwd", "hwk"), now=NOW, policy=POLICY) is None
    outsider = admin_refusal(admin("财务审核组"), did("pwd", "hwk"), now=NOW, policy=POLICY)
    assert outsider is not None and outsider.reason == "group"
    assert level_of_acr("urn:unknown", POLICY) == 0


def test_admin_with_a_password_is_offered_the_certificate() -> None:
    low = admin_refusal(admin("security-admins"), did("pwd"), now=NOW, policy=POLICY)
    assert low is not None and low.reason == "level" and low.level == 2
    assert low.step_up == (("swk",), ("hwk",))


def test_admin_with_nothing_counted_is_refused_at_level_0() -> None:
    refused = admin_refusal(admin("security-admins"), did(), now=NOW, policy=POLICY)
    assert refused is not None and refused.reason == "level" and refused.level == 0


def test_failed_sign_ins_per_hour(services: Services) -> None:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    with services.sessions.begin() as s:
        for minutes, result in ((5, "bad_credentials"), (65, "locked"), (70, "ok"),
                                (23 * 60 + 59, "bad_credentials"), (25 * 60, "bad_credentials")):
            append(s, actor="lina", action="idp.login", target="lina",
                   details={"result": result}, at=now - timedelta(minutes=minutes))
    buckets = failed_sign_ins_by_hour(services.sessions, now)
    assert len(buckets) == 24 and sum(buckets) == 3
    assert buckets[-1] == 1 and buckets[-2] == 1 and buckets[0] == 1


def test_audit_filters(services: Services) -> None:
    at = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    with services.sessions.begin() as s:
        append(s, actor="wangfang", action="cert.revoke", target="cert:ab",
               details={"owner": "lina"}, at=at)
        append(s, actor="wangfang", action="directory.suspend", target="zhangwei", at=at)
        append(s, actor="lina", action="idp.login", target="lina",
               details={"result": "ok"}, at=at + timedelta(days=2))
    db = services.sessions
    assert [r.action for r in audit_records(db, AuditFilter(person="lina"))] == [
        "idp.login", "cert.revoke"]
    assert [r.target for r in audit_records(db, AuditFilter(actor="wangfang",
                                                            action="directory."))] == [
        "zhangwei"]
    assert len(audit_records(db, AuditFilter(since=date(2026, 11, 21)))) == 1
    assert len(audit_records(db, AuditFilter(until=date(2026, 11, 20)))) == 2
    assert audit_records(db, AuditFilter(action="%")) == []  # LIKE wildcards are literal
    assert parse_day("2026-13-01") is None and parse_day("") is None


def test_chart_is_accessible_svg() -> None:
    svg = bar_chart_svg([0, 3, 1], "3 <failed>", first_label="10:00", last_label="13:00")
    assert svg.startswith("<svg") and 'role="img"' in svg
    assert 'aria-label="3 &lt;failed&gt;"' in svg and svg.count("<rect") == 3
    assert "max 3" in svg and "<script" not in svg
    empty = bar_chart_svg([0] * 24, "none")
    assert "max 0" in empty and 'height="0.0"' in empty


@pytest.mark.parametrize(("user_agent", "label"), [
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Safari/537.36", "Chrome 120 · Windows"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chromium/156.0.0.0 Chrome/156.0.0.0 Safari/537.36", "Chromium 156 · Linux"),
    ("Mozilla/5.0 (X11; UOS; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
     "Firefox 128 · UOS"),
    ("curl/7.88.1", "curl 7"),
    ("", ""),
    ("某个自定义客户端" * 20, ("某个自定义客户端" * 20)[:60]),
])
def test_device_label(user_agent: str, label: str) -> None:
    assert device_label(user_agent) == label


def test_sessions_show_their_device_and_address(services: Services) -> None:
    person = Person(uid="lina", dn="uid=lina,ou=people,dc=x", entry_uuid="u-lina",
                    display_name="李娜", department=("市财政局", "预算处"))
    store = services.provider.sessions
    store.create(person, user_agent="curl/8.0\x00\x1b[31m", address="127.0.0.5")
    store.create(person, user_agent="x" * 1000, address="")
    rows = active_sessions(services.sessions, "u-lina", datetime.now(UTC).timestamp(),
                           POLICY)
    assert {(r.device, r.address) for r in rows} == {("curl 8", "127.0.0.5"), ("x" * 60, "")}


def test_audit_days_are_the_readers_days(services: Services) -> None:
    from zoneinfo import ZoneInfo

    db = services.sessions
    with db.begin() as s:  # 23:30 UTC on the 20th is already the 21st in Beijing
        append(s, actor="a", action="x.tz", target="t",
               at=datetime(2026, 11, 20, 23, 30, tzinfo=UTC))
    beijing = ZoneInfo("Asia/Shanghai")
    flt = AuditFilter(action="x.tz", since=date(2026, 11, 21), until=date(2026, 11, 21))
    assert len(audit_records(db, flt, zone=beijing)) == 1
    assert audit_records(db, flt) == []  # the same day in UTC does not contain it


def test_unknown_time_zone_is_a_configuration_error() -> None:
    from idp.runtime.config import ConfigError, time_zone

    with pytest.raises(ConfigError):
        time_zone("Mars/Olympus_Mons")
    with pytest.raises(ConfigError):
        time_zone("../../etc/passwd")


def test_a_page_of_sessions_is_bounded_and_counts_the_rest(services: Services) -> None:
    """A person who never logs out piles up sessions: a page shows the newest
    SESSIONS_SHOWN and says how many there are (the soak found the page, and the
    worker's memory, growing with every login); ending them still sees them all."""
    from idp.console.queries import SESSIONS_SHOWN, count_person_sessions

    person = Person(uid="zhaoli", dn="uid=zhaoli,ou=people,dc=x", entry_uuid="u-zhaoli",
                    display_name="赵丽", department=("市财政局", "预算处"))
    store = services.provider.sessions
    for _ in range(SESSIONS_SHOWN + 7):
        store.create(person)
    now = datetime.now(UTC).timestamp()
    page = active_sessions(services.sessions, "u-zhaoli", now, POLICY, limit=SESSIONS_SHOWN)
    assert len(page) == SESSIONS_SHOWN
    assert count_person_sessions(services.sessions, "u-zhaoli", now) == SESSIONS_SHOWN + 7
    assert len(active_sessions(services.sessions, "u-zhaoli", now, POLICY)) == SESSIONS_SHOWN + 7
