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
    logs.configure(str(services.config.get("serve", "log_format")))
    return services


def idp_app() -> Any:
    from idp.runtime.app import create_app

    return create_app(_services())


def pki_app() -> Any:
    from idp.runtime.app import create_pki_app

    return create_pki_app(_services())
