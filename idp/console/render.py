"""The console's request helpers: who is signed in, rendering with the CSRF token
and language, and the guards every view starts with. Built on ``idp.web.kit``
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from flask import Response, current_app, redirect, render_template
from flask import request as req
from werkzeug.urls import iri_to_uri

from directory.model import Person
from idp.console import EXTENSION, queries
from idp.login.sessions import SsoSession
from idp.web import catalog, i18n
from idp.web.kit import (
    CSRF_COOKIE,
    csrf_seed,
    csrf_token,
    current_session,
    page_lang,
    set_cookie,
)
from policies.assurance import PersonFacts, SessionFacts

if TYPE_CHECKING:
    from idp.console.ports import ConsoleServices


def services() -> ConsoleServices:
    found: ConsoleServices = current_app.extensions[EXTENSION]
    return found


@dataclass(frozen=True)
class Viewer:
    """The signed-in person looking at the page, and what they may do.

    ``counted`` is what the session did minus the factors enrolled in it
    (``policies.assurance.counted_methods``); ``level`` and ``refusal`` are judged
    on it, never on the stored ``acr`` alone."""

    session: SsoSession
    person: Person
    refusal: queries.AdminRefusal | None
    counted: SessionFacts
    level: int

    @property
    def is_admin(self) -> bool:
        return self.refusal is None

    @property
    def admin_member(self) -> bool:
        return queries.ADMIN_GROUP in self.person.groups


def login_redirect() -> Response:
    # ASCII (percent-encoded) so ``safe_return`` accepts a path with a Chinese uid
    back = iri_to_uri(req.full_path) if req.method == "GET" else "/console/"
    back = back.rstrip("?")
    return redirect("/login?" + urlencode({"return": back}), 302)  # type: ignore[return-value]


def viewer() -> Viewer | None:
    sess = current_session()
    if sess is None:
        return None
    try:
        person = services().directory.show(sess.uid)
    except Exception:  # a person removed from the directory: treat as signed out
        return None
    svc = services()
    policy = svc.assurance_policy
    now = datetime.now(UTC)
    strong = svc.provider.strong
    counted = sess.facts() if strong is None else strong.counted(sess, now=now)
    refusal = queries.admin_refusal(PersonFacts.of(person), counted, now=now, policy=policy)
    return Viewer(sess, person, refusal, counted, policy.session_level(counted, now))


def switch_url(lang: str) -> str:
    args = [(k, v) for k, v in req.args.items(multi=True) if k != "lang"]
    return req.path + "?" + urlencode([*args, ("lang", lang)])


def render(template: str, who: Viewer | None, status: int = 200, **ctx: Any) -> Response:
    lang = page_lang()
    other = "en" if lang == "zh-CN" else "zh-CN"
    seed, new = csrf_seed()
    html = render_template(template, t=words(lang), lang=lang, switch_lang=other,
                           switch_url=switch_url(other), csrf=csrf_token(seed), who=who,
                           path=req.path, **ctx)
    resp = Response(html, status=status, mimetype="text/html")
    if new:
        set_cookie(resp, CSRF_COOKIE, seed)
    if req.args.get("lang") in i18n.LANGS:
        set_cookie(resp, i18n.COOKIE, lang, max_age=365 * 86400)
    return resp


def message(who: Viewer | None, title_key: str, text: str, status: int = 200,
            back: str | None = None, back_label: str | None = None,
            step_up: Sequence[tuple[str, str, str]] = ()) -> Response:
    """A short page; ``back`` is a link, labelled "back" unless ``back_label`` says;
    ``step_up`` lists (id, link, label key) of the ways to raise the session's level."""
    return render("console/message.html", who, status=status, title_key=title_key, text=text,
                  back=back, back_label=back_label, step_up=step_up)


def confirmed() -> bool:
    return req.form.get("confirm") == "yes"


def words(lang: str) -> Mapping[str, str]:
    """What the console's templates call ``t``: ``console.*`` words, then the IdP
    pages' ``sso.*`` ones, so shared words (user name, errors) are written once."""
    return catalog.scope(lang, "console", "sso")


def tr(key: str, **fmt: Any) -> str:
    """``words()[key]`` in this page's language, with ``{placeholders}`` filled."""
    text = words(page_lang())[key]
    return text.format(**fmt) if fmt else text


def current_lang() -> str:
    return page_lang()
