"""Acceptance for the key management centre, in a real browser.

A civil servant gets an escrowed encryption certificate on her keys page (the
key as a PKCS#12). A security administrator files a recovery request with a
reason; three key recovery agents exist: the first approves, tries again and is
refused; the second tries from a level-2 session and is refused, then approves
from a level-3 session; the administrator is refused as an approver of her own
request, then collects the key — the same key the person received. Every step is
in the audit log and the hash chain verifies. Sessions are started in the
session store at the level each step needs (``session``), one browser context
per person, as four people at four desks would.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import select

from directory.model import Person
from idp.login.sessions import COOKIE_NAME
from pki.audit_store import audit_log
from policies.assurance import acr_for
from tests.browser.conftest import PASSWORD, Visit, World

pytestmark = pytest.mark.slapd

AGENTS = "key-recovery-agents"
P12_PASS = "mein-schluessel-2026"
COLLECT_PASS = "recovered-key-2026"


def session(v: Visit, world: World, person: Person, level: int = 3) -> None:
    """A session at ``level`` (3: password + a certificate she held before it) for
    ``person``: the certificate is issued first, as a factor established earlier."""
    amr = ("pwd", "swk") if level >= 3 else ("pwd",)
    serial = None
    if level >= 3:
        held = world.services.ca.issue_pkcs12(person, "user-auth", b"held-before-2026")
        serial = held.issued.record.serial
        time.sleep(1.1)  # the CA records issued_at to the second: strictly before the session
    cookie, _ = world.services.provider.sessions.create(person, amr=amr, acr=acr_for(level),
                                                        cert_serial=serial)
    v.context.add_cookies([{"name": COOKIE_NAME, "value": cookie, "url": world.base}])


def pkcs8(p12: bytes, passphrase: str) -> bytes:
    key, _, _ = pkcs12.load_key_and_certificates(p12, passphrase.encode())
    assert key is not None
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def download(v: Visit, button: str) -> bytes:
    with v.page.expect_download() as info:
        v.page.click(button)
    return Path(info.value.path()).read_bytes()


def refusal(v: Visit, text: str) -> None:
    v.page.wait_for_selector("#message")
    assert text in v.page.inner_text("#message"), v.page.inner_text("#message")


def test_two_of_three_recovery_gives_the_requester_the_same_key(world: World,
                                                                visits: Any) -> None:
    d = world.services.directory
    d.add_group(AGENTS, description="key recovery agents")
    agents = []
    for uid, name in (("zhaolei", "赵磊"), ("sunli", "孙丽"), ("zhouqiang", "周强")):
        d.add_person(uid=uid, name=name, department="市网信办/安全处", title="密钥恢复员",
                     password=PASSWORD)
        d.add_member(AGENTS, uid)
        agents.append(d.show(uid))

    # the person: an escrowed encryption certificate, the key as her PKCS#12
    me = visits()
    session(me, world, world.person)
    me.go("/console/keys", "kmc-01-keys")
    me.page.fill("#escrow-pass", P12_PASS)
    original = pkcs8(download(me, "#escrow-submit"), P12_PASS)
    me.go("/console/keys", "kmc-02-keys-escrowed")
    serial = me.page.locator("#my-keys tbody tr").first.get_attribute("data-serial")
    assert serial

    # the requester (a security administrator) files a request with a reason
    admin = visits()
    session(admin, world, world.admin)
    admin.go("/console/key-recovery", "kmc-03-recovery")
    admin.page.fill("#request-serial", serial)
    admin.page.fill("#request-reason", "市纪委协查函 2026-017：调取预算处加密公文")
    admin.page.click("#request-submit")
    admin.page.wait_for_selector("#recovery-requests")
    row = admin.page.locator("#recovery-requests tbody tr").first
    rid = row.get_attribute("data-request")
    assert rid and "待批准" in row.inner_text()
    admin.check("kmc-04-requested")

    # the first agent approves, and a second approval of hers is refused
    first = visits()
    session(first, world, agents[0])
    first.go("/console/key-recovery", "kmc-05-agent")
    first.page.click(f"#approve-{rid}")
    first.page.wait_for_selector("#recovery-requests")
    assert "1/2" in first.page.locator(f"tr[data-request='{rid}']").inner_text()
    first.page.request.post(  # the button is gone; a crafted second POST is refused
        world.base + f"/console/key-recovery/{rid}/approve",
        form={"csrf": first.page.locator("input[name=csrf]").first.get_attribute("value")
              or ""})
    assert world.services.kmc.get_request(rid).approvals == ("zhaolei",)  # type: ignore[union-attr]

    # the second agent, at level 2: refused; at level 3: approved
    low = visits()
    session(low, world, agents[1], level=2)
    low.go("/console/key-recovery")
    low.page.click(f"#approve-{rid}")
    refusal(low, "三级会话")
    low.check("kmc-06-level2-refused")
    second = visits()
    session(second, world, agents[1])
    second.go("/console/key-recovery")
    second.page.click(f"#approve-{rid}")
    second.page.wait_for_selector("#recovery-requests")
    assert "已批准" in second.page.locator(f"tr[data-request='{rid}']").inner_text()

    # only the requester collects, once: the same key the person received
    third = visits()
    session(third, world, agents[2])
    third.go("/console/key-recovery")
    assert third.page.locator(f"#collect-{rid}").count() == 0
    admin.go("/console/key-recovery", "kmc-07-approved")
    admin.page.fill(f"#collect-pass-{rid}", COLLECT_PASS)
    recovered = pkcs8(download(admin, f"#collect-{rid}"), COLLECT_PASS)
    assert recovered == original

    with world.services.engine.connect() as conn:
        trail = conn.execute(select(audit_log.c.action, audit_log.c.actor,
                                    audit_log.c.details)
                             .where(audit_log.c.action.like("kmc.%"))
                             .order_by(audit_log.c.seq)).all()
    steps = [(a, actor) for a, actor, _ in trail]
    assert steps == [
        ("kmc.generated", "lina"), ("kmc.escrowed", "lina"), ("kmc.exported", "lina"),
        ("kmc.recovery_requested", "wangfang"), ("kmc.recovery_approved", "zhaolei"),
        ("kmc.recovery_refused", "zhaolei"), ("kmc.recovery_refused", "sunli"),
        ("kmc.recovery_approved", "sunli"), ("kmc.exported", "wangfang")]
    assert all(serial in details for a, _, details in trail if a != "kmc.generated")
    assert world.services.verify_audit().ok


def test_requester_cannot_approve_own_request(world: World, visits: Any) -> None:
    d = world.services.directory
    d.add_group(AGENTS, description="key recovery agents")
    d.add_member(AGENTS, "wangfang")  # an agent who is also the requester
    me = visits()
    session(me, world, world.person)
    me.go("/console/keys")
    me.page.fill("#escrow-pass", P12_PASS)
    download(me, "#escrow-submit")
    serial = world.services.kmc.escrowed_keys("lina")[0].serial
    assert serial
    admin = visits()
    session(admin, world, d.show("wangfang"))
    admin.go("/console/key-recovery")
    admin.page.fill("#request-serial", serial)
    admin.page.fill("#request-reason", "离职交接")
    admin.page.click("#request-submit")
    admin.page.wait_for_selector("#recovery-requests")
    rid = admin.page.locator("#recovery-requests tbody tr").first.get_attribute("data-request")
    admin.page.click(f"#approve-{rid}")
    refusal(admin, "申请人不能批准")
    admin.check("kmc-08-requester-refused")
    assert world.services.kmc.get_request(rid or "").approvals == ()  # type: ignore[union-attr]
