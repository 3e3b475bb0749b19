"""How a person proves who they are, and the SSO session that remembers it.

``certificate`` (client certificates, RFC 5280 path and revocation checks,
certificate-to-person mapping), ``signature`` (a USB key signs a single-use
challenge: SM2 or ECDSA, for browsers that cannot do SM2 TLS), ``forwarded`` (the
certificate and client address a trusted proxy forwards), ``totp`` (RFC 6238
one-time codes, recovery codes) with
``otp_store``, ``stepup`` (the level a request asks for and the session's
methods, under ``policies.assurance``), ``throttle``, ``sessions`` and ``tables``.
``ports`` holds the small interfaces the directory is wired into. Framework-free:
cores return values and enums; ``idp.web`` turns them into words.
"""
