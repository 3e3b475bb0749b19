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
    services = Services(Config.load(Path(os.environ.get("GOVTRUST_HOME", "govtrust-home"))))
    # A worker never starts a slapd of its own: when the managed one is down, the
    # supervisor restarts it, and the worker answers 503 meanwhile.
    services.may_start_slapd = False
    return services


def idp_app() -> Any:
    from idp.runtime.app import create_app

    return create_app(_services())


def pki_app() -> Any:
    from idp.runtime.health import pki_readiness
    from pki.http import create_app

    services = _services()
    return create_app(services.ca, pki_readiness(services).report)
