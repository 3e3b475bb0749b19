"""gunicorn settings for the IdP's HTTPS front (``-c python:idp.runtime.gunicorn_tls``).

gunicorn builds the server's ``SSLContext`` from its command-line options and
then hands it to this ``ssl_context`` hook, which applies GovTrust's TLS policy
(:func:`idp.runtime.tls.harden_server_context`: TLS 1.2+, Mozilla intermediate
ciphers, no compression, no renegotiation).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from idp.runtime.tls import harden_server_context


def ssl_context(config: Any, default_ssl_context_factory: Callable[[], ssl.SSLContext]
                ) -> ssl.SSLContext:
    return harden_server_context(default_ssl_context_factory())
