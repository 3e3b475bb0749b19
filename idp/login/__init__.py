"""How a person proves who they are, and the SSO session that remembers it.

``certificate`` (client certificates, RFC 5280 path and revocation checks,
certificate-to-person mapping), ``forwarded`` (the certificate and client address
a trusted proxy forwards), ``totp`` (RFC 6238 one-time codes, recovery codes) with
``otp_store``, ``stepup`` (the level a request asks for and the session's
methods, under ``policies.assurance``), ``throttle``, ``sessions`` and ``tables``.
``ports`` holds the small interfaces the directory is wired into. Framework-free:
cores return values and enums; ``idp.web`` turns them into words.
"""
