"""Liveness and readiness of a GovTrust node (``/healthz``, ``/readyz``), framework-free.

``/healthz`` says the process serves (always 200 while it can answer at all);
``/readyz`` says whether this node can do its work now: the database answers,
the directory answers (IdP only: the PKI's public service needs no directory,
so an LDAP outage must not take OCSP out of a load balancer's rotation), and
every configured signing key signs — the issuing CA and OCSP responder keys of
each hierarchy (ECDSA, and SM2 when on) and the IdP's token signing key. The
root key is not checked: a production home may keep it offline. A *warning*
check reports without making the node unready: the root CRL nearing its
nextUpdate (signed only at the root ceremony when the root key is offline).

A probe storm must not become load: each probe runs in its own daemon thread
bounded by a short timeout, a probe still hanging from an earlier round is not
started again, and a report is reused for ``cache_seconds``. The Flask routes
(``idp.runtime.app``, ``pki.http``) only turn a :class:`Report` into JSON.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from directory.gateway import LdapGateway
    from idp.oidc.keys import KeyStore as TokenKeys
    from idp.runtime.services import Services
    from pki.authority import CertificateAuthority
    from pki.keys import Signer

log = logging.getLogger("govtrust.health")

# A probe returns nothing when its part works and raises when it does not.
Probe = Callable[[], None]

OK = "ok"
PROBE_MESSAGE = b"govtrust readiness probe"
# Typed errors of our own packages say what is wrong without leaking anything
# (a key label, the directory URIs); any other error (a database driver's may
# carry a host name) is reported by its class name only, the detail logged.
_SAFE_DETAIL = ("DirectoryError", "PKIError", "KeyStoreError", "NoSigningKey")


@dataclass(frozen=True)
class Report:
    """The outcome of one round of probes: ``checks`` maps each name to ``ok`` or
    why not (``unreachable: ...``, ``unusable: ...``, ``timeout: ...``)."""

    ready: bool
    checks: Mapping[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"ready": self.ready, "checks": dict(self.checks)}


@dataclass(frozen=True)
class Check:
    name: str
    probe: Probe
    # The word put before the reason when the probe fails.
    failure: str = "unreachable"
    # A warning is reported but leaves the node ready (nothing a restart or a
    # load balancer could fix: an operator must act, e.g. hold a root ceremony).
    warning: bool = False


class _Running:
    """One probe's thread and what it ended with (set when it ends)."""

    def __init__(self, check: Check) -> None:
        self.check = check
        self.result: str | None = None
        self.thread = threading.Thread(target=self._run, name=f"readyz-{check.name}",
                                       daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.check.probe()
        except Exception as exc:  # any failure is a reason to report, never a crash
            log.warning("readiness check %s failed: %s: %s", self.check.name,
                        type(exc).__name__, exc)
            self.result = f"{self.check.failure}: {describe(exc)}"
        else:
            self.result = OK


def describe(exc: BaseException) -> str:
    """A short, safe reason for ``exc`` (see ``_SAFE_DETAIL``)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & set(_SAFE_DETAIL):
        text = str(exc).splitlines()[0] if str(exc) else ""
        return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__
    return type(exc).__name__


class Readiness:
    """Runs the checks, each within ``timeout`` seconds, at most once per
    ``cache_seconds``; concurrent callers share one round."""

    def __init__(self, checks: list[Check], *, timeout: float = 2.0,
                 cache_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not checks:
            raise ValueError("a readiness report needs at least one check")
        names = [c.name for c in checks]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate check names: {names}")
        self.checks = checks
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, Report] | None = None
        self._pending: dict[str, _Running] = {}

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.checks]

    def report(self) -> Report:
        with self._lock:  # one round at a time; the others wait for its result
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < self.cache_seconds:
                return self._cached[1]
            report = self._round()
            self._cached = (self._clock(), report)
            return report

    def _round(self) -> Report:
        runs: dict[str, _Running] = {}
        for check in self.checks:
            earlier = self._pending.get(check.name)
            # A probe that hung last time is still bounded by its own timeouts
            # (network, statement); starting another would pile threads up.
            runs[check.name] = earlier if earlier is not None and earlier.thread.is_alive() \
                else _Running(check)
        deadline = time.monotonic() + self.timeout
        for run in runs.values():
            run.thread.join(max(0.0, deadline - time.monotonic()))
        results: dict[str, str] = {}
        self._pending = {}
        for name, run in runs.items():
            if run.result is None:
                self._pending[name] = run
                results[name] = f"timeout: no answer within {self.timeout:g} s"
            else:
                results[name] = run.result
        warnings = {c.name for c in self.checks if c.warning}
        return Report(all(v == OK for k, v in results.items() if k not in warnings), results)


# -- probes ---------------------------------------------------------------------------

def database_probe(engine: Callable[[], Engine]) -> Probe:
    def probe() -> None:
        from sqlalchemy import text

        with engine().connect() as conn:
            conn.execute(text("SELECT 1"))
    return probe


def directory_probe(gateway: Callable[[], LdapGateway]) -> Probe:
    """Who-am-I on a pooled admin connection: the gateway's own failover applies,
    so one answering replica is enough."""
    def probe() -> None:
        gateway().pool.run(lambda conn: conn.whoami_s())
    return probe


def signer_probe(get_signer: Callable[[], Signer]) -> Probe:
    """The key signs, and its signature verifies with its public key (a token
    that answers with garbage is as unusable as one that is missing)."""
    def probe() -> None:
        from pki.errors import KeyStoreError
        from pki.keys import verify_signature

        signer = get_signer()
        signature = signer.sign(PROBE_MESSAGE)
        if not verify_signature(signer.public_key(), signature, PROBE_MESSAGE):
            raise KeyStoreError(signer.label, "its signature does not verify")
    return probe


def token_key_probe(keys: Callable[[], TokenKeys]) -> Probe:
    def probe() -> None:
        store = keys()
        store.verify(store.sign({"probe": "readyz"}))
    return probe


def ca_checks(ca: Callable[[], CertificateAuthority], *, sm2: bool) -> list[Check]:
    """The issuing CA and OCSP responder keys of every configured hierarchy. The
    authority is reached lazily: building an app must not touch keys or tables."""
    def hierarchy(is_sm2: bool) -> list[Check]:
        prefix = "ca.sm2-" if is_sm2 else "ca."

        def authority() -> CertificateAuthority:
            return ca().sm2 if is_sm2 else ca()

        def ocsp() -> Signer:
            return authority().ocsp_credentials()[1]

        return [Check(prefix + "issuing", signer_probe(lambda: authority().issuing_signer()),
                      "unusable"),
                Check(prefix + "ocsp", signer_probe(ocsp), "unusable")]

    return hierarchy(False) + (hierarchy(True) if sm2 else [])


def root_crl_probe(ca: Callable[[], CertificateAuthority]) -> Probe:
    """Each hierarchy's root CRL exists and is not within ``[pki] root_crl_warn_days``
    of its nextUpdate (an offline root's is renewed only at the root ceremony)."""
    def probe() -> None:
        from pki.errors import PKIError
        from pki.model import CARole

        for authority in ca().authorities():
            name = authority.settings.name(CARole.ROOT)
            crl = authority.store.latest_crl(name, False)
            if crl is None:
                raise PKIError(f"no {name} CRL: sign one (govtrust ca ceremony crl)")
            left = crl.next_update - authority.now()
            if left <= authority.settings.root_crl_warning:
                raise PKIError(f"the {name} CRL ends {crl.next_update:%Y-%m-%d %H:%M}Z "
                               f"(in {max(left.days, 0)} days): sign a new one at the root "
                               "ceremony (govtrust ca ceremony crl)")
    return probe


def root_crl_check(ca: Callable[[], CertificateAuthority]) -> Check:
    return Check("ca.root-crl", root_crl_probe(ca), "warning", warning=True)


def idp_readiness(services: Services, **options: Any) -> Readiness:
    """What the IdP app needs: database, directory, CA keys, token signing key."""
    sm2 = bool(services.config.get("pki", "sm2"))
    return Readiness([
        Check("database", database_probe(lambda: services.engine)),
        Check("directory", directory_probe(lambda: services.directory_gateway)),
        *ca_checks(lambda: services.ca, sm2=sm2),
        root_crl_check(lambda: services.ca),
        Check("idp.token", token_key_probe(lambda: services.provider.keys), "unusable"),
    ], **options)


def pki_readiness(services: Services, **options: Any) -> Readiness:
    """What the PKI's public service needs: database and CA keys."""
    sm2 = bool(services.config.get("pki", "sm2"))
    return Readiness([Check("database", database_probe(lambda: services.engine)),
                      *ca_checks(lambda: services.ca, sm2=sm2),
                      root_crl_check(lambda: services.ca)], **options)
