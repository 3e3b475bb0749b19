"""Browser tests of the web console: Debian's headless Chromium driven by Playwright
(no browser download), against the IdP served in-process on a free loopback port,
over the real directory (the ``slapd`` fixture) and a real CA on SQLite.

Fixtures: ``browser`` (one Chromium per session), ``world`` (a served IdP with a
civil servant and a security administrator), ``Visit`` helpers that screenshot
every page, run the accessibility check in the page, and fail on any request
that leaves the page's origin.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from directory.model import Person
from directory.service import DirectoryService
from directory.slapd import ManagedSlapd
from idp.login.forwarded import TrustedProxies
from idp.runtime.app import create_app
from idp.runtime.config import Config
from idp.runtime.services import Services
from tests.fixtures.idp import prepare_database
from tests.fixtures.postgres import free_port
from tests.fixtures.servers import serving

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--no-first-run",
                 "--disable-component-update", "--disable-sync"]
PASSWORD = "Gov-Trust-2026-pass!"
ADMIN_GROUP = "security-admins"

# Basic structure every page must have: a language, one h1, a title, a label (or
# aria-label) on every form control, alt text on every image, a name on every SVG
# image, link and button, no duplicate ids (labels point at ids), and text with
# enough contrast against its background.
A11Y_CHECK = r"""() => {
  const problems = [];
  const lang = document.documentElement.getAttribute('lang');
  if (!lang || !lang.trim()) problems.push('html has no lang');
  const h1 = document.querySelectorAll('h1').length;
  if (h1 !== 1) problems.push('expected one h1, found ' + h1);
  if (!document.title.trim()) problems.push('empty title');
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (el.type === 'hidden') continue;
    const byFor = el.id && document.querySelector('label[for="' + CSS.escape(el.id) + '"]');
    const named = byFor || el.closest('label') || el.getAttribute('aria-label')
      || el.getAttribute('aria-labelledby');
    if (!named) problems.push('no label: ' + el.outerHTML.slice(0, 80));
  }
  for (const img of document.querySelectorAll('img')) {
    if (!img.hasAttribute('alt')) problems.push('img without alt: ' + img.src);
  }
  for (const svg of document.querySelectorAll('svg[role=img]')) {
    if (!svg.getAttribute('aria-label') && !svg.querySelector('title'))
      problems.push('svg image without a name');
  }
  const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
  const dup = ids.filter((id, i) => ids.indexOf(id) !== i);
  if (dup.length) problems.push('duplicate ids: ' + dup.join(','));
  for (const el of document.querySelectorAll('a[href], button')) {
    if (!el.textContent.trim() && !el.getAttribute('aria-label'))
      problems.push('no accessible name: ' + el.outerHTML.slice(0, 80));
  }
  // WCAG 2.1 contrast (1.4.3): 4.5:1 for text, 3:1 for large text, against the
  // nearest opaque background up the tree.
  const rgb = c => (c.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest('svg') || el.closest('.skip')) continue;
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length) continue;
    const st = getComputedStyle(el);
    const fg = rgb(st.color).slice(0, 3), bg = background(el);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(st.fontSize), bold = parseInt(st.fontWeight, 10) >= 700;
    const need = (size >= 24 || (bold && size >= 18.66)) ? 3 : 4.5;
    if (ratio < need)
      problems.push('contrast ' + ratio.toFixed(2) + ': ' + el.outerHTML.slice(0, 60));
  }
  return problems;
}"""


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("chromium is not installed: run scripts/setup")
    from playwright import sync_api  # the test extra installs it; a missing one fails

    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


@dataclass
class World:
    base: str
    services: Services
    person: Person
    admin: Person


@pytest.fixture
def world(directory_service: DirectoryService, slapd: ManagedSlapd,
          tmp_path: Path) -> Iterator[World]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = Config.load(tmp_path / "home", environ={"GOVTRUST_IDP_ISSUER": base})
    config.ensure_secrets()
    services = Services(config)
    prepare_database(services)
    # The real directory over the test slapd, auditing into the IdP's own database
    # (so the console's audit pages and sign-in lists see everything); it is also
    # the password authenticator, as in `govtrust serve`.
    services.directory_gateway = directory_service.gateway
    services.directory = DirectoryService(slapd.settings, directory_service.gateway,
                                          services.audit, services.outbox)
    services.authenticator = services.directory
    services.provider.keys.ensure()
    # as behind the nginx front: it forwards client certificates from 127.0.0.1
    services.provider.trusted_proxies = TrustedProxies.parse(["127.0.0.1"])
    services.ca.initialize(actor="test")
    d = services.directory
    d.ensure_department("市财政局/预算处")
    d.ensure_department("市网信办/安全处")
    person = d.add_person(uid="lina", name="李娜", department="市财政局/预算处",
                          title="处长", password=PASSWORD)
    d.add_person(uid="wangfang", name="王芳", department="市网信办/安全处", title="安全管理员",
                 password=PASSWORD)
    d.add_group(ADMIN_GROUP, description="security administrators")
    d.add_member(ADMIN_GROUP, "wangfang")
    admin = d.show("wangfang")
    with serving(create_app(services), port):
        yield World(base, services, person, admin)
    services.close()


@dataclass
class Visit:
    """One browser context (one person), confined to the IdP's origin."""

    context: Any
    base: str
    shots: Path
    outside: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.context.set_default_timeout(10_000)
        self.context.route("**/*", self._only_own_origin)
        self.page = self.context.new_page()

    def _only_own_origin(self, route: Any) -> None:
        url = route.request.url
        if url == self.base or url.startswith(self.base + "/"):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def check(self, name: str) -> None:
        """Screenshot the page and run the accessibility check in it."""
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)
        problems = self.page.evaluate(A11Y_CHECK)
        assert problems == [], (name, self.page.url, problems)
        assert self.outside == [], self.outside

    def go(self, path: str, name: str | None = None) -> Any:
        resp = self.page.goto(self.base + path)
        if name:
            self.check(name)
        return resp


@pytest.fixture
def visits(browser: Any, screenshots: Path, world: World) -> Iterator[Any]:
    made: list[Visit] = []

    def make(**options: Any) -> Visit:
        options.setdefault("locale", "zh-CN")  # what a civil servant's browser sends
        v = Visit(browser.new_context(accept_downloads=True, **options), world.base,
                  screenshots)
        made.append(v)
        return v

    yield make
    for v in made:
        assert v.outside == [], v.outside
        v.context.close()
