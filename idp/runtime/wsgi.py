"""WSGI factories for the worker processes ``govtrust serve`` starts.

gunicorn calls ``idp.runtime.wsgi:idp_app()`` / ``idp.runtime.wsgi:pki_app()`` in each worker;
the home comes from ``GOVTRUST_HOME``, so nothing is built at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from idp.runtime.config import Config
from idp.runtime.services import Services


def _services() -> Services:
    from idp.runtime import logs

    services = Services(Config.load(Path(os.environ.get("GOVTRUST_HOME", "govtrust-home"))))
    # A worker never starts a slapd of its own: when the managed one is down, the
    # supervisor restarts it, and the worker answers 503 meanwhile.
    services.may_start_slapd = False
    logs.configure(str(services.config.get("serve", "log_format")))
    return services


def idp_app() -> Any:
    from idp.runtime.app import create_app

    return create_app(_services())


def pki_app() -> Any:
    from idp.runtime.app import create_pki_app

    return create_pki_app(_services())


# The PKI's public paths (pki.http); everything else is the IdP's.
PKI_PREFIXES = ("/ca/", "/crl/", "/ocsp")


def node_app() -> Any:
    """One node: the IdP and the PKI's public service on one port, split by path, so
    a node is one ``HOST:PORT`` behind nginx (``govtrust node``)."""
    from idp.runtime.app import create_app, create_pki_app

    services = _services()
    idp, pki = create_app(services), create_pki_app(services)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        target = pki if path.startswith(PKI_PREFIXES) else idp
        return target(environ, start_response)

    return app
